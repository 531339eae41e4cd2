"""Sandboxed templates: text, typed values, and messages that say what is missing."""

from __future__ import annotations

import pytest

from vow.pipeline.templates import TemplateError, render_text, render_value, wrap

CONTEXT = {"input": wrap({"order_id": 42, "customer": {"name": "Ada", "items": 3}, "styles": ["a", "b"]}, "input"),
           "name": "demo"}


def test_text_is_rendered_and_plain_strings_pass_through() -> None:
    assert render_text("Order {{ input.order_id }} for {{ input.customer.name }}", CONTEXT) == "Order 42 for Ada"
    assert render_text("no templates here", CONTEXT) == "no templates here"
    assert render_text("{{ 'notify/A 1' | slug }}", CONTEXT) == "notify-A-1"


def test_a_lone_expression_keeps_its_type_and_mappings_are_walked() -> None:
    value = {"list": "{{ input.styles }}", "n": "{{ input.order_id + 1 }}", "text": "#{{ input.order_id }}",
             "nested": ["{{ input.customer }}", 5]}
    assert render_value(value, CONTEXT) == {"list": ["a", "b"], "n": 43, "text": "#42",
                                            "nested": [{"name": "Ada", "items": 3}, 5]}


def test_a_key_wins_over_the_dict_method_of_the_same_name() -> None:
    assert render_text("{{ input.customer.items }}", CONTEXT) == "3"
    assert render_text("{% for k, v in input.customer.items() %}{{ k }}{% endfor %}", {
        "input": wrap({"customer": {"name": "Ada"}}, "input")}) == "name"


@pytest.mark.parametrize("template, message", [
    ("{{ input.order }}", "input.order is not defined (input has: customer, order_id, styles)"),
    ("{{ input.customer.email }}", "input.customer.email is not defined (input.customer has: items, name)"),
    ("{{ inptu.order_id }}", "inptu is not defined (available: input, name)"),
    ("{{ input.order_id }", "template error: unexpected '}'"),
    ("{{ input.__class__.__mro__ }}", "input.__class__ is not defined (input has: customer, order_id, styles)"),
    ("{{ ''.__class__.__mro__ }}", "template error: access to attribute '__class__' of 'str' object is unsafe."),
])
def test_mistakes_say_what_is_wrong(template: str, message: str) -> None:
    for render in (render_text, render_value):
        with pytest.raises(TemplateError) as caught:
            render(template, CONTEXT)
        assert str(caught.value) == message

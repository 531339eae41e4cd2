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
    # Jinja's truncate asserted these: a bare AssertionError, no template error
    ("{{ 'abcdef'|truncate(2) }}",
     "template error: ValueError: the truncate filter cuts to a length of at least its end '...' (3), not 2"),
    ("{{ 'abcdef'|truncate(4, leeway=-1) }}", "template error: ValueError: the truncate filter's leeway is 0 or "
                                              "more, not -1"),
    ("{{ 'abcdef'|truncate(1.5) }}",
     "template error: ValueError: the truncate filter cuts to a length of at least its end '...' (3), not 1.5"),
    # a filter given a value of another type than it reads (a list where a mapping was meant, from the
    # input) raised a bare AttributeError
    ("{{ input.styles|dictsort }}", "template error: AttributeError: 'list' object has no attribute 'items'"),
    ("{{ input.styles|xmlattr }}", "template error: AttributeError: 'list' object has no attribute 'items'"),
    ("{{ input.styles|indent }}", "template error: AttributeError: 'list' object has no attribute 'splitlines'"),
    ("{{ input.order_id|wordwrap }}", "template error: AttributeError: 'int' object has no attribute 'splitlines'"),
    ("{% set c = cycler(*input.styles[:0]) %}{{ c.next() }}",  # no colours in the input: a bare RuntimeError
     "template error: RuntimeError: at least one item has to be provided"),
])
def test_mistakes_say_what_is_wrong(template: str, message: str) -> None:
    for render in (render_text, render_value):
        with pytest.raises(TemplateError) as caught:
            render(template, CONTEXT)
        assert str(caught.value) == message


# A size that comes with the input (a count, a width) must not let a template make a value that
# exhausts the planner's memory: each operation that multiplies text is checked before it runs.
# Two million is over the bound (a million) yet safe to make here, so without the checks these
# templates render instead of failing; three is how they are meant to be used.
GROWING = [
    ("{{ '=' * input.n }}", "===", "repeating a value of length 1 2,000,000 times would make 2,000,000 characters"),
    ("{{ input.n * 'ab' }}", "ababab", "repeating a value of length 2 2,000,000 times would make 4,000,000"),
    ("{{ ([0] * input.n)|length }}", "3", "repeating a value of length 1 2,000,000 times"),
    ("{{ (10 ** input.n) % 7 }}", "6", "10 ** 2000000 would have about 2,000,000 digits; a template makes whole "
                                       "numbers of at most 4,300 digits"),
    ("{{ ('a' * 900000 + 'b' * 900000 * (input.n > 3))|length }}", "900000", "joining two values with +"),
    ("{{ ('%' ~ input.n ~ 's') % 'x' }}", "  x", "the width or precision 2,000,000 in '%2000000s'"),
    ("{{ ('%' ~ input.n ~ 's')|format('x') }}", "  x", "the width or precision 2,000,000 in '%2000000s'"),
    ("{{ ('{:>' ~ input.n ~ '}').format('x') }}", "  x", "the width or precision in the format spec '>2000000'"),
    ("{{ 'x'|center(input.n) }}", " x ", "the center filter would make 2,000,000 characters"),
    ("{{ 'x'.center(input.n) }}", " x ", "str.center would make 2,000,000 characters"),
    ("{{ 'x'.rjust(input.n) }}", "  x", "str.rjust would make 2,000,000 characters"),
    ("{{ '7'.zfill(input.n) }}", "007", "str.zfill would make 2,000,000 characters"),
    ("{{ 'a\nb'|indent(input.n) }}", "a\n   b", "the indent filter would make 4,000,003 characters"),
    ("{{ ('a' * 1000)|replace('a', 'b' * (input.n // 1000 + 1))|length }}", "1000", "the replace filter would make"),
    ("{{ ('a' * 1000).replace('a', 'b' * (input.n // 1000 + 1))|length }}", "1000", "str.replace would make"),
    ("{{ (['x' * 300000] * 3)|join('y' * (input.n // 4))|length }}", "900000", "the join filter would make"),
    ("{{ ('y' * (input.n // 4)).join(['x' * 300000] * 3)|length }}", "900000", "str.join would make"),
    # found by red-teaming: each of these made a value far over the bound, or kept the planner busy
    ("{{ ('a ' * 500000)|wordwrap(1, wrapstring='b' * (input.n // 1000000))|length }}", "500000",
     "the wordwrap filter would make"),  # was 500,000,000 characters with 1000
    ("{{ ('a' * 200000)|wordwrap(3000000 // input.n)|length }}", "200000", "would cut a word of 200,000"),
    ("{{ [1]|batch(input.n, 'x')|list|length }}", "1", "the batch filter would make 2,000,000"),  # MemoryError
    ("{{ [1]|slice(input.n)|list|length }}", "3", "the slice filter would make 2,000,000"),
    ("{{ ([[0]*1000] * (input.n // 1000))|length }}", "0", "length 1 2,000 times would make 4,002,000"),  # 3e9 as text
    ("{% set ns = namespace(a=[0]) %}{% for i in range(input.n // 100000) %}{% set ns.a = [ns.a, ns.a] %}"
     "{% endfor %}{{ ns.a|length }}", "1", "a list or mapping written in the template"),
    ("{% set ns = namespace(x=10) %}{% for i in range(input.n // 100000) %}{% set ns.x = ns.x * ns.x %}"
     "{% endfor %}{{ ns.x % 7 }}", "3", "multiplying whole numbers"),  # squaring 30 times: hours
    ("{{ (('%999999s' * (input.n // 1000000)) % (('x',) * (input.n // 1000000)))|length }}", "0",
     "the % format"),
    ("{{ (('%(a)s' * (input.n // 1000)) % {'a': 'x' * 1000})|length }}", "0", "the % format"),
    ("{{ ('{0:999999}' * (input.n // 1000000)).format('x')|length }}", "0", "the format '{0:999999}{0:999999}'"),
    ("{{ (['x'] * (input.n // 1000))|tojson(indent=1000)|length }}", "2", "the tojson filter would make"),
    ("{% for i in range(1000) recursive %}{% if loop.depth < input.n // 1000000 + 1 %}{{ loop(range(1000)) }}"
     "{% endif %}{% endfor %}", "", "its loops would turn more than"),  # 1e9 turns, uncounted
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(input.n // 100000) }}",
     "", "macro calls would turn more than"),  # 2**20 calls (2**40 took forever)
    ("{% set ns = namespace(s='ab') %}{% for i in range(input.n // 100000 + 1) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s|length }}", "4", "joining values with ~ would make 1,048,576 characters"),
    ("{% for i in range(input.n // 20) %}{{ 'x' * 20 }}{% endfor %}", "",
     "the text would be longer than 1,000,000 characters"),
    # second round: text made inside a block, a macro or a {% call %} was joined without a bound (1,000
    # turns of a million characters each took 2-3 GB), checked only once it was made, if at all
    ("{% set x %}{% for i in range(1000) %}{{ 'x' * (input.n // 1000 + 1) }}{% endfor %}{% endset %}{{ x|length }}",
     "1000", "the text of a block or macro would be longer than 1,000,000 characters"),
    ("{% filter upper %}{% for i in range(1000) %}{{ 'x' * (input.n // 1000 + 1) }}{% endfor %}{% endfilter %}",
     "X" * 1000, "the text of a block or macro would be longer"),
    ("{% macro f() %}{% for i in range(1000) %}{{ 'x' * (input.n // 1000 + 1) }}{% endfor %}{% endmacro %}"
     "{{ f()|length }}", "1000", "the text of a block or macro would be longer"),
    ("{% macro g() %}{{ caller()|length }}{% endmacro %}{% call g() %}{% for i in range(1000) %}"
     "{{ 'x' * (input.n // 1000 + 1) }}{% endfor %}{% endcall %}", "1000", "the text of a block or macro would be"),
    ("{% if false %}{% block b %}{% for i in range(1000) %}{{ 'x' * (input.n // 1000 + 1) }}{% endfor %}"
     "{% endblock %}{% endif %}{{ self.b()|length }}", "1000", "the text of a block or macro would be longer"),
    # bytes (from encode or to_bytes) were not measured: a gigabyte at a time
    ("{{ ('x'.encode() * input.n)|length }}", "3", "repeating a value of length 1 2,000,000 times"),
    ("{{ ('x'.encode() + 'y'.encode() * (input.n // 2))|length }}", "2", "joining two values with +"),
    ("{{ 'x'.encode().center(input.n)|length }}", "3", "bytes.center would make 2,000,000"),
    ("{{ (('%' ~ input.n ~ 's').encode() % 'x'.encode())|length }}", "3", "the width or precision 2,000,000"),
    ("{{ (0).to_bytes(input.n, 'big')|length }}", "3", "int.to_bytes would make 2,000,000"),
    ("{{ true.to_bytes(input.n, 'big')|length }}", "3", "bool.to_bytes would make 2,000,000"),
    ("{{ ('a' * 1000).translate({97: 'b' * (input.n // 1000)})|length }}", "0", "str.translate would make 2,000,000"),
    # round(..., 'floor') and round(int, -n) make 10 ** n first: hours for n of a hundred million
    ("{{ 1.5|round(input.n // 10, 'floor') }}", "1.0", "the round filter rounds to at most 4,300 digits"),
    ("{{ 5|round(-input.n // 10) }}", "0", "the round filter rounds to at most 4,300 digits"),
    # whole numbers read from text or bytes were not bounded: dividing two of a megabyte took minutes
    ("{{ ('f' * (input.n // 100 + 1))|int(base=16) > 1 }}", "True", "the int filter would make a whole number of"),
    ("{{ (0).from_bytes(('x' * (input.n // 100 + 1)).encode(), 'big') > 1 }}", "True",
     "calling from_bytes would make a whole number of"),
    # punycode (and idna) take a time that grows with the square of the text: 20,000 letters took minutes
    ("{{ ('\u0100' * (input.n // 1000)).encode('punycode')|length }}", "0", "the punycode codec"),
    ("{{ ('xn--mnchen-3ya' ~ 'a' * (input.n // 1000)).encode().decode('idna') }}", "münchen", "the idna codec"),
    # an attribute path is followed for each item: '0.' * n on a string repeats forever, item by item
    ("{{ (['a'] * 3)|map(attribute='0.' * (input.n // 10000) ~ '0')|join }}", "aaa", "an attribute path of 201"),
    ("{{ (['a'] * 3)|sort(attribute='0.' * (input.n // 10000) ~ '0')|join }}", "aaa", "an attribute path of 201"),
    ("{{ (['a'] * 3)|selectattr('0.' * (input.n // 10000) ~ '0')|join }}", "aaa", "an attribute path of 201"),
    # `x in list` in a loop over the input looks through the list each turn: 30,000 turns over 200,000
    # items kept the planner busy for minutes, within every other bound
    ("{% set s = 'x' * (input.n // 10) %}{% for i in range(1000) %}{% if 'z' in s %}z{% endif %}{% endfor %}done",
     "done", "membership tests (in) would look through more than 100,000,000"),
    ("{{ range(1000)|map('string')|select('in', 'x' * (input.n // 10))|list|length }}", "0",
     "membership tests (in) would look through more than 100,000,000"),
    # a value nested a million deep crashed the planner (a segfault) when hashed, as a key or by unique;
    # cycler(...).items nested it with nothing measured, a literal in a loop one level a turn
    ("{% set ns = namespace(a=1) %}{% for i in range(input.n // 1000 + 2) %}{% set ns.a = cycler(ns.a).items %}"
     "{% endfor %}{{ ns.a }}", "((1,),)", "values nest at most 500 levels deep"),
    ("{% set ns = namespace(a=1) %}{% for i in range(input.n // 1000 + 2) %}{% set ns.a = [ns.a] %}"
     "{% endfor %}{{ ns.a }}", "[[1]]", "values nest at most 500 levels deep"),
]


@pytest.mark.parametrize("template, small, message", GROWING)
def test_a_template_cannot_make_a_value_over_the_bound(template: str, small: str, message: str) -> None:
    big = {"input": wrap({"n": 2_000_000}, "input")}
    for render in (render_text, render_value):
        with pytest.raises(TemplateError) as caught:
            render(template, big)
        assert message in str(caught.value)
    assert render_text(template, {"input": wrap({"n": 3}, "input")}) == small


def test_sum_of_many_lists_is_quick() -> None:
    # Python's sum made a new list for each one added: 10**6 lists of one item took hours
    import time
    started = time.monotonic()
    assert render_text("{{ ([[0]] * 200000)|sum(start=[])|length }}", CONTEXT) == "200000"
    assert time.monotonic() - started < 5


def test_templates_do_not_change_lists_or_mappings() -> None:
    # an append in a loop could grow a list without bound (each item within the bound)
    for template in ("{% set l = [] %}{% set _ = l.append(1) %}{{ l }}", "{% set d = {} %}{% set _ = d.update(a=1) %}"):
        with pytest.raises(TemplateError, match="unsafe"):
            render_text(template, CONTEXT)


def test_loops_inside_loops_over_large_values_stop_at_the_bound() -> None:
    # 2,000 x 1,000 turns finish here without the bound; 100,000 x 100,000 (each within range's own
    # limit) kept the planner busy for hours, making nothing
    template = "{% for i in input.rows %}{% for j in range(input.n) %}{% endfor %}{% endfor %}done"
    with pytest.raises(TemplateError, match="its loops would turn more than 1,000,000 times"):
        render_text(template, {"input": wrap({"rows": list(range(2000)), "n": 1000}, "input")})
    assert render_text(template, {"input": wrap({"rows": [1, 2], "n": 3}, "input")}) == "done"
    assert render_text("{% for i in range(3) %}{{ loop.index }}/{{ loop.length }} {% else %}none{% endfor %}",
                       CONTEXT) == "1/3 2/3 3/3 "
    assert render_text("{% for i in [] %}x{% else %}none{% endfor %}", CONTEXT) == "none"


def test_a_macro_that_calls_itself_without_end_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="calls nest too deeply"):  # was a bare RecursionError
        render_text("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", CONTEXT)


@pytest.mark.parametrize("template", [
    "{{ input.rows|map(attribute='a.b')|join(',') }} {{ input.rows|selectattr('a.b', 'gt', 1)|list|length }}",
    "{{ input.rows|sort(attribute='a.b', reverse=true)|map(attribute='a.b')|join }} "
    "{% for g in input.rows|groupby('a.b') %}{{ g.grouper }}:{{ g.list|length }} {% endfor %}"
    "{{ input.rows|sum(attribute='a.b') }} {{ (input.rows|max(attribute='a.b')).a.b }}",
    "{{ 1.26|round(1, 'floor') }} {{ 1234|round(-2) }} {{ 2.5|round }} {{ 1.5|round(400) }}",
    "{{ 'foo bar baz qux'|truncate(9) }} {{ 'foo bar baz qux'|truncate(11, false, '...', 0) }}",
    "{% set x %}{% for i in range(3) %}<{{ i }}>{% endfor %}{% endset %}{{ x }}|{% filter upper %}ab{% endfilter %}",
    "{% macro m(n) %}[{{ caller(n) }}]{% endmacro %}{% call(v) m(2) %}{{ v * 2 }}{% endcall %}",
    "{% for i in [[1, [2]], 3] recursive %}{% if i is iterable %}({{ loop(i) }}){% else %}{{ i }}{% endif %}"
    "{% endfor %}",
    "{{ ('ab'.encode() * 2)|length }} {{ 'abc'.translate({97: 'xy', 98: none}) }} {{ (258).to_bytes(2, 'big')|list }}",
    "{{ 'münchen'.encode('idna') }} {{ ('%5s'.encode() % 'x'.encode()).decode() }} {{ 'a\tb'.encode().expandtabs(4) }}",
    "{{ 1 in [1, 2] }} {{ 3 not in (1, 2) }} {{ 'a' in 'abc' }} {{ 'a' in {'a': 1} }} {{ 1 < 2 in [2] }} "
    "{{ [1, 2]|select('in', [2, 3])|list }} {{ 2 is in [2] }} {{ 'b' in input.rows[0].a }} {{ 5 in range(9) }}",
    "{% block a %}A{{ 1 }}{% endblock %}{{ self.a() }}{% block c scoped %}{% for i in [1, 2] %}{% block d scoped %}"
    "{{ i }}{% set j = 3 %}{{ j }}{% endblock %}{% endfor %}{% endblock %}{{ self.c() }}",
    "{% set c = cycler('odd', 'even') %}{{ c.next() }}{{ c.next() }}{{ c.items }} {{ ('ff'|int(base=16)) // 7 }}",
])
def test_the_bounds_change_nothing_within_them(template: str) -> None:
    # what renders within the bounds renders as Jinja's own sandbox renders it
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    rows = [{"a": {"b": 2}}, {"a": {"b": 1}}, {"a": {"b": 2}}]
    expected = ImmutableSandboxedEnvironment().from_string(template).render(input={"rows": rows})
    assert render_text(template, {"input": wrap({"rows": rows}, "input")}) == expected

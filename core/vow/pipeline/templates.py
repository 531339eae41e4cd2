"""Templates in pipeline files: sandboxed Jinja2, and an undefined name is an error.

Two ways to render:

* :func:`render_text` always gives text (``to``, ``subject``, ``body``, ``prompt``, ids, paths);
* :func:`render_value` walks lists and mappings; a string that is exactly one ``{{ expression }}``
  keeps the expression's own type (``for_each: "{{ input.styles }}"`` is a list,
  ``seed: "{{ input.seed }}"`` a number); any other string is rendered as text.

Mappings in the context are :class:`Scope` objects that know their name, so a missing key
reads ``input.emial is not defined (input has: email, order_id)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.compiler
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from vow.pipeline import template_limits


class TemplateError(ValueError):
    """A template that does not compile or render; ``line`` is the line in the template, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class Scope(dict[str, Any]):
    """A mapping in the template context that knows its dotted name (``input.customer``)."""

    __slots__ = ("_vow_name",)

    def __init__(self, data: Mapping[str, Any], name: str) -> None:
        super().__init__({k: wrap(v, f"{name}.{k}") for k, v in data.items()})
        self._vow_name = name


def wrap(value: Any, name: str) -> Any:
    """``value`` with every mapping inside it turned into a :class:`Scope` named after its path."""
    if isinstance(value, Mapping) and not isinstance(value, Scope):
        return Scope(value, name)
    if isinstance(value, list):
        return [wrap(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return value


def plain(value: Any) -> Any:
    """``value`` with scopes turned back into plain dicts (what gets stored)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class _Undefined(jinja2.StrictUndefined):
    """Says which name is missing and what the mapping has instead."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if isinstance(obj, Scope) and isinstance(name, str):
            keys = ", ".join(sorted(map(str, obj))) or "nothing"
            return f"{obj._vow_name}.{name} is not defined ({obj._vow_name} has: {keys})"
        return super()._undefined_message


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    # a list, tuple or mapping written in the template is measured as it is made: ``[ns.a, ns.a]``
    # in a loop doubles a value each turn while no operator is used
    def _checked(self, visit: Any, node: jinja2.nodes.Node, frame: jinja2.compiler.Frame) -> None:
        if getattr(node, "ctx", "load") != "load":
            visit(node, frame)
            return
        self.write("environment.check_literal(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: jinja2.nodes.List, frame: jinja2.compiler.Frame) -> None:
        self._checked(super().visit_List, node, frame)

    def visit_Tuple(self, node: jinja2.nodes.Tuple, frame: jinja2.compiler.Frame) -> None:
        self._checked(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: jinja2.nodes.Dict, frame: jinja2.compiler.Frame) -> None:
        self._checked(super().visit_Dict, node, frame)

    def buffer(self, frame: jinja2.compiler.Frame) -> None:
        # a block, a macro, a {% call %} or a recursive loop collects its text in a buffer before it is
        # joined: one that stops at the bound, as the rendered text does
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.text_buffer()")

    def visit_Operand(self, node: jinja2.nodes.Operand, frame: jinja2.compiler.Frame) -> None:
        # ``a in b``: b passes environment.scanned, which counts what a list or text makes it look through
        if node.op not in ("in", "notin"):
            super().visit_Operand(node, frame)
            return
        self.write(f" {jinja2.compiler.operators[node.op]} environment.scanned(")
        self.visit(node.expr, frame)
        self.write(")")

    def visit_Concat(self, node: jinja2.nodes.Concat, frame: jinja2.compiler.Frame) -> None:
        # ``a ~ b`` joins through the environment, so its size is checked like ``a + b``
        self.write("environment.join_bounded((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's sandbox, where templates do not change lists or mappings (``append``, ``update``: a loop
    could grow one without bound) and nothing they make passes :mod:`~vow.pipeline.template_limits`."""

    code_generator_class = _CodeGenerator

    def _parse(self, source: str, name: str | None, filename: str | None) -> jinja2.nodes.Template:
        # every {% for %} loops over counted(...): its turns count against the template's bound
        # and so does each loop(...) of a recursive loop, which loops again over what it is given
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(jinja2.nodes.For):
            count = jinja2.nodes.Call(jinja2.nodes.Name(_COUNTED, "load"), [loop.iter], [], None, None)
            loop.iter = count.set_lineno(loop.lineno).set_environment(self)
        # a {% block %} yields its text, and self.name() joins it with nothing measuring it: its body
        # is collected in a bounded buffer instead, as a {% filter %} block's is, and given as it was
        for block in tree.find_all(jinja2.nodes.Block):
            same = jinja2.nodes.Filter(None, _SAME, [], [], None, None)
            block.body = [jinja2.nodes.FilterBlock(block.body, same).set_lineno(block.lineno).set_environment(self)]
        for call in tree.find_all(jinja2.nodes.Call):
            if isinstance(call.node, jinja2.nodes.Name) and call.node.name == "loop" and call.args:
                count = jinja2.nodes.Call(jinja2.nodes.Name(_COUNTED, "load"), [call.args[0]], [], None, None)
                call.args[0] = count.set_lineno(call.lineno).set_environment(self)  # type: ignore[call-overload]
        return tree
    # the operators that can make a value far larger than their operands (see template_limits)
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        template_limits.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def join_bounded(self, parts: tuple[Any, ...]) -> str:
        """The text of ``a ~ b ~ ...``, refused when it would be over the bound."""
        template_limits.check_concat([str(part) for part in parts])
        return str(jinja2.runtime.markup_join(parts))  # as Jinja joins them: escaped where autoescape is on

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any,  # noqa: N805 - as Jinja's
             **kwargs: Any) -> Any:
        args = template_limits.check_call(__obj, args, kwargs)
        if __obj is jinja2.utils.Cycler:  # it keeps its values, and gives them back as a tuple: measure it
            template_limits.check_size(args, "cycler(...)")
        if isinstance(__obj, (jinja2.runtime.Macro, jinja2.runtime.BlockReference)):
            template_limits.count_turn()
        what = f"calling {getattr(__obj, '__name__', 'a function')}"
        return template_limits.check_result(super().call(__context, __obj, *args, **kwargs), what)

    def text_buffer(self) -> template_limits.TextBuffer:
        """Where a block or macro collects its text (see :class:`~vow.pipeline.template_limits.TextBuffer`)."""
        return template_limits.TextBuffer()

    def scanned(self, value: Any) -> Any:
        """``value``, the right side of ``in``, counted (see :func:`~vow.pipeline.template_limits.scanned`)."""
        return template_limits.scanned(value)

    def check_literal(self, value: Any) -> Any:
        """``value``, a list, tuple or mapping written in the template, refused over the bound."""
        return template_limits.check_size(value, "a list or mapping written in the template")

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `input.items` means the key "items" when there is one; dict methods only otherwise.
        if isinstance(obj, Scope):
            if attribute in obj:
                return obj[attribute]
            if attribute.startswith("_") or not hasattr(dict, attribute):
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def slug(text: Any) -> str:
    """``notify/A-1001`` -> ``notify-A-1001``: safe in a file name (the ``slug`` filter)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.") or "run"


ENV = _Environment(undefined=_Undefined, autoescape=False)
ENV.filters["slug"] = slug
ENV.filters.update(template_limits.bounded_filters(ENV.filters))


def _test_in(value: Any, seq: Any) -> bool:
    """The ``in`` test (``x is in seq``, ``select('in', seq)``), counted like the ``in`` operator."""
    return value in template_limits.scanned(seq)


ENV.tests["in"] = _test_in
del ENV.globals["lipsum"]  # placeholder text, as long as its arguments ask
_COUNTED = "vow_counted_loop"
_SAME = "vow_block_text"
ENV.filters[_SAME] = lambda text: text  # a block's text as it was (see _parse)
ENV.globals[_COUNTED] = template_limits.counted
_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


def is_template(text: Any) -> bool:
    """Whether ``text`` has template syntax in it."""
    return isinstance(text, str) and ("{{" in text or "{%" in text or "{#" in text)


def render_text(text: str, context: Mapping[str, Any]) -> str:
    """Render ``text`` as a template; :class:`TemplateError` saying what is wrong."""
    if not is_template(text):
        return text
    try:
        template = ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template error: {exc.message}", exc.lineno) from None
    return str(_call(lambda: _bounded_text(template, context), context))


def _bounded_text(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """``template`` rendered, stopping once its text passes MAX_SIZE (a loop over large inputs)."""
    parts, size = [], 0
    for part in template.generate(context):
        size += len(part)
        if size > template_limits.MAX_SIZE:
            raise template_limits.TooLarge(f"the text would be longer than {template_limits.MAX_SIZE:,} "
                                           "characters, the most a template makes (check the values it loops over)")
        parts.append(part)
    return "".join(parts)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in ``value``; a lone ``{{ expression }}`` keeps its type."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole and "{{" not in whole.group("expr") and "}}" not in whole.group("expr"):
            try:
                expression = ENV.compile_expression(whole.group("expr"), undefined_to_none=False)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"template error: {exc.message}", exc.lineno) from None
            result = _call(lambda: expression(**context), context)
            if isinstance(result, jinja2.Undefined):
                _call(result._fail_with_undefined_error, context)
            return plain(result)
        return render_text(value, context)
    if isinstance(value, Mapping):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def _call(render: Any, context: Mapping[str, Any]) -> Any:
    try:
        with template_limits.rendering():
            return render()
    except MemoryError:  # a bound missed: this run fails, not the planner
        raise TemplateError("template error: the template needed more memory than there is") from None
    except RecursionError:
        raise TemplateError("template error: calls nest too deeply (a macro that calls itself without end?)") from None
    except jinja2.UndefinedError as exc:
        message = str(exc)
        match = re.fullmatch(r"'(\w+)' is undefined", message)
        if match:
            message = f"{match.group(1)} is not defined (available: {', '.join(sorted(context))})"
        raise TemplateError(message) from None
    except template_limits.TooLarge as exc:
        raise TemplateError(f"template error: {exc}") from None
    except jinja2.TemplateError as exc:  # includes SecurityError from the sandbox
        raise TemplateError(f"template error: {exc}") from None
    # AttributeError: a filter given another type than it reads (dictsort, xmlattr of a list);
    # RuntimeError: cycler() of an empty list
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, RuntimeError) as exc:
        raise TemplateError(f"template error: {type(exc).__name__}: {exc}") from None

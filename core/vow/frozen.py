"""Frozen attrs classes built as fast as plain ones, for the few the engine makes per promise.

A frozen attrs class sets each field in ``__init__`` through ``object.__setattr__`` (its own
``__setattr__`` refuses), a C call per field: a 14-field :class:`~vow.records.PromiseRecord` takes
about 0.9 µs to build, against 0.2 µs for a plain slotted class. The engine builds a record, a
settle and a leaf context for every branch, which made them a tenth of a fan-out's cost.

:func:`quick_constructor` returns a constructor that fills a *twin* of the class (a subclass
that adds no slots and keeps the default ``__setattr__``) with plain attribute stores, then makes
the object an instance of the class itself by assigning ``__class__``, which CPython allows
between classes of the same layout. What comes out is an ordinary instance of the class: equal to
one built by its own ``__init__``, frozen, picklable, ``type(x) is cls``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["quick_constructor"]

T = TypeVar("T")
_FINISHED = "__vow_finished_class"  # the name the generated __init__ knows the class by


def quick_constructor(cls: type[T]) -> Callable[..., T]:
    """A constructor of the slotted attrs class ``cls`` (frozen or not) that takes every field,
    positionally in field order, and stores each as given.

    It applies no defaults and skips ``__attrs_post_init__``: give each field the value the class
    would keep. Classes with validators or converters are refused (this constructor would skip them).
    """
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"quick_constructor takes a slotted attrs class, not {cls!r}")
    fields = attrs.fields(cls)
    checked = [f.name for f in fields if f.validator is not None or f.converter is not None]
    if checked:
        raise TypeError(f"quick_constructor would skip the validators or converters of {cls.__name__}: {checked}")
    names = [f.name for f in fields]
    reserved = {"self", _FINISHED} & set(names)
    if reserved:
        raise TypeError(f"quick_constructor cannot take fields named {sorted(reserved)} ({cls.__name__})")
    # Both halves of the attribute slot must be the default ones, or every store goes through a
    # Python-level lookup (the frozen class defines __setattr__ and __delattr__).
    twin = type(f"_Building{cls.__name__}", (cls,), {
        "__slots__": (), "__setattr__": object.__setattr__, "__delattr__": object.__delattr__})
    source = (f"def __init__(self, {', '.join(names)}):\n"
              + "".join(f"    self.{name} = {name}\n" for name in names)
              + f"    self.__class__ = {_FINISHED}\n")
    namespace: dict[str, Any] = {_FINISHED: cls}
    exec(source, namespace)  # noqa: S102 - the source is made from the class's own field names
    twin.__init__ = namespace["__init__"]  # type: ignore[misc]
    return twin

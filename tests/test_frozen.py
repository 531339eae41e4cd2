"""The fast constructors of frozen attrs classes give the same objects as the classes' own."""

from __future__ import annotations

import pickle

import attrs
import pytest

from vow.frozen import quick_constructor
from vow.leaf import LeafContext, make_leaf_context
from vow.records import Kind, PromiseRecord, Settle, State, make_record, make_settle

CASES = [
    (make_record, PromiseRecord, ("a.1", State.PENDING, Kind.STEP, "a", "mod.f", "[1]", None, "a", 12.5, "key",
                                  2, 1.0, None, {"tenant": "t1"})),
    (make_record, PromiseRecord, ("a", State.RESOLVED, Kind.WORKFLOW, "a", "mod.wf", "[]", "3", None, None, "a",
                                  1, 1.0, 2.0, {})),
    (make_settle, Settle, ("a.1", State.REJECTED, '{"type": "x"}', 3.5)),
    (make_leaf_context, LeafContext, ("a.1", 3, "key", "a", "a", "mod.f", None, {"k": "v"}, None, None, True)),
]


@pytest.mark.parametrize(("make", "cls", "fields"), CASES)
def test_a_quick_built_object_is_the_object_its_class_builds(make, cls, fields) -> None:
    quick, slow = make(*fields), cls(*fields)
    assert type(quick) is cls
    assert quick == slow
    assert repr(quick) == repr(slow)
    assert attrs.astuple(quick, recurse=False) == fields
    assert pickle.loads(pickle.dumps(quick)) == slow
    assert attrs.evolve(quick, id="b.1") == attrs.evolve(slow, id="b.1")


@pytest.mark.parametrize(("make", "cls", "fields"), CASES)
def test_a_quick_built_object_stays_frozen(make, cls, fields) -> None:
    built = make(*fields)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.id = "other"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del built.id


def test_every_field_must_be_given() -> None:
    with pytest.raises(TypeError):
        make_settle("a.1", State.RESOLVED, "1")


def test_classes_whose_checks_it_would_skip_are_refused() -> None:
    @attrs.frozen(slots=True)
    class Checked:
        n: int = attrs.field(validator=attrs.validators.instance_of(int))

    @attrs.frozen(slots=False)
    class WithDict:
        n: int

    with pytest.raises(TypeError, match="validators or converters"):
        quick_constructor(Checked)
    with pytest.raises(TypeError, match="slotted attrs class"):
        quick_constructor(WithDict)
    with pytest.raises(TypeError, match="slotted attrs class"):
        quick_constructor(dict)


def test_field_names_do_not_clash_with_the_generated_constructor() -> None:
    @attrs.frozen(slots=True)
    class Job:
        finished: bool
        cls: str

    make = quick_constructor(Job)
    assert make(True, "x") == Job(True, "x") and type(make(True, "x")) is Job

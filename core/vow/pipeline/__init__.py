"""Pipelines declared in YAML: read a file, plan one run, and the workflow that runs it.

::

    from vow import Vow
    from vow.pipeline import load
    from vow.plugins import Plugins

    plugins = Plugins()  # the registry the plan is checked against is the one the run uses
    plan = load("examples/order-confirmed.yaml", plugins=plugins, input={"order_id": "A-7"})
    with Vow(plan.store, plugins=plugins) as vow:
        summary = vow.run(plan.run_id, "vow.pipeline", plan.spec, timeout=plan.timeout)

``plan.spec`` is the planned run (:mod:`vow.pipeline.model`), stored as plain JSON; ``plan.timeout``
is the file's top-level ``timeout:`` (seconds, or ``None``), which the store keeps as the run's deadline.

``docs/pipeline.md`` documents every key of the file.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: every Vow() registers the workflow, and should not pay for YAML and Jinja.
_EXPORTS = {
    "Plan": "vow.pipeline.plan", "load": "vow.pipeline.plan", "make_plan": "vow.pipeline.plan",
    "PlannedRun": "vow.pipeline.model",
    "SpecError": "vow.pipeline.source", "parse": "vow.pipeline.source", "read": "vow.pipeline.source",
    "NAME": "vow.pipeline.workflow", "PipelineFailed": "vow.pipeline.workflow", "pipeline": "vow.pipeline.workflow",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vow.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

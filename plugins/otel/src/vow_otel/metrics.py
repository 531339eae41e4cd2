"""The metrics vow reports: promises created and settled, retries, resumed runs, leaf durations."""

from __future__ import annotations

from opentelemetry.metrics import Meter

FUNCTION = "vow.function"
KIND = "vow.promise.kind"
STATE = "vow.state"
OUTCOME = "vow.outcome"


class Instruments:
    """The instruments, made once per meter.

    Every instrument is labelled with the function (the registered workflow name, the leaf's
    qualified name, or the promise kind for sleeps and outside promises): a bounded set, fixed
    by the code, never by the data.
    """

    def __init__(self, meter: Meter) -> None:
        self.created = meter.create_counter(
            "vow.promises.created", unit="{promise}", description="Promises stored, by function and kind.")
        self.settled = meter.create_counter(
            "vow.promises.settled", unit="{promise}",
            description="Promises settled, by function, kind and state (resolved, rejected, timedout, canceled).")
        self.retries = meter.create_counter(
            "vow.retries", unit="{retry}", description="Failed attempts that will be retried, by function and kind.")
        self.resumed = meter.create_counter(
            "vow.runs.resumed", unit="{run}",
            description="Runs picked up again from the store (after a crash, by a worker), by workflow.")
        self.leaf_duration = meter.create_histogram(
            "vow.leaf.duration", unit="s",
            description="Wall time of one leaf attempt, by function and outcome (ok or error).")

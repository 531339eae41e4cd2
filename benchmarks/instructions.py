"""vow beside plain ``sqlite3`` in CPU instructions, not seconds: a ratio that holds on a busy or
drifting machine.

    python benchmarks/instructions.py                 # steps and fan-out (~3 min; needs valgrind)
    python benchmarks/instructions.py --cases steps

``raw_limit.py`` times the same workloads; on a shared VM its timings drift by up to 2x within an
hour, and raw SQLite's step moved from 72 to 157 µs between two stops on the same code. Here each
case of ``raw_limit.py`` (``--child vow-steps``, ``raw-steps``, ...) runs under
``valgrind --tool=callgrind``, which counts the instructions every thread of the process executes:
the same count for the same code and inputs however loaded the machine is. Each case runs for N
and for 3N (steps or branches) and the difference is divided by 2N, so start-up and imports
cancel out.

What it leaves out: the time spent in the kernel (SQLite's writes to the WAL, thread wake-ups),
which is the same for vow and raw when vow makes the commits raw makes, and is most of raw's time
when the disk is slow. So this ratio is vow's user-space work over raw's; the timed ratio of
``raw_limit.py`` is lower when writes are slow and higher when they are fast.

vow runs every leaf on the engine thread (its default for quick leaves): under valgrind every
thread runs many times slower, and the engine's watchdog would otherwise move a no-op leaf to the
pool now and then, which would measure the pool instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {"steps": 1_000, "fanout": 2_000}  # N: each case runs for N and 3N
VALGRIND_SLOWDOWN = 50  # about how much slower a Python thread runs under callgrind


def child(case: str, n: int) -> None:
    """Run ``case`` (``vow-steps``, ``raw-fanout`` ...) for ``n`` in this process, on a fresh file.

    raw is ``raw_limit.py``'s own; vow runs ``raw_limit.py``'s workload without its WAL sampler (a
    thread that wakes every 5 ms would count the time valgrind takes), every leaf inline."""
    sys.path.insert(0, HERE)
    import raw_limit

    who, kind = case.split("-", 1)
    workload = {"steps": "sequential", "fanout": "fanout"}[kind]
    workdir = tempfile.mkdtemp(prefix="vow-instructions-")
    path = os.path.join(workdir, "vow.sqlite")
    try:
        if who == "raw":
            ok = raw_limit.raw_case(workload, n, path)["ok"]
        else:
            from vow import Vow
            from vow.engine import inline

            make = inline.InlineLeaves.__init__

            def never_moved(self: inline.InlineLeaves, *args: object, **options: object) -> None:
                make(self, *args, **{**options, "stall": 1e6, "slow": 1e6})  # type: ignore[arg-type]

            inline.InlineLeaves.__init__ = never_moved  # type: ignore[method-assign]
            # Under valgrind every thread runs about 50 times slower, so a background thread that wakes
            # on the wall clock (the watcher every 50 ms, the lease renewal) would run 50 times as often
            # per step as it does natively, and as often as the machine's load lets it: 7-11k
            # instructions a step that moved between runs of the same code. Scaled back to native.
            client = Vow(f"sqlite:{path}", poll_interval=0.05 * VALGRIND_SLOWDOWN,
                         lease_ttl=15.0 * VALGRIND_SLOWDOWN)
            workflow = getattr(raw_limit, workload)
            ok = client.run(f"{workload}/1", workflow, n) == n * (n - 1) // 2
            client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"case": case, "n": n, "ok": ok}))


def instructions(case: str, n: int) -> int:
    """Instructions callgrind counted in a run of ``case`` for ``n``."""
    with tempfile.TemporaryDirectory(prefix="vow-instructions-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = {**os.environ, "VOW_PLUGINS": ""}
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                               os.path.abspath(__file__), "--child", case, "--n", str(n)],
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{case} n={n} failed:\n{done.stderr[-2000:]}")
        with open(out) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError(f"{case} n={n}: callgrind wrote no total")


def per_item(case: str, n: int) -> float:
    """Instructions per step (or branch) of ``case``: the runs for 3n and n, their difference over 2n."""
    return (instructions(case, 3 * n) - instructions(case, n)) / (2 * n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="steps,fanout", help="comma-separated: steps, fanout")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n)
        return 0
    if shutil.which("valgrind") is None:
        ap.error("needs valgrind (Debian: apt install valgrind)")
    for name in args.cases.split(","):
        n = CASES[name]
        vow, raw = per_item(f"vow-{name}", n), per_item(f"raw-{name}", n)
        row = {"case": name, "n": n, "vow_instructions": round(vow), "raw_instructions": round(raw),
               "ratio": round(vow / raw, 2)}
        print(json.dumps(row), flush=True)
        unit = "step" if name == "steps" else "branch"
        print(f"{name:>7}  vow {vow:9,.0f}  raw {raw:9,.0f} instructions/{unit}  ratio {vow / raw:.2f}x",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

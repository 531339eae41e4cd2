"""vow adapter for the peers' benchmark harness (``../shared/bench-peers``), so vow runs side by
side with DBOS and Resonate in one run. Run it with a Python where vow is installed:

    python benchmarks/peers/vow_bench.py [--peers-dir DIR] [common.py options: --only, --configs, --repeat]

The harness (``common.py``) is found through ``--peers-dir``, else ``$VOW_BENCH_PEERS``, else
``<repo>/../shared/bench-peers``.

API used (vow's idiomatic one, every step a durable promise): ``Vow(store=...)``, generator
workflows registered with ``@vow.register``; fan-out ``h = yield ctx.begin_run(step, i)`` per
branch, fan-in ``yield ctx.all(handles)``; sequential ``v = yield ctx.run(step, i)``; top level
``vow.run(id, ...)`` and ``vow.begin_run(id, ...)`` then ``handle.result()``. A second
``vow.run`` under a settled id returns the stored result. Crash recovery: a new process calls
``vow.run`` with the same id (vow takes the dead process's lease at once and replays).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _peers_dir() -> str:
    """Where common.py lives; ``--peers-dir`` is removed from argv (common.main must not see it)
    and passed on to the child processes through the environment."""
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--peers-dir" and i + 1 < len(argv):
            os.environ["VOW_BENCH_PEERS"] = argv[i + 1]
            del argv[i:i + 2]
            break
        if arg.startswith("--peers-dir="):
            os.environ["VOW_BENCH_PEERS"] = arg.split("=", 1)[1]
            del argv[i]
            break
    path = os.environ.get("VOW_BENCH_PEERS") or os.path.join(REPO, "..", "shared", "bench-peers")
    path = os.path.abspath(path)
    if not os.path.exists(os.path.join(path, "common.py")):
        sys.exit(f"vow_bench: no common.py in {path}; give the peers' harness with --peers-dir DIR "
                 "or VOW_BENCH_PEERS")
    os.environ["VOW_BENCH_PEERS"] = path
    return path


sys.path.insert(0, _peers_dir())
# Only the core's plugins, as benchmarks/run.py does: installed channel plugins (and their imports)
# would otherwise count in vow's start-up time and RSS. Children inherit this.
os.environ.setdefault("VOW_PLUGINS", "")
import common  # noqa: E402
from common import Adapter, noop_body, sleep_body  # noqa: E402

from vow import Vow  # noqa: E402


# Leaves get a LeafContext first; the bodies are the harness's, so it counts executions.
def v_sleep(ctx, i):
    return sleep_body(i)


def v_noop(ctx, i):
    return noop_body(i)


def fanout_wf(ctx, n, body):
    fn = v_sleep if body == "sleep" else v_noop
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(fn, i)))
    values = yield ctx.all(handles)
    return sum(values)


def sequential_wf(ctx, n):
    total = 0
    for i in range(n):
        total += yield ctx.run(v_noop, i)
    return total


_CRASH_LOG_FD = -1


def logged_step(ctx, i):
    os.write(_CRASH_LOG_FD, f"{i} {os.getpid()}\n".encode())  # O_APPEND, unbuffered
    return i


def crash_wf(ctx, n):
    total = 0
    for i in range(n):
        total += yield ctx.run(logged_step, i)
    return total


def _open(store_url: str) -> Vow:
    vow = Vow(store=store_url)
    for wf in (fanout_wf, sequential_wf, crash_wf):
        vow.register(wf)
    return vow


_NOT_CRASH = ["fanout_sleep", "fanout_noop", "sequential_steps", "many_workflows", "replay_cached"]


class VowAdapter(Adapter):
    peer = "vow"
    version = importlib.metadata.version("vow-durable")
    configs = {
        "default": {"desc": "Vow() defaults: SQLite file, WAL, synchronous=NORMAL (a commit survives a process "
                            "crash; the last commits may be lost on power loss); begin_run + ctx.all fan-out",
                    "store": "sqlite:{dir}/vow.sqlite"},
        "sqlite_full": {"desc": "as default with ?synchronous=full: every commit fsynced (survives power loss), "
                                "the durability DBOS has; not vow's default",
                        "store": "sqlite:{dir}/vow.sqlite?synchronous=full"},
        "memory": {"desc": "memory: store (promises in dicts, nothing survives the process), like Resonate.local()",
                   "store": "memory:", "scenarios": _NOT_CRASH},
        "postgres": {"desc": "the postgresql store (vow-postgres) on the server at $PEERBENCH_PG_URL, a fresh schema "
                             "per scenario; its default synchronous_commit=off (a commit survives any worker dying; "
                             "a server or machine crash may roll back the last commits), like SQLite's default",
                     "pg": True},
        "postgres_sync": {"desc": "as postgres with ?synchronous_commit=on: every commit waits for the server's disk, "
                                  "the durability DBOS has; not vow's default", "pg": True, "sync": "on"},
    }

    def start(self) -> None:
        if self.config.get("pg"):
            os.environ["VOW_PLUGINS"] = "postgresql"  # the store's plugin too (children inherit it)
            base = os.environ.get("PEERBENCH_PG_URL", "postgresql://postgres@127.0.0.1:55432")
            self.schema = f"vow_bench_{os.getpid()}_{int(time.time() * 1000)}"
            self.store_url = f"{base}{'&' if '?' in base else '?'}schema={self.schema}"
            if self.config.get("sync"):
                self.store_url += f"&synchronous_commit={self.config['sync']}"
        else:
            self.store_url = self.config["store"].format(dir=self.workdir)
        self.vow = _open(self.store_url)

    def stop(self) -> None:
        self.vow.close()
        if self.config.get("pg"):
            import psycopg

            base = os.environ.get("PEERBENCH_PG_URL", "postgresql://postgres@127.0.0.1:55432")
            with psycopg.connect(base, autocommit=True) as con:
                con.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def fanout(self, wf_id, n, body):
        return self.vow.run(wf_id, fanout_wf, n, body)

    def sequential(self, wf_id, n):
        return self.vow.run(wf_id, sequential_wf, n)

    def many_workflows(self, id_prefix, workflows, fanout):
        handles = [self.vow.begin_run(f"{id_prefix}-{k}", fanout_wf, fanout, "noop") for k in range(workflows)]
        return sum(h.result() for h in handles)

    def crash_recovery(self, n, kill_after):
        """kill -9 a process running crash_wf(n) once ``kill_after`` steps have started, then time a
        fresh process (``vow.run`` with the same id resumes it) from its spawn to the result."""
        self.vow.close()  # this process only watches; the workers own the store
        log = os.path.join(self.workdir, "steps.log")
        wf_id = f"crash-{os.getpid()}"
        me = os.path.abspath(__file__)
        a = subprocess.Popen([sys.executable, me, "--crash-worker", "run", self.store_url, log, wf_id, str(n)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and a.poll() is None:
            if _lines(log) >= kill_after:
                break
            time.sleep(0.0005)
        if a.poll() is not None:
            return {"ok": False,
                    "note": f"run process exited early rc={a.returncode}: {a.stderr.read().decode()[-300:]}"}
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        with open(log) as f:
            started_in_a = sorted(int(line.split()[0]) for line in f if line.strip())
        checkpointed = _settled_children(self.store_url, wf_id)

        t0 = time.perf_counter()
        b = subprocess.run([sys.executable, me, "--crash-worker", "recover", self.store_url, log, wf_id, str(n)],
                           capture_output=True, text=True, timeout=120)
        total = time.perf_counter() - t0
        try:
            info = json.loads(b.stdout.strip().splitlines()[-1])
        except Exception:  # noqa: BLE001
            return {"ok": False, "note": f"recover process failed rc={b.returncode}: {b.stderr[-300:]}"}
        with open(log) as f:
            all_lines = [tuple(map(int, line.split())) for line in f if line.strip()]
        b_steps = [i for i, pid in all_lines if pid == info["pid"]]
        reexec = sorted(set(b_steps) & set(started_in_a))
        coverage_ok = sorted({i for i, _ in all_lines}) == list(range(n))
        ok = (info["result"] == sum(range(n)) and coverage_ok and len(reexec) <= 1
              and all(i >= checkpointed for i in reexec))
        return {
            "wall_s": round(total, 4),
            "ok": ok,
            "note": "" if ok else f"reexecuted={reexec[:10]} coverage_ok={coverage_ok} result={info['result']}",
            "steps_started_before_kill": len(started_in_a),
            "steps_checkpointed_before_kill": checkpointed,
            "steps_run_after_restart": len(b_steps),
            "reexecuted_steps": len(reexec),
            "reexecuted_step_ids": reexec[:10],
            "recover_interpreter_and_import_s": round(total - info["launch_to_result_s"], 3),
            "recover_launch_s": info["launch_s"],
            "recover_launch_to_result_s": info["launch_to_result_s"],
            "peak_rss_mb": info["peak_rss_mb"],  # of the restarted (recovering) process
        }


def _lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _settled_children(store_url: str, wf_id: str) -> int:
    from vow.stores import open_store

    store = open_store(store_url)
    try:
        return sum(1 for r in store.tree(wf_id) if r.id != wf_id and r.settled)
    finally:
        store.close()


def _crash_worker(phase: str, store_url: str, log: str, wf_id: str, n: int) -> None:
    global _CRASH_LOG_FD
    _CRASH_LOG_FD = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    vow = _open(store_url)
    t_launch = time.perf_counter() - t0
    result = vow.run(wf_id, crash_wf, n)  # "run": SIGKILLed part way; "recover": resumes the same id
    if phase == "run":
        os._exit(3)  # should not get here
    print(json.dumps({"pid": os.getpid(), "result": result, "peak_rss_mb": common.peak_rss_mb(),
                      "launch_s": round(t_launch, 3),
                      "launch_to_result_s": round(time.perf_counter() - t0, 3)}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--crash-worker":
        _crash_worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    common.main(VowAdapter)

"""A worker stops on SIGTERM every time (vow.stopping).

The handler ``lambda *_: stop.set()`` hangs the process about once in a hundred signals when the
main thread keeps waiting on ``stop``, as ``Vow.worker`` does between polls: the signal can land
while the main thread holds the event's lock inside ``wait()``, and ``set()`` then waits for it
forever. Run ``ROUNDS`` below with the argument ``plain`` instead to watch that handler hang
(within 4 to 200 signals in three runs here, where :func:`vow.stopping.stop_on_signals` took 3,000
of 3,000).
"""

from __future__ import annotations

from tests.support import python

# The main thread waits on the event nonstop while a timer's signal (SIGALRM, a stand-in for SIGTERM
# that the kernel sends at a moment of its own) sets it, again and again. A watchdog ends the
# process if a round makes no progress.
ROUNDS = """
import os, random, signal, sys, threading, time
from vow.stopping import stop_on_signals

stop = threading.Event()
if sys.argv[1] == "plain":
    signal.signal(signal.SIGALRM, lambda *_: stop.set())
else:
    stop_on_signals(stop, [signal.SIGALRM])
rounds = 0

def watch():
    seen = -1
    while seen != rounds:
        seen = rounds
        time.sleep(10)  # a round takes well under a millisecond: ten seconds without one is a hang
    print("hung after", rounds, "signals", flush=True)
    os._exit(3)

threading.Thread(target=watch, daemon=True).start()
for rounds in range(3000):
    stop.clear()
    # The kernel delivers it at a random moment of the waiting below, whatever Python is doing.
    signal.setitimer(signal.ITIMER_REAL, random.uniform(0.00001, 0.0002))
    while not stop.is_set():
        stop.wait(0.00001)
print("stopped", rounds + 1, "times", flush=True)
"""


def test_a_loop_waiting_on_its_stop_event_stops_on_every_signal() -> None:
    done = python("-c", ROUNDS, "stop_on_signals")
    assert done.returncode == 0 and done.stdout == "stopped 3000 times\n", (done.returncode, done.stdout, done.stderr)

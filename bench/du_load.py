"""A co-located RAN distributed unit's CPU load on the edge's core, for ``bench.as_deployed --du-load``.

An edge node next to the base station often shares its host with the vRAN's distributed unit (DU), whose
layer-1/2 processing grows with the cell's PRB load and runs at real-time priority. This emulates it: a
process pinned to the given CPUs that is busy ``duty`` of every 10 ms period and sleeps the rest, under
``SCHED_FIFO`` where the bench may set it (root), so it takes its share first, as a DU does; otherwise at
the normal priority (said in the report). ``duty`` stands for the DU's share of the core at the cell's PRB
load (an assumption of the bench, not a measurement of a real DU).

    python -m bench.du_load 0.5 --cpus 0     # by hand: half of CPU 0 until interrupted
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

PERIOD_S = 0.010


def burn(duty: float, period_s: float = PERIOD_S) -> None:
    """Busy ``duty`` of each period, asleep the rest, until killed or orphaned (a bench that died leaves no
    real-time burner behind)."""
    parent = os.getppid()
    while os.getppid() == parent:
        start = time.perf_counter()
        while time.perf_counter() - start < duty * period_s:
            pass
        time.sleep(max(0.0, period_s - (time.perf_counter() - start)))


def real_time() -> bool:
    """Take SCHED_FIFO priority 1 where allowed; whether it was."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:  # PermissionError without root
        return False
    return True


class DuLoad:
    """The emulated DU as a child process (``stop()`` ends it); ``real_time``: it got SCHED_FIFO."""

    def __init__(self, duty: float, cpus: set[int]) -> None:
        if not 0.0 < duty < 1.0:
            raise ValueError(f"the DU's share of the core must be in (0, 1), got {duty}")
        self.duty, self.cpus = duty, cpus
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.du_load", str(duty), "--cpus",
                                      ",".join(map(str, sorted(cpus)))], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.real_time = self.proc.stdout.readline().strip() == "SCHED_FIFO"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def describe(self) -> dict[str, object]:
        return {"duty": self.duty, "cpus": sorted(self.cpus),
                "priority": "SCHED_FIFO 1" if self.real_time else "normal (no permission for SCHED_FIFO)"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("duty", type=float, help="busy share of each 10 ms period, in (0, 1)")
    parser.add_argument("--cpus", default="0", help="comma-separated CPUs to pin to")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    print("SCHED_FIFO" if real_time() else "normal", flush=True)
    burn(args.duty)


if __name__ == "__main__":
    main()

"""``initlab bench --only threads``: how many CPU threads `initlab run` should use by default.

torch starts one thread per core. On an idle machine two threads beat one by a little; beside
another CPU-bound process (a browser, a second run, a notebook kernel) torch's threads wait
for each other on busy cores, and a run can take many times longer. This section measures
both situations the way a user meets them: each case is a whole `initlab run kaiming`
command (``max_steps`` updates, its evaluation and its files), in a subprocess, timed from
start to exit:

- ``threads``: 1 or 2 (``--threads``);
- ``situation``: ``idle``, or ``busy`` beside one other CPU-bound process (a Python busy loop
  started before the run and stopped after it);
- ``wait``: OpenMP's wait policy, torch's spin setting: ``default`` (threads spin a while
  before they sleep) or ``passive`` (``OMP_WAIT_POLICY=PASSIVE``: they sleep at once).

The cases run in turns, ``rounds`` times; each case's fastest round counts (other work only
ever slows a round down). ``vs best`` divides a case's time by the fastest case's in the same
situation: the default thread count should be close to 1.0 in both. docs/benchmarks.md has the
measurements and the choice they led to (``initlab.cli.default_threads``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CASES: tuple[tuple[int, str, str], ...] = (
    (1, "idle", "default"), (2, "idle", "default"), (2, "idle", "passive"),
    (1, "busy", "default"), (2, "busy", "default"), (2, "busy", "passive"),
)
BUSY_LOOP = "while True: pass"


@dataclass
class ThreadsRow:
    threads: int
    situation: str  # idle | busy
    wait: str  # default | passive
    seconds: float  # the fastest round, whole command
    rounds: list[float]
    vs_best: float = 0.0  # seconds / the fastest case's in the same situation


def time_command(threads: int, wait: str, steps: int, out: Path,
                 data_root: str | None) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # --threads decides
    if wait == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        env.pop("OMP_WAIT_POLICY", None)
    if data_root:
        env["INITLAB_DATA"] = data_root
    command = [sys.executable, "-m", "initlab", "run", "kaiming", f"train.max_steps={steps}",
               "train.target_test_error=null", "log.every=0", "train.checkpoint=none",
               "--threads", str(threads), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_threads(steps: int, rounds: int, data_root: str | None,
                 log: Callable[[str], None]) -> list[ThreadsRow]:
    """Every case of ``CASES``, in turns, ``rounds`` times."""
    times: dict[tuple[int, str, str], list[float]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory(prefix="initlab-bench-threads-") as tmp:
        for r in range(rounds):
            for case in CASES:
                threads, situation, wait = case
                log(f"round {r + 1}/{rounds}: {threads} thread(s), {situation}, wait {wait} ...")
                other = (subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                         if situation == "busy" else None)
                try:
                    times[case].append(time_command(threads, wait, steps, Path(tmp), data_root))
                finally:
                    if other is not None:
                        other.kill()
                        other.wait()
    rows = [ThreadsRow(*case, min(t), [round(x, 2) for x in t]) for case, t in times.items()]
    for row in rows:
        best = min(r.seconds for r in rows if r.situation == row.situation)
        row.vs_best = row.seconds / best
    return rows


def threads_result(rows: list[ThreadsRow], steps: int, rounds: int) -> dict[str, Any]:
    return {
        "method": f"whole `initlab run kaiming` commands of {steps} updates (log.every 0, no "
                  f"checkpoint), cases in turns, fastest of {rounds} rounds; busy: beside one "
                  f"Python busy loop",
        "rows": [asdict(r) for r in rows],
    }

"""A Ray task against a local job, on the same machine (docs/benchmarks.md, "Ray tasks"):

    unshare -n .venv/bin/python docs/bench/ray_vs_pool.py --out docs/bench/ray-DATE.json \
        [--jobs 40] [--only FIGURE ...]

Inside a network namespace of its own (``unshare -n``: Ray gets only 127.0.0.1), it starts the
cluster tests/test_ray.py uses -- a head and a second node, one CPU each -- and measures:

1. the cost of scheduling a job: ``--jobs`` N jobs that do nothing, run by the local pool with
   two workers and by ``RayExecutor`` on the two nodes: one call first (it pays for starting
   the driver's Ray workers), then N and 2N jobs, three calls each, the fastest of each
   counting; the marginal cost per job is (T(2N) - T(N)) / N, and T(N) minus N of those is
   what a call costs whatever its jobs (the pool starts its worker processes at every call);
   on a busy machine the difference drowns in noise, and T(2N) / 2N bounds the cost per job;
2. the suite: ``initlab figures --quick`` (or only the figures named), once with the local pool
   (``--jobs 2``) and once with ``--executor ray`` on the two nodes, each into a fresh cache,
   wall time of the whole command.

It prints and writes the numbers as JSON with the machine's load average before and after:
say whether the machine was idle when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import ray_cluster  # noqa: E402 -- the tests' cluster, after the path above

from initlab.jobs import Job, LocalPool  # noqa: E402
from initlab.progress import quiet_progress  # noqa: E402
from initlab.ray_jobs import RayExecutor  # noqa: E402

REPEATS = 3


def nothing(run_dirs: tuple[Path, ...], progress: object = None) -> None:
    """A job that does nothing: what is left is the executor's own cost."""


def timed(executor: object, jobs: list[Job]) -> float:
    start = time.perf_counter()
    executor.run(jobs, quiet_progress)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def scheduling(n: int, folder: Path) -> dict[str, dict[str, float]]:
    def jobs(count: int) -> list[Job]:
        return [Job(f"nothing {i}", 1.0, nothing, (folder / f"job{i}",)) for i in range(count)]

    found = {}
    for name, executor in (("local pool, 2 workers", LocalPool(2)),
                           ("Ray, 2 nodes", RayExecutor(f"127.0.0.1:{ray_cluster.PORT}"))):
        first = timed(executor, jobs(n))
        one = min(timed(executor, jobs(n)) for _ in range(REPEATS))
        two = min(timed(executor, jobs(2 * n)) for _ in range(REPEATS))
        per_job = (two - one) / n
        found[name] = {"first_call_s": round(first, 3), f"{n}_jobs_s": round(one, 3),
                       f"{2 * n}_jobs_s": round(two, 3),
                       "per_job_ms": round(1000 * per_job, 2),
                       "per_call_s": round(one - n * per_job, 3),
                       "at_most_per_job_ms": round(1000 * two / (2 * n), 2)}
        print(name, found[name], flush=True)
    return found


def suite(only: list[str], folder: Path) -> dict[str, float]:
    found = {}
    base = [str(ray_cluster.BIN / "initlab"), "figures", "--quick"]
    base += [arg for name in only for arg in ("--only", name)]
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{ray_cluster.PORT}"}
    for name, extra in (("local pool, --jobs 2", ["--jobs", "2"]),
                        ("Ray, 2 nodes", ["--executor", "ray"])):
        tag = "pool" if "pool" in name else "ray"
        start = time.perf_counter()
        subprocess.run([*base, *extra, "--out", str(folder / f"{tag}-figures"), "--cache",
                        str(folder / f"{tag}-cache")], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found[name] = round(time.perf_counter() - start, 1)
        print(name, found[name], "s", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--skip-suite", action="store_true")
    args = parser.parse_args()
    ray_cluster.loopback_up()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="initlab-bench-"))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["HOME"] = temp
    subprocess.run(ray_cluster.ray_command("get-auth-token", "--generate"), check=True,
                   capture_output=True)
    result: dict[str, object] = {"load_before": os.getloadavg(), "cpus": os.cpu_count(),
                                 "date": time.strftime("%Y-%m-%d %H:%M")}
    nodes: list[subprocess.Popen] = []
    try:
        ray_cluster.start_cluster(temp, nodes)
        result["scheduling"] = scheduling(args.jobs, work)
        if not args.skip_suite:
            result["suite"] = {"figures": args.only or "all (quick)",
                               "wall_s": suite(args.only, work)}
    finally:
        import ray

        ray.shutdown()
        ray_cluster.stop_nodes(nodes)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = os.getloadavg()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""A Ray cluster of two nodes on this machine, for tests/test_ray.py: run inside a network
namespace of its own (``unshare -n``), so that Ray, which binds a machine's outside address
when it can, has only 127.0.0.1.

    unshare -n python tests/ray_cluster.py

brings the loopback interface up, generates an auth token (``RAY_AUTH_MODE=token``), starts a
head with ``ray start --head`` on 127.0.0.1 and a second node that joins it (one CPU each),
then answers requests, one JSON object a line on stdin, with one JSON object a line on stdout,
until stdin closes (then it stops the cluster):

- ``{"do": "cli", "args": [...]}``: ``initlab ARGS`` with RAY_ADDRESS set to the cluster;
  answers its exit code and output;
- ``{"do": "sent", "config": PATH, "out": DIR, "threads": N}``: the config trained through
  ``experiment.run_experiment_with`` on a ``RayExecutor`` that sends results back (a
  UsageError answers ``{"usage": message}``);
- ``{"do": "figures", "only": [...], "out": DIR, "cache": DIR, "results": R}``: quick
  figures through ``figures.build_figures`` on a ``RayExecutor(results=R)``;
- ``{"do": "interrupt", "config": PATH, "out": DIR, "when": PATH}``: the config trained on a
  ``RayExecutor``, and SIGINT to this process (Ctrl-C) once that file exists;
- ``{"do": "kill", "config": PATH, "out": DIR, "when": NAME, "count": N}``: the same on a
  plain ``RayExecutor`` while, once N files NAME exist under the run's directory (a
  checkpoint of each group), the second node is killed if it runs a task (its raylet and
  every process under it, SIGKILL); answers the progress events the caller saw and whether
  the node was killed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
OBJECT_STORE = str(80 * 1024 * 1024)  # bytes per node: the tests move a few MB
PORT = 6380


def loopback_up() -> None:
    """``ip link set lo up``, without needing iproute2."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def ray_command(*args: str) -> list[str]:
    return [str(BIN / "ray"), *args]


def start_cluster(temp: str, nodes: list[subprocess.Popen]) -> None:
    """The head (one CPU), then a second node (one CPU) that joins it, each a ``ray start
    --block`` process of this one, listed in ``nodes`` as it starts: stopping it (or killing
    its process tree) stops that node and nothing else."""
    nodes.append(start_node(["--head", "--port", str(PORT), "--include-dashboard", "false",
                             "--temp-dir", temp]))
    wait_for_nodes(1)
    nodes.append(start_node(["--address", f"127.0.0.1:{PORT}"]))
    wait_for_nodes(2)


def start_node(args: list[str]) -> subprocess.Popen:
    """A node whose output goes to this driver's stderr (the test shows it on failure)."""
    return subprocess.Popen(ray_command("start", "--block", "--node-ip-address", "127.0.0.1",
                                        "--num-cpus", "1", "--object-store-memory",
                                        OBJECT_STORE, "--disable-usage-stats", *args),
                            stdout=sys.stderr, stderr=sys.stderr, start_new_session=True)


def wait_for_nodes(count: int, timeout: float = 90) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while not ray.is_initialized():
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=1):
                pass
            ray.init(address=f"127.0.0.1:{PORT}", logging_level="ERROR", log_to_driver=False)
        except (OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    while sum(n["Alive"] for n in ray.nodes()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not reach {count} nodes")
        time.sleep(0.2)


def children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            found.setdefault(parent, []).append(int(entry))
    return found


def tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out = [pid]
    for kid in kids.get(pid, []):
        out += tree(kid, kids)
    return out


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def busy_node(nodes: list[subprocess.Popen]) -> subprocess.Popen | None:
    """The worker node (its ``ray start --block`` process) under which a task is running."""
    kids = children()
    for node in nodes[1:]:
        for pid in tree(node.pid, kids):
            name = title(pid)
            if name.startswith("ray::") and "IDLE" not in name:
                return node
    return None


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL to a node's processes (those under its ``ray start``), youngest first."""
    signal_all(reversed(tree(node.pid, children())), signal.SIGKILL)
    node.wait(timeout=60)


def signal_all(pids: Any, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_nodes(nodes: list[subprocess.Popen]) -> None:
    """Worker nodes first, then the head: ``ray start --block`` stops its node on SIGTERM;
    whatever is left of one after that (listed before: orphans leave its tree) is killed."""
    for node in reversed(nodes):
        pids = tree(node.pid, children())
        node.terminate()
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        signal_all(reversed(pids), signal.SIGKILL)
        node.wait(timeout=60)


def cli(request: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{PORT}"}
    done = subprocess.run([str(BIN / "initlab"), *request["args"]], env=env,
                          capture_output=True, text=True, timeout=120)
    return {"code": done.returncode, "output": done.stdout + done.stderr}


def figures(request: dict[str, Any]) -> dict[str, Any]:
    from initlab.figures import build_figures
    from initlab.ray_jobs import RayExecutor

    result = build_figures(request["only"], quick=True, out=Path(request["out"]),
                           cache=Path(request["cache"]), log=lambda line: None,
                           executor=RayExecutor(results=request.get("results", "auto")))
    return {"trained": result.trained}


def interrupt(request: dict[str, Any]) -> dict[str, Any]:
    """Ctrl-C, as a terminal sends it to the caller, once ``when`` exists."""
    from initlab.errors import RunInterrupted

    def press() -> None:
        deadline = time.monotonic() + 60
        while not Path(request["when"]).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=press)
    thread.start()
    try:
        train(request, "auto", lambda label, total: lambda event: None)
    except RunInterrupted as stop:
        return {"interrupted": str(stop.path), "code": stop.exit_code}
    finally:
        thread.join()
    return {"interrupted": None}


def train(request: dict[str, Any], results: str, progress: Any) -> list[str]:
    from initlab.experiment import run_experiment_with
    from initlab.overrides import load
    from initlab.ray_jobs import RayExecutor

    outcomes = run_experiment_with(load(Path(request["config"]), [], {}), Path(request["out"]),
                                   RayExecutor(results=results), progress=progress,
                                   threads=request.get("threads"))
    return [str(o.path) for o in outcomes]


def kill(request: dict[str, Any], nodes: list[subprocess.Popen]) -> dict[str, Any]:
    events: list[Any] = []

    def progress(label: str, total: int) -> Any:
        events.append(["open", label, total])
        return lambda event: events.append([label, event])

    answer: dict[str, Any] = {}

    def killer() -> None:
        out = Path(request["out"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(list(out.rglob(request["when"]))) >= request["count"]:
                node = busy_node(nodes)
                if node is not None:
                    kill_node(node)
                    answer["killed"] = True
                    nodes.remove(node)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=killer)
    thread.start()
    answer["paths"] = train(request, "auto", progress)
    thread.join()
    answer["events"] = events
    return answer


def serve(nodes: list[subprocess.Popen], answers: Any) -> None:
    from initlab.errors import UsageError

    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["do"] == "cli":
                answer = cli(request)
            elif request["do"] == "sent":
                answer = {"paths": train(request, "sent", lambda label, total: lambda e: None)}
            elif request["do"] == "kill":
                answer = kill(request, nodes)
            elif request["do"] == "figures":
                answer = figures(request)
            elif request["do"] == "interrupt":
                answer = interrupt(request)
            else:
                answer = {"error": f"unknown request {request['do']!r}"}
        except UsageError as err:  # what a user would read
            answer = {"usage": str(err)}
        except Exception as err:  # the test reports it
            answer = {"error": f"{type(err).__name__}: {err}"}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()


def main() -> None:
    # Answers go to the test on what was stdout; anything else printed there (Ray's notes on a
    # retried task, ...) goes to stderr instead.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    loopback_up()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["HOME"] = temp  # the auth token goes here, not into the user's home
    subprocess.run(ray_command("get-auth-token", "--generate"), check=True,
                   capture_output=True, timeout=60)
    nodes: list[subprocess.Popen] = []
    try:
        start_cluster(temp, nodes)
        answers.write(json.dumps({"ready": True}) + "\n")
        answers.flush()
        serve(nodes, answers)
    finally:
        import ray

        ray.shutdown()
        stop_nodes(nodes)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()

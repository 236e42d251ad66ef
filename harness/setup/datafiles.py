"""The files of the torchvision datasets: their names, a check that needs no loading (preflight), the IDX reader,
and torchvision's download made one line when it fails, leaving nothing half-written."""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.setup.config import DataError

MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def data_files(name: str, root: Path) -> list[Path]:
    """The files a torchvision dataset is read from; [] for the generated and bundled ones."""
    if name in MNIST_FOLDERS:
        return [root / MNIST_FOLDERS[name] / "raw" / f for f in MNIST_FILES]
    if name == "cifar10":
        return [root / CIFAR_FOLDER / b for b in CIFAR_BATCHES]
    return []


def check_files(name: str, root: str, download: bool) -> None:
    """Before any run folder exists: the dataset's files are there (or will be downloaded), and MNIST's are whole
    IDX files (a header that matches the file's size). CIFAR-10's batches are checked as they are read."""
    files = data_files(name, Path(root))
    missing = [f for f in files if not f.exists()]
    if missing and not download:
        raise DataError(
            f"{name} not found in {missing[0].parent} (missing {missing[0].name}); add "
            "dataset.download=true to fetch it"
        )
    for path in files:
        if path.exists() and name in MNIST_FOLDERS:
            idx_layout(path)


def idx_layout(path: Path, data: bytes | None = None) -> tuple[tuple[int, ...], int]:
    """(shape, offset of the values) of an IDX file of unsigned bytes; DataError if the file is not one."""
    if data is None:
        with open(path, "rb") as f:
            data = f.read(4 + 4 * 255)
        size = path.stat().st_size
    else:
        size = len(data)
    ndim = data[3] if len(data) >= 4 else 0
    ok = len(data) >= 4 + 4 * ndim and data[:3] == b"\x00\x00\x08" and ndim > 0
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)) if ok else ()
    if not ok or size != 4 + 4 * ndim + int(np.prod(shape, dtype=np.int64)):
        raise DataError(
            f"{path} is not a whole IDX file of bytes (a wrong header or size: corrupt or half-written); "
            "delete it and add dataset.download=true"
        )
    return shape, 4 + 4 * ndim


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    shape, offset = idx_layout(path, data)
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()  # writable


def download(name: str, root: Path, fetch: Callable[[], object]) -> None:
    """Run torchvision's download (fetch) quietly; if it fails (no network, a bad archive), remove what it wrote
    and raise DataError in one line."""
    new = first_missing(root)
    before = set(root.rglob("*")) if root.exists() else set()
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            fetch()
    except Exception as exc:
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)
        for path in sorted(set(root.rglob("*")) - before, reverse=True) if root.exists() else []:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        reason = " ".join(str(exc).split())[:300]
        raise DataError(
            f"cannot download {name} into {root} ({type(exc).__name__}: {reason}); fetch it elsewhere and copy it there"
        ) from None


def first_missing(path: Path) -> Path | None:
    """The top-most folder of path that does not exist yet (what a failed download must remove), or None."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            return missing
        missing = p
    return missing

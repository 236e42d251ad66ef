"""Datasets as device-resident tensors and fixed train/val/test splits (their batches: harness.setup.batches)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, cast

import numpy as np
import torch

from harness.common.safe_pickle import UnsafePickle, load_data_pickle
from harness.setup.config import Config, DataError
from harness.setup.datafiles import check_files, data_files, download, read_idx

if TYPE_CHECKING:
    from harness.networks.models.base import Family

SPLIT_SEED = 0  # the validation split and subsample are the same for every run seed
MIN_VALIDATION = 10  # samples: fewer, and validation accuracy moves in steps of 10 points or more


@dataclass
class Dataset:
    """Float inputs (N, C, L) for sequences, (N, C, H, W) for images, (N, D) for vectors; int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    checksum: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def astype(self, dtype: torch.dtype) -> Dataset:
        """The same splits with float inputs in dtype (the tests' float64 runs)."""
        return dataclasses.replace(self, **{f: getattr(self, f).to(dtype) for f in ("x_train", "x_val", "x_test")})


# ---------------------------------------------------------------- raw loaders: numpy (x_train, y_train, x_test, y_test)


def load_mnist1d(root: Path) -> tuple[np.ndarray, ...]:
    """MNIST-1D from its authors' generator (offline), cached as .npz under root."""
    cache = root / "mnist1d" / "mnist1d_default.npz"
    if not cache.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        data = make_dataset(get_dataset_args())
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x=data["x"], y=data["y"], x_test=data["x_test"], y_test=data["y_test"])
        tmp.replace(cache)
    with np.load(cache) as f:
        arrays = f["x"][:, None, :], f["y"], f["x_test"][:, None, :], f["y_test"]  # (N, 1, 40)
    return tuple(arrays)


def load_digits() -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled 8x8 digits, split 80/20 reproducibly and stratified."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = bunch.images[:, None, :, :] / 16.0  # (N, 1, 8, 8) in [0, 1]
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target)
    return x_tr, y_tr, x_te, y_te


def make_spirals(n_per_class: int = 1000, arms: int = 3, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Multi-arm 2-D spirals, one arm per class: the classic non-linear decision boundary."""
    rng = np.random.RandomState(seed)
    radius = np.tile(np.linspace(0.05, 1.0, n_per_class), arms)
    label = np.repeat(np.arange(arms), n_per_class)
    angle = label * 2 * np.pi / arms + radius * 4 * np.pi + rng.randn(arms * n_per_class) * noise
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    order = rng.permutation(len(x))
    x, label = x[order], label[order]
    n_test = len(x) // 5
    return x[n_test:], label[n_test:], x[:n_test], label[:n_test]


def load_mnist_like(root: Path, name: str, download: bool) -> tuple[np.ndarray, ...]:
    """MNIST or Fashion-MNIST in torchvision's layout (root/MNIST/raw/*-ubyte); torchvision downloads it."""
    files = data_files(name, root)
    if download and not all(f.exists() for f in files):
        fetch_torchvision(name, root)
    check_files(name, str(root), download=False)
    x_tr, y_tr, x_te, y_te = (read_idx(f) for f in files)
    return x_tr[:, None] / 255.0, y_tr, x_te[:, None] / 255.0, y_te  # (N, 1, 28, 28)


def fetch_torchvision(name: str, root: Path) -> None:
    """torchvision's download of a dataset into root, in one line if it fails (harness.setup.datafiles.download)."""
    import torchvision

    if name == "cifar10":
        return download(name, root, lambda: torchvision.datasets.CIFAR10(str(root), download=True))
    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    download(name, root, lambda: [cls(str(root), train=train, download=True) for train in (True, False)])


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32), labels) of one CIFAR-10 python batch, unpickled without running any code in it."""
    try:
        with open(path, "rb") as f:
            batch = load_data_pickle(f, encoding="latin1")  # the format CIFAR-10 ships in
        return np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(batch["labels"])
    except UnsafePickle as exc:
        raise DataError(f"refusing to read {path}: {exc}; delete it and add dataset.download=true") from None
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path} is not a CIFAR-10 batch ({type(exc).__name__}: {exc}); delete it and add dataset.download=true"
        ) from None


def load_cifar10(root: Path, download: bool) -> tuple[np.ndarray, ...]:
    """CIFAR-10 from its python batches (root/cifar-10-batches-py); torchvision downloads it."""
    files = data_files("cifar10", root)
    if download and not all(f.exists() for f in files):
        fetch_torchvision("cifar10", root)
    check_files("cifar10", str(root), download=False)
    batches = [read_cifar_batch(f) for f in files]
    x_tr = np.concatenate([b[0] for b in batches[:5]]) / 255.0
    y_tr = np.concatenate([b[1] for b in batches[:5]])
    return x_tr, y_tr, batches[5][0] / 255.0, batches[5][1]


@dataclass(frozen=True)
class DatasetSpec:
    """What is known of a dataset before loading it: enough to check a run against it without the data."""

    kind: str  # sequence, image or vector: which models take it (each model's `inputs`)
    input_shape: tuple[int, ...]  # one sample
    train: int  # samples in the training data, validation split included
    test: int
    num_classes: int
    load: Callable[[Path, bool], tuple[np.ndarray, ...]]  # (root, download) -> x_train, y_train, x_test, y_test
    reads_root: bool = True  # False: generated or bundled, dataset.root unused

    def train_split(self, val_fraction: float, train_size: int | None) -> int:
        """Samples in the training split once the validation split is carved out (load_dataset's arithmetic)."""
        n = self.train - max(1, int(round(self.train * val_fraction)))
        return n if train_size is None else min(n, train_size)


DATASETS: dict[str, DatasetSpec] = {
    "mnist1d": DatasetSpec("sequence", (1, 40), 4000, 1000, 10, lambda root, download: load_mnist1d(root)),
    "digits": DatasetSpec("image", (1, 8, 8), 1437, 360, 10, lambda root, download: load_digits(), reads_root=False),
    "spirals": DatasetSpec("vector", (2,), 2400, 600, 3, lambda root, download: make_spirals(), reads_root=False),
    "mnist": DatasetSpec(
        "image", (1, 28, 28), 60000, 10000, 10, lambda root, download: load_mnist_like(root, "mnist", download)
    ),
    "fashion_mnist": DatasetSpec(
        "image", (1, 28, 28), 60000, 10000, 10, lambda root, download: load_mnist_like(root, "fashion_mnist", download)
    ),
    "cifar10": DatasetSpec("image", (3, 32, 32), 50000, 10000, 10, load_cifar10),
}


class Network(Protocol):
    """What the data checks read of a family's network class (Family.network, typed as any nn.Module)."""

    inputs: ClassVar[tuple[str, ...]]  # the dataset kinds it takes


def kinds_taken(family: Family) -> tuple[str, ...]:
    """The dataset kinds a model family takes: its network class's `inputs`."""
    return cast("type[Network]", family.network).inputs


def check_pair(model: str, dataset: str) -> None:
    """Refuse a model x dataset pair that cannot work, saying which pairs do."""
    from harness.networks.models import MODELS

    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    kind = DATASETS[dataset].kind
    if kind not in kinds_taken(MODELS[model]):
        pairs = "; ".join(
            f"{m}: {', '.join(d for d, spec in DATASETS.items() if spec.kind in kinds_taken(family))}"
            for m, family in MODELS.items()
        )
        raise DataError(f"model={model} cannot take dataset={dataset} ({kind} input). Valid pairs: {pairs}")


# ---------------------------------------------------------------- splits and tensors


def checksum(*arrays: np.ndarray) -> str:
    """A short hash of the data, so that a report can tell runs on different data apart."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def load_dataset(
    name: str,
    root: str = "data",
    download: bool = False,
    train_size: int | None = None,
    val_fraction: float = 0.1,
    device: str | torch.device = "cpu",
) -> Dataset:
    """Load a dataset, carve a validation split from its training data, and move it to the device."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    x_tr, y_tr, x_te, y_te = DATASETS[name].load(Path(root), download)
    order = np.random.RandomState(SPLIT_SEED).permutation(len(x_tr))
    n_val = max(1, int(round(len(x_tr) * val_fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_size is not None:
        train_idx = train_idx[:train_size]
    if DATASETS[name].kind == "image":  # standardise each channel with training statistics
        axes = (0, 2, 3)
        mean, std = x_tr[train_idx].mean(axis=axes, keepdims=True), x_tr[train_idx].std(axis=axes, keepdims=True)
        x_tr, x_te = (x_tr - mean) / (std + 1e-8), (x_te - mean) / (std + 1e-8)

    def tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype).to(device)

    return Dataset(
        name=name,
        x_train=tensor(x_tr[train_idx], torch.float32),
        y_train=tensor(y_tr[train_idx], torch.int64),
        x_val=tensor(x_tr[val_idx], torch.float32),
        y_val=tensor(y_tr[val_idx], torch.int64),
        x_test=tensor(x_te, torch.float32),
        y_test=tensor(y_te, torch.int64),
        num_classes=int(max(y_tr.max(), y_te.max())) + 1,
        checksum=checksum(x_tr[train_idx], y_tr[train_idx], x_te, y_te),
    )


def check_fits(config: Config) -> None:
    """Refuse what the dataset's sizes make impossible or meaningless: a validation split of fewer than
    MIN_VALIDATION samples, an empty training split, a subsample or a batch larger than the data (the batch would be
    cut silently while the config records the size asked for), and what the model family refuses of the input's
    shape (its check_input: a CNN kernel larger than the input, a transformer patch that does not tile it)."""
    d, m, batch = config.dataset, config.model, config.trainer.batch_size
    spec = DATASETS[d.name]
    n_val = round(spec.train * d.val_fraction)
    if n_val < MIN_VALIDATION:
        raise DataError(
            f"dataset.val_fraction={d.val_fraction} gives a validation split of {n_val} sample(s) of "
            f"dataset={d.name}'s {spec.train}; it needs at least {MIN_VALIDATION} to select a model on"
        )
    n = spec.train_split(d.val_fraction, None)
    if n < 1:
        raise DataError(
            f"dataset.val_fraction={d.val_fraction} leaves no training samples (dataset={d.name} has {spec.train})"
        )
    if d.train_size is not None and d.train_size > n:
        raise DataError(
            f"dataset.train_size={d.train_size} is larger than the training split of dataset={d.name} "
            f"({n} samples with dataset.val_fraction={d.val_fraction})"
        )
    usable = spec.train_split(d.val_fraction, d.train_size)
    if batch > usable:
        raise DataError(
            f"trainer.batch_size={batch} is larger than the training split ({usable} samples of "
            f"dataset={d.name}); use trainer.batch_size={usable} for full-batch training"
        )
    m.check_input(spec.input_shape, d.name)  # the family's own: a CNN's kernel, a transformer's patch


def check_root(name: str, root: str) -> None:
    """Refuse a dataset.root that is a file or cannot be read; one that cannot be created or written is refused
    only when the data may have to be written there (a cache, a download) - a read-only copy of the data is fine."""
    if not DATASETS[name].reads_root:
        return
    path = Path(root)
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise DataError(
            f"dataset.root={root} is a file, not a folder"
            if existing == path
            else f"dataset.root={root} lies under {existing}, which is a file"
        )
    if existing == path and not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"dataset.root={root} cannot be read (permissions)")
    if not os.access(existing, os.W_OK | os.X_OK) and not any(path.iterdir() if existing == path else []):
        raise DataError(f"dataset.root={root} cannot be written (permissions), and holds no data to read")

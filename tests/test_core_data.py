"""Datasets: the embedded ones, and the torchvision ones read from small files written here in the real formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from harness.setup.batches import MemberBatches
from harness.setup.config import DataError
from harness.setup.data import DATASETS, check_pair, load_dataset


def write_idx(path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): zero bytes, the type code 0x08 (ubyte), ndim, big-endian sizes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, folder: str, n_train: int = 30, n_test: int = 10) -> tuple[np.ndarray, np.ndarray]:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    x_tr, x_te = rng.randint(0, 256, (n_train, 28, 28)), rng.randint(0, 256, (n_test, 28, 28))
    y_tr, y_te = np.arange(n_train) % 10, np.arange(n_test) % 10
    write_idx(raw / "train-images-idx3-ubyte", x_tr)
    write_idx(raw / "train-labels-idx1-ubyte", y_tr)
    write_idx(raw / "t10k-images-idx3-ubyte", x_te)
    write_idx(raw / "t10k-labels-idx1-ubyte", y_te)
    return x_te, y_te


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats_are_read_from_idx_files(tmp_path, name, folder):
    x_te, y_te = write_mnist(tmp_path, folder)
    d = load_dataset(name, str(tmp_path), val_fraction=0.2)
    assert d.x_train.shape == (24, 1, 28, 28) and d.x_val.shape == (6, 1, 28, 28)
    assert torch.equal(d.y_test, torch.as_tensor(y_te))
    # the test images are standardised with training statistics, order preserved
    raw = torch.as_tensor(x_te / 255.0, dtype=torch.float32)
    assert torch.corrcoef(torch.stack([raw.flatten(), d.x_test.flatten()]))[0, 1] > 0.999
    assert DATASETS[name].kind == "image" and d.num_classes == DATASETS[name].num_classes == 10


def test_cifar10_is_read_from_its_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.randint(0, 256, (4, 3072)).astype(np.uint8), "labels": list(range(4))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    d = load_dataset("cifar10", str(tmp_path), val_fraction=0.1)
    assert d.x_train.shape[1:] == (3, 32, 32) and len(d.x_train) + len(d.x_val) == 20 and len(d.x_test) == 4


@pytest.mark.parametrize(
    "name, where", [("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw"), ("cifar10", "cifar-10-batches-py")]
)
def test_missing_files_name_the_folder_and_the_download_override(tmp_path, name, where):
    with pytest.raises(DataError, match="dataset.download=true") as info:
        load_dataset(name, str(tmp_path))
    assert str(tmp_path / where) in str(info.value)


def test_mnist1d_is_generated_once_and_cached_as_npz(data_root):
    d = load_dataset("mnist1d", data_root)
    assert (len(d.x_train) + len(d.x_val), len(d.x_test)) == (4000, 1000)
    assert d.input_shape == (1, 40) and d.num_classes == 10
    cached = list((__import__("pathlib").Path(data_root) / "mnist1d").glob("*.npz"))
    assert len(cached) == 1
    again = load_dataset("mnist1d", data_root)
    assert torch.equal(d.x_test, again.x_test) and d.checksum == again.checksum


def test_digits_and_spirals_need_no_download():
    digits = load_dataset("digits")
    assert digits.input_shape == (1, 8, 8) and len(digits.x_test) == 360
    spirals = load_dataset("spirals", train_size=100)
    assert spirals.input_shape == (2,) and len(spirals.x_train) == 100 and spirals.num_classes == 3


def test_validation_split_is_the_same_for_every_run():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.x_val, b.x_val)
    assert not set(map(tuple, a.x_val.flatten(1).tolist())) & set(map(tuple, a.x_train.flatten(1).tolist()))


def test_invalid_pairs_are_refused_with_the_valid_ones():
    check_pair("mlp", "spirals")
    check_pair("rnn", "digits")
    with pytest.raises(DataError, match="cnn: mnist1d, digits"):
        check_pair("cnn", "spirals")


def test_batches_cover_an_epoch_and_resume_exactly():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    it = MemberBatches(x, y, 3, seeds=[0])
    epoch = torch.cat([it.next()[1][0] for _ in range(3)])
    assert len(set(epoch.tolist())) == 9  # 3 full batches without repeats; the partial batch is dropped
    state = it.state_dict(0)
    ahead = [it.next()[1] for _ in range(5)]
    it2 = MemberBatches(x, y, 3, seeds=[0])
    it2.load_state_dict(0, state)
    assert all(torch.equal(a, b) for a, b in zip(ahead, [it2.next()[1] for _ in range(5)]))


def batch_order(device: str, seed: int = 7, epochs: int = 3) -> list[int]:
    x, y = torch.zeros(10, 1, device=device), torch.arange(10, device=device)
    it = MemberBatches(x, y, 5, [seed])
    return torch.cat([it.next()[1][0] for _ in range(2 * epochs)]).tolist()


def test_a_members_batch_order_depends_on_its_seed_alone():
    """Seed 7 alone, beside seed 3, and beside a member at another place in its epoch: the same order; a member
    waiting to join does not advance."""
    x, y = torch.zeros(10, 1), torch.arange(10)
    alone = batch_order("cpu")
    pair = MemberBatches(x, y, 5, [3, 7])
    assert torch.cat([pair.next()[1][1] for _ in range(6)]).tolist() == alone
    late = MemberBatches(x, y, 5, [7, 3])
    late.next(np.array([True, False]))  # member 0 waits a step (it joins from a later checkpoint)
    assert torch.cat([late.next()[1][0] for _ in range(6)]).tolist() == alone


def test_a_batch_order_is_the_cpu_generators_permutations_of_its_seed():
    """Each epoch is torch.randperm from a CPU generator seeded with the run's seed, whatever the device."""
    g = torch.Generator().manual_seed(7)
    assert batch_order("cpu") == torch.cat([torch.randperm(10, generator=g) for _ in range(3)]).tolist()


@pytest.mark.cuda
def test_a_batch_order_is_the_same_on_cuda_as_on_the_cpu():
    assert batch_order("cuda") == batch_order("cpu")


@pytest.mark.parametrize("name", ["mnist1d", "digits", "spirals"])
def test_the_registry_knows_each_dataset_before_loading_it(name, data_root):
    spec = DATASETS[name]
    d = load_dataset(name, data_root, val_fraction=0.15, train_size=None)
    assert d.input_shape == spec.input_shape and d.num_classes == spec.num_classes
    assert len(d.x_train) + len(d.x_val) == spec.train and len(d.x_test) == spec.test
    assert len(d.x_train) == spec.train_split(0.15, None)
    assert len(load_dataset(name, data_root, train_size=123).x_train) == spec.train_split(0.1, 123) == 123

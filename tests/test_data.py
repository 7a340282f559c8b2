"""Tests of curvwidgets.training.data: CIFAR files, augmentation, determinism, sharding, digits."""

import hashlib
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from curvwidgets.training import data

# ---------------------------------------------------------------------------------------
# CIFAR files in torchvision's on-disk format, generated here


def _write_pickle(path: Path, obj: dict) -> list:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return [path.name, hashlib.md5(path.read_bytes()).hexdigest()]


def write_cifar(root: Path, kind: str, train_sizes: list, test_size: int, seed: int = 0) -> dict:
    """Write a small CIFAR10 or CIFAR100 folder under ``root``; return its images (N, 32, 32, 3) and labels.

    Returns the file list with md5 sums too, to be patched into torchvision's class
    (which otherwise insists on the md5 sums of the real files).
    """
    rng = np.random.default_rng(seed)
    num_classes = 10 if kind == "CIFAR10" else 100
    cls = getattr(torchvision.datasets, kind)
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if kind == "CIFAR10" else "fine_labels"

    def batch(n: int) -> tuple:
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, num_classes, size=n).tolist()
        # the files store each image flat in channel-major (CHW) order
        return images, labels, {"data": images.transpose(0, 3, 1, 2).reshape(n, 3072), label_key: labels}

    train_names = [f"data_batch_{k + 1}" for k in range(len(train_sizes))] if kind == "CIFAR10" else ["train"]
    test_name = "test_batch" if kind == "CIFAR10" else "test"
    train_images, train_labels, train_list = [], [], []
    for name, n in zip(train_names, train_sizes):
        images, labels, entry = batch(n)
        if kind == "CIFAR100":
            entry["coarse_labels"] = [lab // 5 for lab in labels]
        train_images.append(images)
        train_labels += labels
        train_list.append(_write_pickle(folder / name, entry))
    test_images, test_labels, entry = batch(test_size)
    # known pixels: image 0, row 0, column 0 of the test split
    test_images[0, 0, 0] = (10, 128, 255)
    entry["data"] = test_images.transpose(0, 3, 1, 2).reshape(test_size, 3072)
    test_list = [_write_pickle(folder / test_name, entry)]
    class_names = [f"name{k}" for k in range(num_classes)]
    meta_key = cls.meta["key"]
    meta_name, meta_md5 = _write_pickle(folder / cls.meta["filename"], {meta_key: class_names})
    return {
        "train_images": np.concatenate(train_images),
        "train_labels": np.array(train_labels),
        "test_images": test_images,
        "test_labels": np.array(test_labels),
        "classes": class_names,
        "train_list": train_list,
        "test_list": test_list,
        "meta": {"filename": meta_name, "key": meta_key, "md5": meta_md5},
    }


@pytest.fixture
def cifar10(tmp_path, monkeypatch) -> dict:
    files = write_cifar(tmp_path, "CIFAR10", [1100] * 5, 300)
    for attribute in ("train_list", "test_list", "meta"):
        monkeypatch.setattr(torchvision.datasets.CIFAR10, attribute, files[attribute])
    files["root"] = tmp_path
    return files


def chw(images_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_hwc.transpose(0, 3, 1, 2)))


def normalized(raw: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (raw.float() / 255.0 - mean) / std


def collect(loader) -> tuple:
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_cifar10_from_torchvision_files(cifar10):
    ds = data.load("cifar10", root=cifar10["root"], augment=False, batch_size=1000, test_batch_size=100)
    assert ds.name == "CIFAR10" and ds.num_classes == 10 and ds.input_shape == (3, 32, 32)
    assert ds.classes == tuple(cifar10["classes"]) and not ds.validation
    assert ds.mean == data.CIFAR10_MEAN and ds.std == data.CIFAR10_STD
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape == (5500, 3, 32, 32)
    assert torch.equal(ds.train.images, chw(cifar10["train_images"]))
    assert (ds.train.dataset_size, len(ds.train), ds.test.dataset_size, len(ds.test)) == (5500, 6, 300, 3)

    # the test loader keeps the file order and does not augment
    inputs, targets = collect(ds.test)
    assert inputs.shape == (300, 3, 32, 32) and inputs.dtype == torch.float32
    assert torch.equal(targets, torch.as_tensor(cifar10["test_labels"]))
    expected = normalized(chw(cifar10["test_images"]), ds.mean, ds.std)
    torch.testing.assert_close(inputs, expected, rtol=0, atol=1e-6)
    known = torch.tensor([(v / 255 - m) / s for v, m, s in zip((10, 128, 255), ds.mean, ds.std)])
    torch.testing.assert_close(inputs[0, :, 0, 0], known, rtol=0, atol=1e-6)

    # the training loader shuffles with the epoch's permutation
    ds.train.set_epoch(3)
    order = ds.train.plan().order
    inputs, targets = collect(ds.train)
    assert torch.equal(targets, torch.as_tensor(cifar10["train_labels"])[order])
    torch.testing.assert_close(inputs, normalized(ds.train.images[order], ds.mean, ds.std), rtol=0, atol=1e-6)


def test_cifar10_validation_holds_out_the_last_5000(cifar10):
    ds = data.load("CIFAR10", root=cifar10["root"], validation=True, batch_size=100, test_batch_size=1000)
    assert ds.validation
    assert ds.train.dataset_size == 500 and ds.test.dataset_size == 5000
    raw = chw(cifar10["train_images"])
    labels = torch.as_tensor(cifar10["train_labels"])
    assert torch.equal(ds.train.images, raw[:500]) and torch.equal(ds.train.targets, labels[:500])
    inputs, targets = collect(ds.test)
    assert torch.equal(targets, labels[500:])
    torch.testing.assert_close(inputs, normalized(raw[500:], ds.mean, ds.std), rtol=0, atol=1e-6)


def test_cifar100_from_torchvision_files(tmp_path, monkeypatch):
    files = write_cifar(tmp_path, "CIFAR100", [600], 200, seed=1)
    for attribute in ("train_list", "test_list", "meta"):
        monkeypatch.setattr(torchvision.datasets.CIFAR100, attribute, files[attribute])
    ds = data.load("CIFAR100", root=tmp_path, augment=False, batch_size=200)
    assert ds.num_classes == 100 and ds.classes == tuple(files["classes"])
    assert ds.mean == data.CIFAR100_MEAN and ds.std == data.CIFAR100_STD
    assert torch.equal(ds.train.targets, torch.as_tensor(files["train_labels"]))
    inputs, targets = collect(ds.test)
    assert torch.equal(targets, torch.as_tensor(files["test_labels"]))
    torch.testing.assert_close(inputs, normalized(chw(files["test_images"]), ds.mean, ds.std), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="validation"):
        data.load("CIFAR100", root=tmp_path, validation=True)  # 600 images: cannot hold out 5000


@pytest.mark.parametrize("name, folder", [("CIFAR10", "cifar-10-batches-py"), ("CIFAR100", "cifar-100-python")])
def test_missing_cifar_files(tmp_path, name, folder):
    with pytest.raises(FileNotFoundError) as info:
        data.load(name, root=tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and folder in message and "download=True" in message


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CURVWIDGETS_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        data.load("CIFAR10")
    monkeypatch.delenv("CURVWIDGETS_DATA")
    assert data.default_root() == Path.home() / ".cache" / "curvwidgets" / "data"


# ---------------------------------------------------------------------------------------
# augmentation


def test_crop_flip_equals_slicing_the_padded_image():
    images = torch.randint(0, 256, (2 * 9 * 9, 3, 8, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    offsets = torch.cartesian_prod(torch.arange(9), torch.arange(9), torch.tensor([0, 1]))
    top, left, flip = offsets[:, 0], offsets[:, 1], offsets[:, 2].bool()
    out = data.crop_flip(images, top, left, flip, padding=4)
    padded = F.pad(images, (4, 4, 4, 4))
    for b in range(len(images)):
        crop = padded[b, :, top[b] : top[b] + 8, left[b] : left[b] + 6]
        assert torch.equal(out[b], torch.flip(crop, dims=[2]) if flip[b] else crop)


def make_loader(n=300, batch_size=64, augment=True, seed=0, **kwargs) -> data.TensorLoader:
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(n) % 10
    return data.TensorLoader(
        images,
        targets,
        batch_size,
        shuffle=True,
        augment=augment,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        seed=seed,
        **kwargs,
    )


def test_batches_follow_the_epoch_plan():
    loader = make_loader()
    loader.set_epoch(2)
    plan = loader.plan()
    assert plan.epoch == 2 and plan.flip.any() and not plan.flip.all() and set(plan.top.tolist()) == set(range(9))
    inputs, targets = collect(loader)
    padded = F.pad(loader.images, (4, 4, 4, 4))
    expected = []
    for k, i in enumerate(plan.order.tolist()):
        crop = padded[i, :, plan.top[k] : plan.top[k] + 32, plan.left[k] : plan.left[k] + 32]
        expected.append(torch.flip(crop, dims=[2]) if plan.flip[k] else crop)
    torch.testing.assert_close(inputs, normalized(torch.stack(expected), loader.mean, loader.std), rtol=0, atol=1e-6)
    assert torch.equal(targets, loader.targets[plan.order])


def test_without_augmentation_batches_are_normalised_raw_images():
    loader = make_loader(augment=False)
    inputs, targets = collect(loader)
    order = loader.plan().order
    torch.testing.assert_close(inputs, normalized(loader.images[order], loader.mean, loader.std), rtol=0, atol=1e-6)
    assert torch.equal(targets, loader.targets[order])


def test_floating_images_are_not_rescaled():
    images = torch.rand(10, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    kept = images.clone()
    loader = data.TensorLoader(
        images, torch.arange(10), 4, shuffle=False, augment=False, mean=(0.5, 0.25), std=(2.0, 0.5)
    )
    inputs, _ = collect(loader)
    expected = (kept - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / torch.tensor([2.0, 0.5]).view(1, 2, 1, 1)
    torch.testing.assert_close(inputs, expected, rtol=0, atol=1e-6)
    loader.normalize(loader.images)
    assert torch.equal(loader.images, kept)
    assert [len(y) for _, y in loader] == [4, 4, 2]


def test_padding_pixels_are_normalised_zeros():
    white = torch.full((200, 3, 32, 32), 255, dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    loader = data.TensorLoader(
        white, torch.zeros(200, dtype=torch.int64), 50, shuffle=True, augment=True, mean=mean, std=std
    )
    inputs, _ = collect(loader)
    plan = loader.plan()
    zero = normalized(torch.zeros(1, 3, 1, 1), mean, std).view(3, 1, 1)
    one = normalized(torch.full((1, 3, 1, 1), 255), mean, std).view(3, 1, 1)
    for k in range(len(white)):
        rows = torch.arange(32) + plan.top[k] - 4
        cols = torch.arange(32) + plan.left[k] - 4
        inside = ((rows >= 0) & (rows < 32))[:, None] & ((cols >= 0) & (cols < 32))[None, :]
        if plan.flip[k]:
            inside = inside.flip(1)
        torch.testing.assert_close(inputs[k], torch.where(inside, one, zero), rtol=0, atol=1e-6)


def test_same_seed_and_epoch_give_identical_batches():
    a, b = make_loader(seed=5), make_loader(seed=5)
    a.set_epoch(4)
    b.set_epoch(4)
    first, again = collect(a), collect(b)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert torch.equal(collect(a)[0], first[0])  # re-iterable, same epoch, same batches
    b.set_epoch(5)
    assert not torch.equal(collect(b)[0], first[0])
    assert not torch.equal(collect(make_loader(seed=6))[1], collect(make_loader(seed=5))[1])


def test_augmentation_is_per_data_set():
    assert data.load("digits").train.augmentation == data.Augmentation(padding=4, flip=False)
    synthetic = data.load("synthetic", num_samples=64, num_test=8, batch_size=8)
    assert synthetic.train.augmentation == data.Augmentation(padding=4, flip=True)
    assert synthetic.test.augmentation is None
    assert data.load("digits", augment=False).train.augmentation is None
    custom = data.load("digits", augment=data.Augmentation(padding=2, flip=False))
    assert custom.train.augmentation.padding == 2 and custom.train.plan().top.max() <= 4


# ---------------------------------------------------------------------------------------
# sharding


@pytest.mark.parametrize("n, world_size", [(300, 2), (300, 4), (257, 4), (300, 8)])
def test_ranks_split_each_batch_contiguously(n, world_size):
    single = make_loader(n=n, batch_size=64)
    single.set_epoch(1)
    shards = [make_loader(n=n, batch_size=64, rank=r, world_size=world_size) for r in range(world_size)]
    for shard in shards:
        shard.set_epoch(1)
        assert len(shard) == len(shards[0]) and shard.local_batch_size == 64 // world_size
    remainder = n % 64
    if remainder >= world_size:
        per_rank = [list(shard) for shard in shards]
        assert len(shards[0]) == len(single)
        for k, (inputs, targets) in enumerate(single):
            assert torch.equal(torch.cat([parts[k][0] for parts in per_rank]), inputs)
            assert torch.equal(torch.cat([parts[k][1] for parts in per_rank]), targets)
        assert sum(shard.num_samples for shard in shards) == n
        sizes = [len(parts[-1][1]) for parts in per_rank]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    else:  # a final batch smaller than world_size is dropped on every rank
        assert len(shards[0]) == n // 64 == len(single) - 1
        assert sum(shard.num_samples for shard in shards) == n - remainder


def test_drop_last():
    loader = make_loader(n=300, batch_size=64, drop_last=True)
    assert len(loader) == 4 and loader.num_samples == 256
    assert [len(y) for _, y in loader] == [64] * 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible by world_size"):
        make_loader(batch_size=63, world_size=2)
    with pytest.raises(ValueError, match="test_batch_size"):
        data.load("digits", batch_size=64, test_batch_size=30, world_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        data.load("digits", batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        make_loader(rank=2, world_size=2)
    with pytest.raises(ValueError, match="epoch"):
        make_loader().set_epoch(-1)
    with pytest.raises(ValueError, match="mean and std"):
        data.TensorLoader(
            torch.zeros(4, 3, 8, 8),
            torch.zeros(4, dtype=torch.int64),
            2,
            shuffle=False,
            augment=False,
            mean=(0.5,),
            std=(1.0,),
        )
    with pytest.raises(ValueError) as info:
        data.load("mnist")
    assert all(name in str(info.value) for name in data.names())
    with pytest.raises(TypeError, match="num_samples"):
        data.load("digits", num_samples=10)


# ---------------------------------------------------------------------------------------
# embedded and synthetic data


def test_names():
    assert data.names() == ("CIFAR10", "CIFAR100", "digits", "synthetic", "tinytext")


def test_digits():
    ds = data.load("Digits", batch_size=100)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_shape == (3, 32, 32)
    assert ds.train.dataset_size + ds.test.dataset_size == 1797 and ds.test.dataset_size == 360
    labels = torch.cat([ds.train.targets, ds.test.targets])
    assert torch.equal(labels.unique(), torch.arange(10))
    assert 35 <= ds.test.targets.bincount().min() and ds.test.targets.bincount().max() <= 37
    images = ds.train.images
    assert (
        images.dtype == torch.uint8
        and torch.equal(images[:, 0], images[:, 1])
        and torch.equal(images[:, 0], images[:, 2])
    )
    inputs, targets = next(iter(ds.train))
    assert inputs.shape == (100, 3, 32, 32) and targets.shape == (100,)
    # upsampling keeps the 8x8 picture: block means of the 32x32 image track the 8x8 source
    with np.load(Path(data.__file__).with_name("digits.npz"), allow_pickle=False) as archive:
        source = torch.from_numpy(archive["images"][~archive["is_test"]]).float() / 16
    blocks = F.avg_pool2d(images[:, :1].float() / 255, 4)[:, 0]
    assert (blocks - source).abs().mean() < 0.1

    again = data.load("digits", validation=True)
    assert again.train.dataset_size == 1437 - 360 and torch.equal(again.test.images, ds.train.images[-360:])
    repeat = data.load("digits")
    assert torch.equal(repeat.test.images, ds.test.images) and torch.equal(repeat.train.targets, ds.train.targets)


def test_synthetic():
    ds = data.load("synthetic", num_samples=500, num_test=100, num_classes=5, batch_size=50, data_seed=3)
    assert ds.num_classes == 5 and ds.train.dataset_size == 500 and ds.test.dataset_size == 100
    assert ds.train.images.dtype == torch.uint8 and ds.train.targets.max() < 5
    same = data.load("synthetic", num_samples=500, num_test=100, num_classes=5, seed=9, data_seed=3)
    assert torch.equal(same.train.images, ds.train.images) and torch.equal(same.test.targets, ds.test.targets)
    # learnable: nearest class mean of the training images labels most test images correctly
    flat = ds.train.images.flatten(1).float()
    centroids = torch.stack([flat[ds.train.targets == c].mean(0) for c in range(5)])
    predicted = torch.cdist(ds.test.images.flatten(1).float(), centroids).argmin(1)
    assert (predicted == ds.test.targets).float().mean() > 0.9

"""Image classification data sets held as tensors on the training device.

:func:`load` returns a :class:`DataSet` whose ``train`` and ``test`` loaders
are :class:`TensorLoader` objects: the whole split lives as one tensor on the
device (uint8 pixels, 3 KiB per 32x32 colour image), and every batch is
gathered, augmented and normalised there with a few vectorised tensor
operations. No worker processes and no per-sample Python code run in the
training loop, so a GPU is not starved by data loading; on a CPU this is the
fast path as well.

Data sets (:func:`names`; names are matched case-insensitively):

``CIFAR10``, ``CIFAR100``
    Read through ``torchvision.datasets`` from ``root`` (see below), 50000
    training and 10000 test images of shape (3, 32, 32). Training batches are
    augmented with a random 32x32 crop of the image zero-padded by 4 pixels
    and a horizontal flip with probability 1/2 (the pad is zero in raw pixel
    space, as for torchvision's ``RandomCrop(32, padding=4)`` on the PIL
    image, so it becomes ``(0 - mean) / std`` after normalisation).
``digits``
    The 1797 8x8 handwritten digits of the UCI "Optical Recognition of
    Handwritten Digits" data set (CC BY 4.0), embedded in the package
    (``digits.npz``, built by ``scripts/make_digits_npz.py``), so it needs no
    download. The images are upsampled once to 32x32 (bilinear) and repeated
    to 3 channels so CIFAR models accept them. A fixed, stratified split
    stored in the file gives 1437 training and 360 test images. Augmentation
    is the padded random crop only: flipping a digit changes its meaning.
``synthetic``
    Seeded random CIFAR-shaped uint8 images for speed tests; each label is
    the class whose smooth random template was blended into the noise, so the
    labels can be learnt. Options ``num_samples`` (default 10000),
    ``num_test`` (2000), ``num_classes`` (10) and ``data_seed`` (0).

Where CIFAR lives: ``root`` if given, otherwise the environment variable
``CURVWIDGETS_DATA``, otherwise ``~/.cache/curvwidgets/data``. The folders
are torchvision's: ``<root>/cifar-10-batches-py`` and
``<root>/cifar-100-python``.

Determinism: all random draws of an epoch (the permutation, the crop offsets
and the flips) come from a CPU ``torch.Generator`` seeded from
``(seed, epoch)`` only, so the same seed and epoch give bit-identical batches
on every device and after a restart; call :meth:`TensorLoader.set_epoch`
before each epoch, as with ``DistributedSampler``.

Sharding for ``DistributedDataParallel``: with ``world_size`` processes each
global batch of ``batch_size`` consecutive samples of the shared epoch order
is cut into ``world_size`` contiguous parts and process ``rank`` gets part
``rank``. The augmentation draws belong to the global position, so ``N``
processes with ``batch_size`` B see between them exactly the batches of one
process with ``batch_size`` B. See :class:`TensorLoader` for the last, partial
batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Augmentation",
    "DataSet",
    "EpochPlan",
    "TensorLoader",
    "crop_flip",
    "default_root",
    "load",
    "names",
]

DeviceLike = str | torch.device | None
ArrayLike = torch.Tensor | np.ndarray

#: Environment variable naming the data folder when ``root`` is not given.
DATA_ENV = "CURVWIDGETS_DATA"

# Per-channel mean and standard deviation of the 50000 training images, pixels in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

_NAMES = ("CIFAR10", "CIFAR100", "digits", "synthetic")
_DIGITS_FILE = Path(__file__).with_name("digits.npz")


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return int(value)


def _nonnegative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an int >= 0; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation applied on the device to every batch.

    Parameters
    ----------
    padding : int, default: 4
        Zero padding in pixels on each side before a random crop of the
        original size (``0``: no crop). Offsets are uniform in
        ``0 .. 2 * padding`` for rows and columns independently.
    flip : bool, default: True
        Flip horizontally with probability 1/2 (after the crop).
    """

    padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        _nonnegative_int(self.padding, "padding")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be a bool; got {self.flip!r}")

    @property
    def active(self) -> bool:
        """Whether this augmentation changes any image."""
        return self.padding > 0 or self.flip


class EpochPlan(NamedTuple):
    """All random draws of one epoch, for every sample of the data set (before sharding).

    Position ``k`` of the epoch shows sample ``order[k]``, cropped at rows
    ``top[k]`` and columns ``left[k]`` of the zero-padded image and flipped if
    ``flip[k]``. Without augmentation ``top`` and ``left`` equal the padding
    (0) and ``flip`` is False. All tensors are on the CPU with shape (N,).
    """

    epoch: int
    order: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor


def crop_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Crop each image from its zero-padded version and flip it, as one gather.

    ``out[b, :, i, j] = P_b[:, top[b] + i, left[b] + j']`` with ``P_b`` the
    image ``images[b]`` padded by ``padding`` zeros on every side and
    ``j' = W - 1 - j`` where ``flip[b]`` else ``j``: the crop of torchvision's
    ``RandomCrop(size=(H, W), padding=padding)`` followed by a horizontal flip.
    The padded image is never built.

    Parameters
    ----------
    images : Tensor, shape (B, C, H, W), any dtype
    top, left : Tensor of int, shape (B,)
        Offsets in ``0 .. 2 * padding`` (same device as ``images``).
    flip : Tensor of bool, shape (B,)
    padding : int

    Returns
    -------
    Tensor, shape (B, C, H, W), dtype and device of ``images``
    """
    batch, channels, height, width = images.shape
    rows = top[:, None] - padding + torch.arange(height, device=images.device)
    columns = torch.arange(width, device=images.device)
    columns = left[:, None] - padding + torch.where(flip[:, None], width - 1 - columns, columns)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[:, None, :]
    flat_index = rows.clamp(0, height - 1)[:, :, None] * width + columns.clamp(0, width - 1)[:, None, :]
    flat_index = flat_index.reshape(batch, 1, height * width).expand(batch, channels, height * width)
    out = images.reshape(batch, channels, height * width).gather(2, flat_index)
    out = out.reshape(batch, channels, height, width)
    return out.masked_fill(~inside[:, None], 0)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state depends only on ``(seed, epoch)``."""
    words = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(words[0]) << 32) | int(words[1]))


class TensorLoader:
    """Re-iterable batches ``(inputs, targets)`` of a data set held on the device.

    Iterating yields ``inputs``, float32 of shape (b, C, H, W), normalised as
    ``(x - mean) / std`` with ``x`` the pixels scaled to [0, 1] (uint8 images
    are divided by 255; floating images are used as they are), and
    ``targets``, int64 of shape (b,), both on ``device``. ``b`` is
    ``batch_size // world_size`` except in a final partial batch.

    The order and augmentation of an epoch depend only on ``(seed, epoch)``
    (see :meth:`plan`); call :meth:`set_epoch` before each epoch.

    Parameters
    ----------
    images : Tensor or ndarray, shape (N, C, H, W), uint8 or floating
        Kept on ``device`` in its dtype (no copy if it is already there).
    targets : Tensor or ndarray of int, shape (N,)
    batch_size : int
        The global batch size, summed over the ``world_size`` processes.
    shuffle : bool
        Draw a new permutation for every epoch; otherwise keep the order.
    augment : bool or Augmentation
        ``True``: ``Augmentation()`` (crop with padding 4 and flip),
        ``False``: none.
    mean, std : sequence of float, length C
        Per-channel normalisation, for pixels in [0, 1].
    device : str or torch.device, optional
        Default: the CPU.
    seed : int, default: 0
    rank, world_size : int, default: 0, 1
        This process and the number of processes sharing each batch;
        ``batch_size`` must be divisible by ``world_size``.
    drop_last : bool, default: False
        Drop the final batch if it has fewer than ``batch_size`` samples.

    Notes
    -----
    The final partial batch of ``m = N % batch_size`` samples (kept unless
    ``drop_last``) is cut like ``torch.tensor_split``: the first
    ``m % world_size`` ranks get ``m // world_size + 1`` samples and the
    others ``m // world_size``. If ``m < world_size`` it is dropped on every
    rank, so no rank gets an empty batch and all ranks yield the same number
    of batches (``len``). With unequal parts the average of the per-rank mean
    losses differs slightly from the one-process mean of that last batch;
    use ``drop_last=True`` where this matters.
    """

    def __init__(
        self,
        images: ArrayLike,
        targets: ArrayLike,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool | Augmentation,
        mean: Sequence[float],
        std: Sequence[float],
        device: DeviceLike = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.world_size = _positive_int(world_size, "world_size")
        self.rank = _nonnegative_int(rank, "rank")
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size = {self.world_size}; got {rank}")
        if self.batch_size % self.world_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by world_size ({self.world_size}): "
                "every process gets an equal share of each batch"
            )
        self.seed = _nonnegative_int(seed, "seed")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if isinstance(augment, Augmentation):
            self.augmentation: Augmentation | None = augment if augment.active else None
        elif isinstance(augment, (bool, np.bool_)):
            self.augmentation = Augmentation() if augment else None
        else:
            raise ValueError(f"augment must be a bool or an Augmentation; got {augment!r}")

        self.device = torch.device("cpu") if device is None else torch.device(device)
        images = torch.as_tensor(images)
        targets = torch.as_tensor(targets)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W); got {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 or floating; got {images.dtype}")
        if targets.shape != images.shape[:1]:
            raise ValueError(f"targets must have shape ({images.shape[0]},); got {tuple(targets.shape)}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ValueError(f"targets must be integers; got {targets.dtype}")
        self.images = images.to(self.device)
        self.targets = targets.to(self.device, torch.int64)

        channels = images.shape[1]
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values (one per channel); got {mean!r}, {std!r}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"std must be positive; got {std!r}")
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.epoch = 0

    # -- sizes ---------------------------------------------------------------------------

    @property
    def dataset_size(self) -> int:
        """Number of samples N in the whole split (all ranks)."""
        return int(self.images.shape[0])

    @property
    def local_batch_size(self) -> int:
        """Samples per full batch on this rank: ``batch_size // world_size``."""
        return self.batch_size // self.world_size

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one input."""
        return tuple(self.images.shape[1:])

    def _last_part(self) -> tuple[int, int]:
        """``(start, size)`` of this rank's part of the final partial batch, relative to it."""
        remainder = self.dataset_size % self.batch_size
        if self.drop_last or remainder < self.world_size:
            return 0, 0
        share, extra = divmod(remainder, self.world_size)
        return self.rank * share + min(self.rank, extra), share + (self.rank < extra)

    def __len__(self) -> int:
        """Number of batches per epoch (the same on every rank)."""
        return self.dataset_size // self.batch_size + (self._last_part()[1] > 0)

    @property
    def num_samples(self) -> int:
        """Number of samples this rank sees per epoch."""
        return self.dataset_size // self.batch_size * self.local_batch_size + self._last_part()[1]

    # -- epochs --------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = _nonnegative_int(epoch, "epoch")

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The random draws of an epoch (default: the current one), for all N samples.

        The permutation is drawn first, then the row offsets, the column
        offsets and the flips, all from one CPU generator seeded from
        ``(seed, epoch)``; the draws do not depend on ``rank``, ``world_size``
        or the device.
        """
        epoch = self.epoch if epoch is None else _nonnegative_int(epoch, "epoch")
        n = self.dataset_size
        generator = _epoch_generator(self.seed, epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        aug = self.augmentation
        padding = 0 if aug is None else aug.padding
        if padding > 0:
            top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
            left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        else:
            top = torch.zeros(n, dtype=torch.int64)
            left = torch.zeros(n, dtype=torch.int64)
        if aug is not None and aug.flip:
            flip = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64).bool()
        else:
            flip = torch.zeros(n, dtype=torch.bool)
        return EpochPlan(epoch, order, top, left, flip)

    def _local_ranges(self) -> list[tuple[int, int]]:
        """This rank's ``(start, stop)`` positions in the epoch order, one pair per batch."""
        local = self.local_batch_size
        ranges = [
            (k * self.batch_size + self.rank * local, k * self.batch_size + (self.rank + 1) * local)
            for k in range(self.dataset_size // self.batch_size)
        ]
        offset, size = self._last_part()
        if size:
            start = self.dataset_size - self.dataset_size % self.batch_size + offset
            ranges.append((start, start + size))
        return ranges

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan()
        return self._batches(plan, self._local_ranges())

    def _batches(self, plan: EpochPlan, ranges: list[tuple[int, int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = plan.order.to(self.device)
        aug = self.augmentation
        if aug is not None:
            top, left, flip = (t.to(self.device) for t in (plan.top, plan.left, plan.flip))
        for start, stop in ranges:
            index = order[start:stop]
            batch = self.images[index]
            if aug is not None:
                batch = crop_flip(batch, top[start:stop], left[start:stop], flip[start:stop], aug.padding)
            yield self.normalize(batch), self.targets[index]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 ``(x - mean) / std`` of raw images (B, C, H, W) in this loader's dtype and device."""
        x = images.to(torch.float32, copy=True)
        if images.dtype == torch.uint8:
            x = x.div_(255.0)
        return x.sub_(self._mean).div_(self._std)

    def __repr__(self) -> str:
        aug = "none" if self.augmentation is None else repr(self.augmentation)
        return (
            f"TensorLoader(N={self.dataset_size}, input_shape={self.input_shape}, "
            f"batch_size={self.batch_size}, batches={len(self)}, shuffle={self.shuffle}, "
            f"augment={aug}, rank={self.rank}/{self.world_size}, device={self.device})"
        )


@dataclass
class DataSet:
    """A data set ready for training: loaders and what a model needs to know.

    Attributes
    ----------
    name : str
        The canonical name (one of :func:`names`).
    train, test : TensorLoader
        ``train`` shuffles and augments; ``test`` does neither. With
        ``validation`` the test loader holds the last images of the training
        split instead of the test split.
    num_classes : int
    input_shape : tuple of int
        (C, H, W) of one input.
    mean, std : tuple of float
        The per-channel normalisation (pixels in [0, 1]).
    classes : tuple of str
        Class names, index = label.
    validation : bool
        Whether ``test`` is a validation split held out from training.
    """

    name: str
    train: TensorLoader
    test: TensorLoader
    num_classes: int
    input_shape: tuple
    mean: tuple
    std: tuple
    classes: tuple
    validation: bool = False


class _Splits(NamedTuple):
    train_images: torch.Tensor
    train_targets: torch.Tensor
    test_images: torch.Tensor
    test_targets: torch.Tensor
    mean: tuple
    std: tuple
    classes: tuple
    augmentation: Augmentation
    validation_size: int


def names() -> tuple[str, ...]:
    """The data sets :func:`load` knows: ``("CIFAR10", "CIFAR100", "digits", "synthetic")``."""
    return _NAMES


def default_root() -> Path:
    """``$CURVWIDGETS_DATA`` if set, else ``~/.cache/curvwidgets/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "curvwidgets" / "data"


def _canonical_name(name: str) -> str:
    if isinstance(name, str):
        for known in _NAMES:
            if name.lower() == known.lower():
                return known
    raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(_NAMES)}")


def _channel_stats(images: torch.Tensor, chunk: int = 2048) -> tuple[tuple, tuple]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), pixels scaled to [0, 1]."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _load_cifar(name: str, root: Path, download: bool) -> _Splits:
    from torchvision import datasets

    dataset_class = getattr(datasets, name)
    folder = root / dataset_class.base_folder
    expected = [entry[0] for entry in dataset_class.train_list + dataset_class.test_list]
    expected.append(dataset_class.meta["filename"])
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"{name} not found under root {str(root)!r}: expected the folder {str(folder)!r} "
            f"(torchvision's format) with {', '.join(expected)}; missing: {', '.join(missing)}. "
            f"Fetch it with load({name!r}, root={str(root)!r}, download=True), or download "
            f"{dataset_class.url} and extract it into {str(root)!r} "
            f"(e.g. `mkdir -p {root} && curl -L {dataset_class.url} | tar xz -C {root}`). "
            f"The default root is ${DATA_ENV} or ~/.cache/curvwidgets/data."
        )
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=False)
    except RuntimeError as error:
        raise RuntimeError(
            f"{name} files in {str(folder)!r} failed torchvision's md5 check ({error}); "
            "delete the folder and load again with download=True"
        ) from error

    def to_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
        data = np.asarray(split.data, dtype=np.uint8)  # (N, 32, 32, 3)
        images = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
        return images, torch.as_tensor(split.targets, dtype=torch.int64)

    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "CIFAR10" else (CIFAR100_MEAN, CIFAR100_STD)
    return _Splits(
        *to_tensors(train),
        *to_tensors(test),
        mean=mean,
        std=std,
        classes=tuple(train.classes),
        augmentation=Augmentation(padding=4, flip=True),
        validation_size=5000,
    )


def _load_digits() -> _Splits:
    with np.load(_DIGITS_FILE, allow_pickle=False) as archive:
        small = torch.from_numpy(archive["images"].astype(np.float32) / 16.0)  # (1797, 8, 8) in [0, 1]
        labels = torch.from_numpy(archive["labels"].astype(np.int64))
        is_test = torch.from_numpy(archive["is_test"])
    large = F.interpolate(small[:, None], size=(32, 32), mode="bilinear", align_corners=False)
    images = (large * 255.0).round_().clamp_(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
    train_images = images[~is_test]
    mean, std = _channel_stats(train_images)
    return _Splits(
        train_images,
        labels[~is_test],
        images[is_test],
        labels[is_test],
        mean=mean,
        std=std,
        classes=tuple(str(d) for d in range(10)),
        augmentation=Augmentation(padding=4, flip=False),
        validation_size=360,
    )


def _load_synthetic(
    num_samples: int = 10000, num_test: int = 2000, num_classes: int = 10, data_seed: int = 0
) -> _Splits:
    num_samples = _positive_int(num_samples, "num_samples")
    num_test = _positive_int(num_test, "num_test")
    num_classes = _positive_int(num_classes, "num_classes")
    generator = torch.Generator().manual_seed(_nonnegative_int(data_seed, "data_seed"))
    coarse = torch.rand(num_classes, 3, 4, 4, generator=generator)
    templates = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    total = num_samples + num_test
    labels = torch.randint(0, num_classes, (total,), generator=generator)
    images = torch.empty(total, 3, 32, 32, dtype=torch.uint8)
    for start in range(0, total, 2048):
        part = labels[start : start + 2048]
        noise = torch.rand(len(part), 3, 32, 32, generator=generator)
        images[start : start + 2048] = ((noise + templates[part]) * 127.5).round_().to(torch.uint8)
    mean, std = _channel_stats(images[:num_samples])
    return _Splits(
        images[:num_samples],
        labels[:num_samples],
        images[num_samples:],
        labels[num_samples:],
        mean=mean,
        std=std,
        classes=tuple(f"class {k}" for k in range(num_classes)),
        augmentation=Augmentation(padding=4, flip=True),
        validation_size=num_test,
    )


def load(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    augment: bool | Augmentation = True,
    validation: bool | int = False,
    batch_size: int = 128,
    test_batch_size: int | None = None,
    device: DeviceLike = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    **options: int,
) -> DataSet:
    """Load a data set onto ``device`` and wrap its splits in loaders.

    Parameters
    ----------
    name : str
        One of :func:`names`, in any letter case.
    root : path, optional
        Folder holding the CIFAR folders; default :func:`default_root`
        (``$CURVWIDGETS_DATA`` or ``~/.cache/curvwidgets/data``). Unused by
        ``digits`` and ``synthetic``.
    download : bool, default: False
        Let torchvision fetch CIFAR into ``root`` if it is missing.
    augment : bool or Augmentation, default: True
        ``True``: the data set's own training augmentation (CIFAR and
        ``synthetic``: padded crop and flip; ``digits``: padded crop only);
        ``False``: none; an :class:`Augmentation`: that one. The test loader
        is never augmented.
    validation : bool or int, default: False
        Hold out the last images of the training split as the test split:
        ``True`` holds out 5000 for CIFAR (45000 remain for training), 360
        for ``digits`` and ``num_test`` for ``synthetic``; an int holds out
        that many.
    batch_size : int, default: 128
        Global training batch size (summed over the processes).
    test_batch_size : int, optional
        Global test batch size; default ``batch_size``.
    device : str or torch.device, optional
        Where the data and the batches live; default the CPU.
    seed : int, default: 0
        Seeds the per-epoch order and augmentation of the training loader;
        the data (and the ``digits`` split) do not depend on it.
    rank, world_size : int, default: 0, 1
        For ``DistributedDataParallel``: this process's part of each batch
        (see :class:`TensorLoader`). Both batch sizes must be divisible by
        ``world_size``.
    **options
        ``synthetic`` only: ``num_samples`` (10000), ``num_test`` (2000),
        ``num_classes`` (10), ``data_seed`` (0).

    Returns
    -------
    DataSet

    Raises
    ------
    ValueError
        Unknown ``name`` or a bad argument (the message names it).
    FileNotFoundError
        CIFAR files are missing under ``root`` and ``download`` is False.
    TypeError
        ``options`` given for a data set other than ``synthetic``.

    Examples
    --------
    >>> ds = load("synthetic", num_samples=256, num_test=64, batch_size=64)
    >>> ds.input_shape, ds.num_classes, len(ds.train)
    ((3, 32, 32), 10, 4)
    >>> ds.train.set_epoch(0)
    >>> inputs, targets = next(iter(ds.train))
    >>> inputs.shape, inputs.dtype, targets.dtype
    (torch.Size([64, 3, 32, 32]), torch.float32, torch.int64)
    >>> digits = load("DIGITS", augment=False)
    >>> digits.name, digits.train.dataset_size, digits.test.dataset_size
    ('digits', 1437, 360)
    """
    canonical = _canonical_name(name)
    if not isinstance(download, (bool, np.bool_)):
        raise ValueError(f"download must be a bool; got {download!r}")
    batch_size = _positive_int(batch_size, "batch_size")
    test_batch_size = batch_size if test_batch_size is None else _positive_int(test_batch_size, "test_batch_size")
    world_size = _positive_int(world_size, "world_size")
    for value, label in ((batch_size, "batch_size"), (test_batch_size, "test_batch_size")):
        if value % world_size:
            raise ValueError(f"{label} ({value}) must be divisible by world_size ({world_size})")
    if options and canonical != "synthetic":
        raise TypeError(f"load({canonical!r}) got unexpected keyword arguments: {', '.join(options)}")

    if canonical in ("CIFAR10", "CIFAR100"):
        splits = _load_cifar(canonical, Path(root).expanduser() if root is not None else default_root(), download)
    elif canonical == "digits":
        splits = _load_digits()
    else:
        unknown = set(options) - {"num_samples", "num_test", "num_classes", "data_seed"}
        if unknown:
            raise TypeError(f"load('synthetic') got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        splits = _load_synthetic(**options)

    train_images, train_targets = splits.train_images, splits.train_targets
    test_images, test_targets = splits.test_images, splits.test_targets
    held_out = _validation_size(validation, splits.validation_size, len(train_targets))
    if held_out:
        test_images, test_targets = train_images[-held_out:], train_targets[-held_out:]
        train_images, train_targets = train_images[:-held_out], train_targets[:-held_out]

    if isinstance(augment, Augmentation):
        augmentation: bool | Augmentation = augment
    elif isinstance(augment, (bool, np.bool_)):
        augmentation = splits.augmentation if augment else False
    else:
        raise ValueError(f"augment must be a bool or an Augmentation; got {augment!r}")

    common = {
        "mean": splits.mean,
        "std": splits.std,
        "device": device,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
    }
    train = TensorLoader(train_images, train_targets, batch_size, shuffle=True, augment=augmentation, **common)
    test = TensorLoader(test_images, test_targets, test_batch_size, shuffle=False, augment=False, **common)
    return DataSet(
        name=canonical,
        train=train,
        test=test,
        num_classes=len(splits.classes),
        input_shape=train.input_shape,
        mean=splits.mean,
        std=splits.std,
        classes=splits.classes,
        validation=bool(held_out),
    )


def _validation_size(validation: bool | int, default: int, available: int) -> int:
    """Number of training images to hold out: 0, ``default`` for True, or the int given."""
    if isinstance(validation, (bool, np.bool_)):
        size = default if validation else 0
    elif isinstance(validation, (int, np.integer)) and validation >= 0:
        size = int(validation)
    else:
        raise ValueError(f"validation must be a bool or an int >= 0; got {validation!r}")
    if size >= available:
        raise ValueError(f"validation holds out {size} images but the training split has only {available}")
    return size

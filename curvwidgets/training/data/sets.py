"""The named data sets: CIFAR-10/100 through torchvision, the embedded digits, synthetic images, and generated text."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...losses import SequenceCrossEntropyLoss
from ..._validate import non_negative_int, positive_int
from .loader import Augmentation, DeviceLike, TensorLoader
from .text import VOCABULARY, token_windows

__all__ = ["DataSet", "default_loss", "default_root", "load", "names", "DATA_ENV"]


#: Environment variable naming the data folder when ``root`` is not given.
DATA_ENV = "CURVWIDGETS_DATA"

# Per-channel mean and standard deviation of the 50000 training images, pixels in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

_NAMES = ("CIFAR10", "CIFAR100", "digits", "synthetic", "tinytext")
#: The keyword options of the data sets that take any (``load(name, **options)``).
_OPTIONS = {"synthetic": ("num_samples", "num_test", "num_classes", "data_seed"),
            "tinytext": ("num_samples", "num_test", "context", "data_seed")}
_DIGITS_FILE = Path(__file__).with_name("digits.npz")
#: The data sets whose targets are token windows (N, T), one class per position.
_SEQUENCE_DATA = ("tinytext",)


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
        The classes, or for ``tinytext`` the vocabulary size.
    input_shape : tuple of int
        (C, H, W) of one input; (T,) for the token windows of ``tinytext``.
    mean, std : tuple of float, or None
        The per-channel normalisation (pixels in [0, 1]); None for token
        ids, which the loaders yield as stored.
    classes : tuple of str
        Class names, index = label; for ``tinytext`` the characters, index = token id.
    validation : bool
        Whether ``test`` is a validation split held out from training.
    options : dict
        The ``synthetic`` or ``tinytext`` options it was loaded with (so that a checkpoint can load it again).
    """

    name: str
    train: TensorLoader
    test: TensorLoader
    num_classes: int
    input_shape: tuple
    mean: Optional[tuple]
    std: Optional[tuple]
    classes: tuple
    validation: bool = False
    options: dict = field(default_factory=dict)

    def evaluation_loader(self, split: str = "train", batch_size: int | None = None) -> TensorLoader:
        """One split in a fixed order, without augmentation, unsharded.

        What the curvature, the loss statistics and the landscapes of a
        trained model are computed on (``train`` itself hands out random
        crops and a new order every epoch). The images are shared with the
        split's loader, not copied.

        Parameters
        ----------
        split : {"train", "test"}, default: "train"
        batch_size : int, optional
            Default: the split's loader's batch size.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
        source = self.train if split == "train" else self.test
        size = source.batch_size if batch_size is None else positive_int("batch_size", batch_size)
        return TensorLoader(source.images, source.targets, size, shuffle=False, augment=False, mean=self.mean,
                            std=self.std, device=source.device)


class _Splits(NamedTuple):
    train_images: torch.Tensor
    train_targets: torch.Tensor
    test_images: torch.Tensor
    test_targets: torch.Tensor
    mean: Optional[tuple]
    std: Optional[tuple]
    classes: tuple
    augmentation: Augmentation
    validation_size: int


def names() -> tuple[str, ...]:
    """The data sets :func:`load` knows: ``("CIFAR10", "CIFAR100", "digits", "synthetic", "tinytext")``."""
    return _NAMES


def default_loss(data: Any) -> nn.Module:
    """The loss that ``data`` is trained and measured with when no ``loss_fn`` is given.

    ``cw.train``, ``cw.spectrum``, ``cw.landscape``, the paper's functions
    and the command line take their default loss from here.

    Parameters
    ----------
    data : DataSet, str or any
        A :class:`DataSet`, a name of :func:`names` (any letter case), or
        anything else (batches of a user's own).

    Returns
    -------
    nn.Module
        A new :class:`~curvwidgets.losses.SequenceCrossEntropyLoss` for
        ``tinytext`` (logits ``(B, T, V)``, targets ``(B, T)``: the mean over
        every token), else a new ``nn.CrossEntropyLoss()`` (logits ``(B, C)``,
        targets ``(B,)``).

    Raises
    ------
    ValueError
        ``data`` is a string that is not a name of :func:`names`.

    Examples
    --------
    >>> default_loss("tinytext"), default_loss("digits")
    (SequenceCrossEntropyLoss(ignore_index=-100), CrossEntropyLoss())
    """
    if isinstance(data, str):
        name = _canonical_name(data)
    else:
        name = data.name if isinstance(data, DataSet) else None
    return SequenceCrossEntropyLoss() if name in _SEQUENCE_DATA else nn.CrossEntropyLoss()


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
    num_samples = positive_int("num_samples", num_samples)
    num_test = positive_int("num_test", num_test)
    num_classes = positive_int("num_classes", num_classes)
    generator = torch.Generator().manual_seed(non_negative_int("data_seed", data_seed))
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


def _load_tinytext(num_samples: int = 2000, num_test: int = 400, context: int = 32, data_seed: int = 0) -> _Splits:
    """Token windows of :func:`~curvwidgets.training.data.text.token_windows`: no normalisation, no augmentation."""
    windows = token_windows(num_samples, num_test, context, data_seed)
    return _Splits(*windows, mean=None, std=None, classes=tuple(VOCABULARY),
                   augmentation=Augmentation(padding=0, flip=False), validation_size=num_test)


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
        ``synthetic``: padded crop and flip; ``digits``: padded crop only;
        ``tinytext``: none); ``False``: none; an :class:`Augmentation`: that
        one (images only). The test loader is never augmented.
    validation : bool or int, default: False
        Hold out the last images of the training split as the test split:
        ``True`` holds out 5000 for CIFAR (45000 remain for training), 360
        for ``digits`` and ``num_test`` for ``synthetic`` and ``tinytext``;
        an int holds out that many.
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
        ``synthetic``: ``num_samples`` (10000), ``num_test`` (2000),
        ``num_classes`` (10), ``data_seed`` (0). ``tinytext``: ``num_samples``
        (2000 training windows), ``num_test`` (400), ``context`` (32 tokens
        per window), ``data_seed`` (0).

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
        ``options`` given for a data set other than ``synthetic`` and
        ``tinytext``, or options that data set does not take.

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
    batch_size = positive_int("batch_size", batch_size)
    test_batch_size = batch_size if test_batch_size is None else positive_int("test_batch_size", test_batch_size)
    world_size = positive_int("world_size", world_size)
    for value, label in ((batch_size, "batch_size"), (test_batch_size, "test_batch_size")):
        if value % world_size:
            raise ValueError(f"{label} ({value}) must be divisible by world_size ({world_size})")
    unknown = [option for option in options if option not in _OPTIONS.get(canonical, ())]
    if unknown:
        raise TypeError(f"load({canonical!r}) got unexpected keyword arguments: {', '.join(unknown)}")

    if canonical in ("CIFAR10", "CIFAR100"):
        splits = _load_cifar(canonical, Path(root).expanduser() if root is not None else default_root(), download)
    elif canonical == "digits":
        splits = _load_digits()
    elif canonical == "synthetic":
        splits = _load_synthetic(**options)
    else:
        splits = _load_tinytext(**options)

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
        options=dict(options),
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


"""Image classification data sets, and a small text set, held as tensors on the training device.

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
``tinytext``
    Character-level language modelling on sentences generated from a small
    hand-written grammar (:mod:`~curvwidgets.training.data.text`), so it
    needs no download. Inputs are int64 windows of ``context`` token ids,
    shape (N, T); targets are the same windows shifted by one token, also
    (N, T); ``num_classes`` is the vocabulary size (28: space, full stop,
    a-z) and ``classes`` the characters. The loaders yield the token ids as
    stored: no normalisation, no augmentation. Options ``num_samples``
    (default 2000 training windows), ``num_test`` (400), ``context`` (32)
    and ``data_seed`` (0). Its default loss (:func:`default_loss`) is
    :class:`~curvwidgets.losses.SequenceCrossEntropyLoss`.

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

from .loader import Augmentation, EpochPlan, TensorLoader, crop_flip
from .sets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATA_ENV,
    DataSet,
    default_loss,
    default_root,
    load,
    names,
)

__all__ = [
    "Augmentation",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATA_ENV",
    "DataSet",
    "EpochPlan",
    "TensorLoader",
    "crop_flip",
    "default_loss",
    "default_root",
    "load",
    "names",
]

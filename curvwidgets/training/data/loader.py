"""A re-iterable loader over a data set held as one tensor on the device, with on-device augmentation.

See :mod:`curvwidgets.training.data` for the determinism and sharding rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..._validate import boolean, device_value, finite, non_negative_int, positive, positive_int

__all__ = ["Augmentation", "EpochPlan", "TensorLoader", "crop_flip"]

DeviceLike = str | torch.device | None
ArrayLike = torch.Tensor | np.ndarray


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
        non_negative_int("padding", self.padding)
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
    ``batch_size // world_size`` except in a final partial batch. Without
    ``mean`` and ``std`` (token ids) the inputs and targets are yielded as
    stored, of any shape (b, ...).

    The order and augmentation of an epoch depend only on ``(seed, epoch)``
    (see :meth:`plan`); call :meth:`set_epoch` before each epoch.

    Parameters
    ----------
    images : Tensor or ndarray, shape (N, C, H, W), uint8 or floating
        Kept on ``device`` in its dtype (no copy if it is already there).
        With ``mean`` and ``std`` None: any inputs of shape (N, ...), such as
        int64 token ids (N, T).
    targets : Tensor or ndarray of int, shape (N,)
        With ``mean`` and ``std`` None: shape (N, ...), e.g. the next tokens (N, T).
    batch_size : int
        The global batch size, summed over the ``world_size`` processes.
    shuffle : bool
        Draw a new permutation for every epoch; otherwise keep the order.
    augment : bool or Augmentation
        ``True``: ``Augmentation()`` (crop with padding 4 and flip),
        ``False``: none. Must be inactive without ``mean`` and ``std``.
    mean, std : sequence of float, length C, or None
        Per-channel normalisation, for pixels in [0, 1]; both None for
        inputs that are used as stored (token ids), never normalised or augmented.
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
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        device: DeviceLike = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.batch_size = positive_int("batch_size", batch_size)
        self.world_size = positive_int("world_size", world_size)
        self.rank = non_negative_int("rank", rank)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size = {self.world_size}; got {rank}")
        if self.batch_size % self.world_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by world_size ({self.world_size}): "
                "every process gets an equal share of each batch"
            )
        self.seed = non_negative_int("seed", seed)
        self.shuffle = boolean("shuffle", shuffle)
        self.drop_last = boolean("drop_last", drop_last)
        if isinstance(augment, Augmentation):
            self.augmentation: Augmentation | None = augment if augment.active else None
        elif isinstance(augment, (bool, np.bool_)):
            self.augmentation = Augmentation() if augment else None
        else:
            raise ValueError(f"augment must be a bool or an Augmentation; got {augment!r}")

        self.device = torch.device("cpu") if device is None else device_value("device", device)
        images = torch.as_tensor(images)
        targets = torch.as_tensor(targets)
        as_stored = mean is None and std is None
        if as_stored:
            if images.ndim == 0 or targets.ndim == 0 or len(targets) != len(images):
                raise ValueError(f"images and targets must have the same length N (shapes (N, ...)); got "
                                 f"{tuple(images.shape)} and {tuple(targets.shape)}")
            if self.augmentation is not None:
                raise ValueError(f"augment must be False (or an inactive Augmentation) for inputs without mean and "
                                 f"std, which are used as stored; got {augment!r}")
        else:
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
        self.mean = self.std = self._mean = self._std = None
        if not as_stored:
            channels = images.shape[1]
            if np.ndim(mean) != 1 or np.ndim(std) != 1 or len(mean) != channels or len(std) != channels:
                raise ValueError(f"mean and std need {channels} values (one per channel); got {mean!r}, {std!r}")
            self.mean = tuple(finite(f"mean[{channel}]", m) for channel, m in enumerate(mean))
            self.std = tuple(positive(f"std[{channel}]", s) for channel, s in enumerate(std))
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
    def input_shape(self) -> tuple[int, ...]:
        """Shape (C, H, W) of one input ((T,) for token windows)."""
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
        self.epoch = non_negative_int("epoch", epoch)

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The random draws of an epoch (default: the current one), for all N samples.

        The permutation is drawn first, then the row offsets, the column
        offsets and the flips, all from one CPU generator seeded from
        ``(seed, epoch)``; the draws do not depend on ``rank``, ``world_size``
        or the device.
        """
        epoch = self.epoch if epoch is None else non_negative_int("epoch", epoch)
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
        """Float32 ``(x - mean) / std`` of raw images (B, C, H, W) in this loader's dtype and device.

        Inputs without ``mean`` and ``std`` (token ids) are returned as they are.
        """
        if self._mean is None:
            return images
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


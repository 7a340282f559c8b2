#!/usr/bin/env python
"""Images per second of ``cw.train`` against a plain hand-written PyTorch loop, in one process.

Both train the same named model (same initial weights) on the same synthetic
CIFAR-shaped data with SGD (momentum 0.9, weight decay 5e-4) for one epoch
after a warm-up epoch; the rounds alternate so that machine load hits both
alike, and the best round of each is kept. The plain loop is what a user would
write without curvwidgets: a ``DataLoader`` over a ``TensorDataset`` of
normalised float32 images (shuffled, no augmentation, loaded in the main
process), ``zero_grad``, forward, ``backward``, ``step``, and a
``.item()`` per batch for the running loss. ``cw.train`` is timed with and
without augmentation by its own ``seconds`` column (the training part of the
epoch, from the first batch to the synchronised end of the last; its test
evaluation of ``--test-samples`` images is excluded); on CUDA it uses bf16
autocast and channels-last, and is timed once more without them (float32,
NCHW) for a like-for-like comparison with the plain loop.

    PYTHONPATH=. python benchmarks/bench_training.py --model SmallCNN --samples 4096
    PYTHONPATH=. python benchmarks/bench_training.py --model VGG16 --classes 100 --samples 1024
    # on a GPU, the paper's VGG-16 / CIFAR-100 epoch (50 000 images):
    PYTHONPATH=. python benchmarks/bench_training.py --device cuda --model VGG16 --classes 100 --samples 50000
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable, Dict, List

import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.training.data import TensorLoader

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int, device) -> float:
    """The hand-written baseline; returns the mean loss."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=batch, shuffle=True)
    optimizer = plain_epoch.optimizers.setdefault(id(model), torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4))
    criterion = nn.CrossEntropyLoss()
    model.train()
    total = 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)


plain_epoch.optimizers = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmallCNN")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--test-samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (args.samples + args.test_samples, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, args.classes, (len(raw),), generator=generator)
    train_raw, test_raw = raw[:args.samples], raw[args.samples:]
    train_labels, test_labels = labels[:args.samples], labels[args.samples:]
    normalised = ((train_raw.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1))
    if device.type == "cuda":
        normalised = normalised.pin_memory()

    def loaders(augment: bool):
        common = dict(mean=MEAN, std=STD, device=device, seed=0)
        return (TensorLoader(train_raw, train_labels, args.batch, shuffle=True, augment=augment, **common),
                TensorLoader(test_raw, test_labels, 512, shuffle=False, augment=False, **common))

    def make_model() -> nn.Module:
        torch.manual_seed(0)
        return cw.models.create(args.model, num_classes=args.classes).to(device)

    plain_model = make_model()
    cw_models = {(augment, fast): make_model() for augment in (False, True) for fast in (False, True)}
    def plain() -> float:
        sync(device)
        start = time.perf_counter()
        plain_epoch(plain_model, normalised, train_labels, args.batch, device)
        sync(device)
        return time.perf_counter() - start

    def curvwidgets_epoch(augment: bool, fast: bool = True) -> float:
        """The training part of the epoch as ``cw.train`` measures it (its test evaluation excluded)."""
        history = cw.train(cw_models[augment, fast], loaders(augment), epochs=1, schedule="constant",
                           optimizer_kwargs={"lr": 0.01}, amp=None if fast else False,
                           channels_last=None if fast else False)
        return history.rows[-1]["seconds"]

    jobs: Dict[str, Callable[[], float]] = {"plain loop": plain, "cw.train": lambda: curvwidgets_epoch(False),
                                            "cw.train, augmented": lambda: curvwidgets_epoch(True)}
    if device.type == "cuda":  # like for like with the plain loop: float32, default memory format
        jobs["cw.train, fp32 NCHW"] = lambda: curvwidgets_epoch(False, fast=False)
    times: Dict[str, List[float]] = {name: [] for name in jobs}
    for job in jobs.values():  # warm-up
        job()
    for _ in range(args.rounds):
        for name, job in jobs.items():
            times[name].append(job())
    best = {name: min(values) for name, values in times.items()}
    rate = {name: args.samples / seconds for name, seconds in best.items()}
    print(f"{args.model}, {args.samples} images of 3x32x32, batch {args.batch}, {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    for name in jobs:
        print(f"  {name:22s} {best[name]:8.2f} s per epoch  {rate[name]:9.0f} images/s  "
              f"{rate[name] / rate['plain loop']:5.2f} x plain")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "times": times, "images_per_second": rate}, handle, indent=1)


if __name__ == "__main__":
    main()

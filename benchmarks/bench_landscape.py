#!/usr/bin/env python
"""Landscape points per second of ``cw.loss_landscape`` against a plain loop, in one process.

The plain loop is what the paper's code and the ``loss-landscape`` package do:
for every point, write ``w + t v`` into the model's parameters, run the whole
train and test sets through it once (eval mode, ``torch.no_grad``, a
``DataLoader`` of batch 128 over normalised float32 tensors), and put the
weights back at the end. ``cw.loss_landscape`` evaluates the same points on
the same data (one fixed-order pass per split, several points per pass with
``vmap`` where that is faster, ``points_per_pass`` and ``samples_per_pass``
chosen by timing unless given). The rounds alternate so machine load hits both alike; the best
round of each is kept, and the two results are checked to agree.

    PYTHONPATH=. python benchmarks/bench_landscape.py --model MLP
    PYTHONPATH=. python benchmarks/bench_landscape.py --model SmallCNN
    # on a GPU, VGG-16 on CIFAR-100-shaped data (50 000 + 10 000 images):
    PYTHONPATH=. python benchmarks/bench_landscape.py --device cuda --model VGG16 --data synthetic --classes 100 \
        --samples 50000 --test-samples 10000 --points 8
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List

import numpy as np
import torch
from torch import nn

import curvwidgets as cw


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def plain_landscape(model: nn.Module, splits: Dict[str, torch.utils.data.DataLoader], direction: torch.Tensor,
                    offsets: np.ndarray) -> Dict[str, np.ndarray]:
    """Loss and accuracy at ``w + t v`` for each ``t``, by perturbing the weights in place (the baseline)."""
    params = list(model.parameters())
    original = [p.detach().clone() for p in params]
    pieces = torch.split(direction, [p.numel() for p in params])
    criterion = nn.CrossEntropyLoss(reduction="sum")
    model.eval()
    results = {f"{split}_{metric}": np.empty(len(offsets)) for split in splits for metric in ("loss", "accuracy")}
    for index, t in enumerate(offsets):
        for p, w, piece in zip(params, original, pieces):
            p.copy_(w + float(t) * piece.view_as(p))
        for split, loader in splits.items():
            loss = correct = count = 0.0
            for x, y in loader:
                x, y = x.to(direction.device), y.to(direction.device)
                outputs = model(x)
                loss += criterion(outputs, y).item()
                correct += (outputs.argmax(1) == y).sum().item()
                count += len(y)
            results[f"{split}_loss"][index] = loss / count
            results[f"{split}_accuracy"][index] = correct / count
    for p, w in zip(params, original):
        p.copy_(w)
    return results


def tensors_of(loader) -> tuple:
    """All (normalised float32 inputs, targets) of a fixed-order loader, concatenated."""
    inputs, targets = zip(*loader)
    return torch.cat(inputs), torch.cat(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="MLP")
    parser.add_argument("--data", default="digits", help="digits (embedded) or synthetic")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=4096, help="synthetic training images")
    parser.add_argument("--test-samples", type=int, default=1024, help="synthetic test images")
    parser.add_argument("--points", type=int, default=16, help="points along one random direction")
    parser.add_argument("--points-per-pass", type=int, default=None, help="fix it instead of timing (default)")
    parser.add_argument("--samples-per-pass", type=int, default=None, help="fix it instead of timing (default)")
    parser.add_argument("--eval-batch", type=int, default=512, help="batch size of the data given to cw.loss_landscape")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default=None)
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    torch.manual_seed(0)
    options = ({"num_samples": arguments.samples, "num_test": arguments.test_samples, "num_classes": arguments.classes}
               if arguments.data == "synthetic" else {})
    dataset = cw.data.load(arguments.data, augment=False, device=device, **options)
    model = cw.models.create(arguments.model, num_classes=dataset.num_classes).to(device).eval()
    train_x, train_y = tensors_of(dataset.evaluation_loader("train"))
    test_x, test_y = tensors_of(dataset.evaluation_loader("test"))
    plain_splits = {split: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128)
                    for split, (x, y) in (("train", (train_x, train_y)), ("test", (test_x, test_y)))}
    ours_splits = (dataset.evaluation_loader("train", arguments.eval_batch),
                   dataset.evaluation_loader("test", arguments.eval_batch))
    direction = cw.random_directions(model, 1, seed=0)[0]
    offsets = np.linspace(-1.0, 1.0, arguments.points)
    timings: Dict[str, List[float]] = {"plain loop": [], "cw.loss_landscape": []}
    chosen = None
    for _ in range(arguments.rounds):
        sync(device)
        began = time.perf_counter()
        reference = plain_landscape(model, plain_splits, direction.vector.to(device), offsets)
        sync(device)
        timings["plain loop"].append(time.perf_counter() - began)
        began = time.perf_counter()
        result = cw.loss_landscape(model, ours_splits, [direction], dist=1.0, n_points=arguments.points,
                                   points_per_pass=arguments.points_per_pass,
                                   samples_per_pass=arguments.samples_per_pass)
        sync(device)
        timings["cw.loss_landscape"].append(time.perf_counter() - began)
        chosen = (result.meta["points_per_pass"], result.meta["samples_per_pass"])
        cost = result.meta.get("pass_timing", {}).get("cost", 0.0)
        timed = result.meta.get("pass_timing", {}).get("seconds_per_point_sample", {})
        print(f"  round: plain {timings['plain loop'][-1]:.2f} s, ours {timings['cw.loss_landscape'][-1]:.2f} s "
              f"at {chosen[0]} x {chosen[1]} (cost {cost:.3f} s); us per point-sample: "
              + ", ".join(f"{shape} {1e6 * value:.1f}" for shape, value in timed.items()))
    for name in reference:
        np.testing.assert_allclose(result[name][0], reference[name], rtol=1e-4, atol=1e-5)
    best = {name: min(values) for name, values in timings.items()}
    rates = {name: arguments.points / seconds for name, seconds in best.items()}
    ratio = rates["cw.loss_landscape"] / rates["plain loop"]
    params = sum(p.numel() for p in model.parameters())
    print(f"{arguments.model} ({params:,} parameters) on {arguments.data}: {len(train_y)} train + {len(test_y)} test "
          f"images, {arguments.points} points, device {device}")
    for name, rate in rates.items():
        print(f"  {name:<18} {rate:8.2f} points/s  (best of {arguments.rounds}: {best[name]:.2f} s)")
    print(f"  ratio {ratio:.2f}x  (points x samples per pass {chosen[0]} x {chosen[1]}, data batch "
          f"{arguments.eval_batch}; choosing cost {cost:.3f} s = {cost / best['cw.loss_landscape']:.1%}; results agree)")
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump({"model": arguments.model, "params": params, "device": str(device), "rates": rates,
                       "ratio": ratio, "points_per_pass": chosen[0], "samples_per_pass": chosen[1],
                       "choice_cost": cost, "timings": timings}, handle, indent=1)


if __name__ == "__main__":
    main()

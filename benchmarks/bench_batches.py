#!/usr/bin/env python
"""What reading batches of any structure costs a curvature product (issue 19).

The same network, on the same samples, three ways, timed round-robin in one
process (best of ``--repeats``):

1. ``tensor``: ``model(x)`` returning the logits, batches ``(x, y)``: the usual path;
2. ``mapping``: ``model(features=x)`` returning an object with ``.logits``,
   batches ``({"features": x}, y)``, as Hugging Face models are called;
3. ``tuple``: ``model(x, scale)`` with a per-sample tensor ``scale`` of ones,
   batches ``((x, scale), y)``.

For each, one ``Hessian`` and one ``GGN`` product with a block of ``--vectors``
vectors over the whole data (plans pinned, so no timing of plans is in the
figures), and the products' agreement with the tensor path. Nothing is
asserted. From the repository root::

    PYTHONPATH=. python benchmarks/bench_batches.py
    PYTHONPATH=. python benchmarks/bench_batches.py --model SmallCNN --samples 512 --vectors 4
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from typing import Dict, List

import torch
from torch import nn

import curvwidgets as cw


@dataclass
class Output:
    logits: torch.Tensor


class Keywords(nn.Module):
    """``net`` called as ``model(features=x)``, returning ``Output(logits=...)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> Output:
        return Output(self.net(features))


class Positional(nn.Module):
    """``net`` called as ``model(x, scale)``, the inputs scaled per sample first."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.net(x * scale.view(-1, *([1] * (x.ndim - 1))))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="MLP")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--vectors", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    torch.manual_seed(0)
    dataset = cw.data.load("digits", augment=False)
    inputs, targets = map(torch.cat, zip(*dataset.evaluation_loader("train", arguments.batch)))
    inputs, targets = inputs[: arguments.samples], targets[: arguments.samples]
    net = cw.models.create(arguments.model, num_classes=dataset.num_classes).eval()
    cuts = list(zip(inputs.split(arguments.batch), targets.split(arguments.batch)))
    ways = {
        "tensor": (net, cuts),
        "mapping": (Keywords(net), [({"features": x}, y) for x, y in cuts]),
        "tuple": (Positional(net), [((x, torch.ones(len(x))), y) for x, y in cuts]),
    }
    loss = nn.CrossEntropyLoss()
    operators = {(way, kind.__name__): kind(model, loss, data, backend="double-backward", vector_chunk=arguments.vectors,
                                             sample_chunk=None)
                 for way, (model, data) in ways.items() for kind in (cw.Hessian, cw.GGN)}
    dim = operators[("tensor", "Hessian")].dim
    block = torch.randn(dim, arguments.vectors, generator=torch.Generator().manual_seed(1))
    seconds: Dict[tuple, List[float]] = {key: [] for key in operators}
    products = {}
    for key, op in operators.items():
        products[key] = op @ block  # warm-up
    for _ in range(arguments.repeats):
        for key, op in operators.items():
            began = time.perf_counter()
            op @ block
            seconds[key].append(time.perf_counter() - began)
    print(f"{arguments.model} ({dim:,} parameters), {arguments.samples} samples in batches of {arguments.batch}, "
          f"{arguments.vectors} vectors, double-backward, torch {torch.__version__}, {cpu_model()}")
    for kind in ("Hessian", "GGN"):
        base = min(seconds[("tensor", kind)])
        for way in ways:
            best = min(seconds[(way, kind)])
            difference = (products[(way, kind)] - products[("tensor", kind)]).abs().max() / \
                products[("tensor", kind)].abs().max()
            print(f"  {kind:<8} {way:<8} {best * 1e3:8.1f} ms  ({best / base:5.3f}x the tensor path; "
                  f"products differ by {difference:.1e})")


if __name__ == "__main__":
    main()

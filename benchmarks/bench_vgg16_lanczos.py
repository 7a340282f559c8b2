#!/usr/bin/env python
"""Seconds per full-data Lanczos iteration on VGG-16 / CIFAR-100-sized data, and peak memory.

The paper reports 27.9 s (Hessian, 2450 MB) and 26.5 s (GGN, 2850 MB) per
iteration on a GTX 1080 Ti for VGG-16 on CIFAR-100 (50 000 training images).
This script builds ``cw.models.create("VGG16", num_classes=100)`` on
synthetic CIFAR-100-shaped data (uint8 images kept on the device, batches of
``--batch``), runs ``--steps`` Lanczos steps for each operator and basis
placement, and reports seconds per step and the peak device memory
(``torch.cuda.max_memory_allocated``) with the Lanczos basis on the device
and offloaded to the CPU (``basis_device="cpu"``). On a CPU it runs too, with
small ``--samples``, as a smoke test (memory is then not reported).

    PYTHONPATH=. python benchmarks/bench_vgg16_lanczos.py --device cuda --samples 50000 --steps 3
    PYTHONPATH=. python benchmarks/bench_vgg16_lanczos.py --samples 64 --batch 32 --steps 2   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import curvwidgets as cw
from curvwidgets.training.data import CIFAR100_MEAN, CIFAR100_STD, TensorLoader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.samples, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 100, (args.samples,), generator=generator)
    data = TensorLoader(images, labels, args.batch, shuffle=False, augment=False, mean=CIFAR100_MEAN,
                        std=CIFAR100_STD, device=device)
    torch.manual_seed(0)
    model = cw.models.create("VGG16", num_classes=100).to(device).eval()
    loss_fn = torch.nn.CrossEntropyLoss()
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "samples": args.samples, "batch": args.batch, "steps": args.steps,
               "parameters": sum(p.numel() for p in model.parameters()), "runs": []}
    print({k: v for k, v in results.items() if k != "runs"})
    for kind in ("Hessian", "GGN"):
        for basis in (device.type, "cpu") if device.type == "cuda" else ("cpu",):
            operator = getattr(cw, kind)(model, loss_fn, data)
            operator @ torch.zeros(operator.dim, device=device)  # picks the backend outside the timing
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            cw.lanczos(operator, steps=args.steps, seed=0, basis_device=basis)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = (time.perf_counter() - start) / args.steps
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            run = {"operator": kind, "backend": operator.backend, "basis_device": basis,
                   "seconds_per_step": seconds, "peak_memory_mib": peak}
            results["runs"].append(run)
            print(run)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

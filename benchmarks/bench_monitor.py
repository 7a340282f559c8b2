#!/usr/bin/env python
"""The cost of measuring the sharpness during training: ``cw.train(monitor=...)`` against the same run without it.

On the embedded ``digits`` (1437 training images; ``--data synthetic``: 10 000
CIFAR-shaped images) the named model trains for
``--epochs`` epochs with SGD, once without a monitor and once for each
monitor setting, measuring after every epoch, in one process. Reported per
setting: the measurements' seconds over the training's (the history's
``curvature_time_fraction``: both clocks of the same run), the whole run's
wall time over the plain run's, the mean products per measurement, and that
the weights end bit for bit as without the monitor. A second table times one
measurement at the same weights (top eigenvalue to 1e-4 and the gradient,
best of 3, interleaved) the way the monitor makes it, each pass's graph kept
for every product (:class:`~curvwidgets.curvature.retained.RetainedProducts`,
passes split by memory), against re-running the operator's products on the
whole subset, as the monitor did before.

    PYTHONPATH=. python benchmarks/bench_monitor.py                  # SmallCNN, 5 epochs, about a minute
    PYTHONPATH=. python benchmarks/bench_monitor.py --model MLP --epochs 3
    PYTHONPATH=. python benchmarks/bench_monitor.py --data synthetic --epochs 2   # an epoch 7x longer
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, Optional

import numpy as np
import torch

import curvwidgets as cw
from curvwidgets._machine import cpu_model
from curvwidgets.curvature.retained import RetainedProducts
from curvwidgets.linalg.eigen import eigenpairs

SETTINGS: Dict[str, Optional[cw.CurvatureMonitor]] = {
    "no monitor": None,
    "default (256 samples, tol 1e-4)": cw.CurvatureMonitor(),
    "128 samples, tol 1e-3": cw.CurvatureMonitor(num_samples=128, tol=1e-3),
    "64 samples, tol 1e-4": cw.CurvatureMonitor(num_samples=64),
    "64 samples, tol 1e-2": cw.CurvatureMonitor(num_samples=64, tol=1e-2),
    "32 samples, tol 1e-3": cw.CurvatureMonitor(num_samples=32, tol=1e-3),
    "32 samples, tol 1e-2": cw.CurvatureMonitor(num_samples=32, tol=1e-2),
    "default, every 3rd epoch": cw.CurvatureMonitor(every=3),
}


def run(model: str, epochs: int, monitor: Optional[cw.CurvatureMonitor], data) -> Dict[str, float]:
    began = time.perf_counter()
    history = cw.train(model, data, epochs=epochs, optimizer_kwargs={"lr": 0.05}, seed=0, monitor=monitor)
    wall = time.perf_counter() - began
    weights = torch.cat([p.detach().reshape(-1) for p in history.model.parameters()])
    return {"wall": wall, "training": float(history["seconds"].sum()),
            "fraction": history.final.get("curvature_time_fraction", 0.0),
            "products": float(np.nanmean(history["curvature_products"])) if monitor is not None else 0.0,
            "sharpness": float(history["sharpness"][-1]) if monitor is not None else float("nan"),
            "weights": weights}


def one_measurement(model: torch.nn.Module, batch, kept: bool) -> Dict[str, float]:
    """Seconds and products of the top Hessian eigenvalue to 1e-4 and the gradient on ``batch``."""
    began = time.perf_counter()
    operator = cw.Hessian(model, torch.nn.CrossEntropyLoss(), [batch], bn_mode="eval", backend="double-backward",
                          vector_chunk=1, sample_chunk="auto" if kept else None)
    if kept:
        operator = RetainedProducts(operator)
    pairs = eigenpairs(operator, 1, "largest", 1e-4, 200, seed=0)
    if kept:
        operator.gradient()
    else:
        sum(gradient for _, _, _, gradient in operator.batch_gradients())
    return {"seconds": time.perf_counter() - began, "products": pairs.products}


def compare_measurements(model: torch.nn.Module, data, sizes=(64, 256), rounds: int = 3) -> None:
    """The second table: one measurement with kept graphs against re-run products, at the same weights."""
    inputs, targets = (torch.cat(parts) for parts in zip(*data.evaluation_loader("train", batch_size=256)))
    print("\n| subset | re-run products (before) | kept graphs (now) | speed-up | products |")
    print("|---|---|---|---|---|")
    for size in sizes:
        batch = (inputs[:size], targets[:size])
        best = {kept: one_measurement(model, batch, kept)["seconds"] for kept in (False, True)}  # one-time costs
        for _ in range(rounds):
            for kept in (False, True):
                best[kept] = min(best[kept], one_measurement(model, batch, kept)["seconds"])
        products = one_measurement(model, batch, True)["products"]
        print(f"| {size} | {best[False]:.2f} s | {best[True]:.2f} s | {best[False] / best[True]:.2f}x | {products} |")


def subset_error(model: torch.nn.Module, data, sizes=(32, 64, 128, 256), seeds: int = 5) -> None:
    """The third table: the sharpness of subsets (``seeds`` draws each) against the whole training split's."""
    loss_fn = torch.nn.CrossEntropyLoss()

    def sharpness(batches, kept: bool = True) -> float:
        operator = cw.Hessian(model, loss_fn, batches, bn_mode="eval", sample_chunk="auto")
        return float(eigenpairs(RetainedProducts(operator) if kept else operator, 1, "largest", 1e-4, 300,
                                seed=0).values[-1])

    whole = sharpness(data.evaluation_loader("train", batch_size=256), kept=False)  # graphs of every sample: too big
    inputs, targets = (torch.cat(parts) for parts in zip(*data.evaluation_loader("train", batch_size=256)))
    print(f"\nsharpness of the whole training split ({len(inputs)} samples): {whole:.4g}")
    print("| subset | sharpness / whole split's, mean | spread (sd) over draws |")
    print("|---|---|---|")
    for size in sizes:
        ratios = []
        for seed in range(seeds):
            chosen = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))[:size]
            ratios.append(sharpness([(inputs[chosen], targets[chosen])]) / whole)
        print(f"| {size} | {np.mean(ratios):.3f} | {np.std(ratios, ddof=1):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmallCNN")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", default="digits", choices=["digits", "synthetic"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--runs-only", action="store_true",
                        help="only the first table (the subsets' table takes the whole split's sharpness: slow on "
                             "--data synthetic)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    data = cw.data.load(arguments.data, seed=0)
    run(arguments.model, 1, cw.CurvatureMonitor(num_samples=32), data)  # one-time costs, before any timed run
    results = {name: run(arguments.model, arguments.epochs, monitor, data) for name, monitor in SETTINGS.items()}
    plain = results["no monitor"]
    print(f"{arguments.model} on {arguments.data}, {arguments.epochs} epochs, a measurement after each; {cpu_model()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| monitor | measuring / training time | run wall time vs no monitor | products per measurement "
          "| last sharpness | weights as without |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        same = torch.equal(result["weights"], plain["weights"])
        print(f"| {name} | {result['fraction']:.2f} | {result['wall'] / plain['wall']:.2f}x | {result['products']:.1f} "
              f"| {result['sharpness']:.4g} | {'bit for bit' if same else 'DIFFERENT'} |")
    if not arguments.runs_only:
        trained = cw.train(arguments.model, data, epochs=arguments.epochs, optimizer_kwargs={"lr": 0.05}, seed=0).model
        compare_measurements(trained.eval(), data)
        subset_error(trained, data)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The cost of measuring the sharpness during training: ``cw.train(monitor=...)`` against the same run without it.

On the embedded ``digits`` (1437 training images; ``--data synthetic``: 10 000
CIFAR-shaped images) the named model trains for
``--epochs`` epochs with SGD, once without a monitor and once for each
monitor setting, measuring after every epoch, in one process. Reported per
setting: the measurements' seconds over the training's (the history's
``curvature_time_fraction``: both clocks of the same run), the whole run's
wall time over the plain run's, the mean products per measurement, and that
the weights end bit for bit as without the monitor.

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

SETTINGS: Dict[str, Optional[cw.CurvatureMonitor]] = {
    "no monitor": None,
    "default (256 samples, tol 1e-4)": cw.CurvatureMonitor(),
    "128 samples, tol 1e-3": cw.CurvatureMonitor(num_samples=128, tol=1e-3),
    "64 samples, tol 1e-2": cw.CurvatureMonitor(num_samples=64, tol=1e-2),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmallCNN")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", default="digits", choices=["digits", "synthetic"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    data = cw.data.load(arguments.data, seed=0)
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


if __name__ == "__main__":
    main()

"""What choosing a plan costs in the work it tunes: a Lanczos run of the Hessian and the GGN (issue 18).

The plan of each block width is timed on the first batch of the first
product of that width and kept for the operator's life, so its cost is a
fixed amount per operator and width (``Plan.cost``: warm-ups, trial products
thrown away, and the slower candidates' time over the chosen one's rate).
This times ``cw.lanczos(op, steps)`` with ``num_vectors`` start vectors (a
block of that width per step) on the models of ``bench_curvature.py
--plans``, and gives the plan's cost as a fraction of the whole run.

    PYTHONPATH=. python benchmarks/bench_plan_cost.py --steps 20 --num-vectors 1
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

import curvwidgets as cw
from bench_curvature import make_data, plan_models, with_running_stats
from curvwidgets._machine import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num-vectors", type=int, default=1)
    parser.add_argument("--samples", type=int, default=256, help="samples of the synthetic CIFAR-shaped data")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--models", default=None, help="comma-separated subset of bench_curvature's plan models")
    args = parser.parse_args()
    print(f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; Lanczos {args.steps} steps x "
          f"{args.num_vectors} vectors, {args.samples} samples in batches of {args.batch}")
    data = make_data(args.samples, args.batch, 0, "cpu")
    for name, build in plan_models(quick=False).items():
        if args.models and name not in args.models.split(","):
            continue
        torch.manual_seed(0)
        model = with_running_stats(build(), data)
        for kind in ("Hessian", "GGN"):
            op = getattr(cw, kind)(model, nn.CrossEntropyLoss(), data)
            began = time.perf_counter()
            cw.lanczos(op, steps=args.steps, num_vectors=args.num_vectors, seed=0)
            total = time.perf_counter() - began
            plan = op.plans[args.num_vectors]
            print(f"{name:14s} {kind:8s} run {total:7.2f} s, plan {plan.label:24s} cost {plan.cost:6.3f} s = "
                  f"{100 * plan.cost / total:4.1f}% of the run (load {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()

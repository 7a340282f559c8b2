#!/usr/bin/env python
"""Speed and agreement of the exact GGN diagonal (issue 19) against the product path and BackPACK.

For a small CNN (about 1.3k parameters, 1x8x8 inputs, where ``P`` products
are affordable) and a wider one (about 20k parameters, 3x16x16 inputs), with
cross-entropy, MSE and BCE with logits over 10 outputs, on seeded data in one
batch (BackPACK's unit of work):

1. ``ggn_diagonal(GGN(...))``: the exact diagonal in ``C = 10`` backward passes
   per batch (curvwidgets, this tree).
2. ``exact_diagonal(GGN(...))``: ``P`` operator products with unit vectors
   (small model only: the path before issue 19).
3. BackPACK's ``DiagGGNExact`` (if ``backpack`` imports): the same diagonal in
   one backward pass that propagates the factor's ``C`` columns.
4. Monte Carlo: ``mc_ggn_diagonal(num_mc=1)`` and BackPACK's ``DiagGGNMC(1)``,
   timed, with their relative error ``||d - exact|| / ||exact||`` averaged over
   ``--mc-seeds`` draws (the same statistic for both: it measures the
   estimator, not the draws).

Agreement is ``max |d - ggn_diagonal| / max |ggn_diagonal|``; every timing is
the best of ``--repeats``, the methods timed round-robin in this process.
Nothing is asserted. From the repository root::

    PYTHONPATH=. python benchmarks/bench_diagonal.py
    PYTHONPATH=. python benchmarks/bench_diagonal.py --dtype float32 --repeats 5 --json benchmarks/results/diag.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

import curvwidgets as cw
from curvwidgets._machine import cpu_model
from curvwidgets.curvature import exact_diagonal, ggn_diagonal, mc_ggn_diagonal

CLASSES = 10
LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce_logits": nn.BCEWithLogitsLoss}


def small_cnn() -> nn.Sequential:
    """1x8x8 inputs: Conv 1->4, max pool, Linear 64->16->10: 1,250 parameters."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, CLASSES))


def wide_cnn() -> nn.Sequential:
    """3x16x16 inputs: Conv 3->16->16 with max pools, Linear 256->64->10: 19,866 parameters."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, CLASSES))


MODELS = {"small": (small_cnn, (1, 8, 8)), "wide": (wide_cnn, (3, 16, 16))}


def problem(model_name: str, loss_name: str, samples: int, dtype: torch.dtype):
    """A seeded model, loss and one batch ``(inputs, targets)`` of ``samples``."""
    build, shape = MODELS[model_name]
    torch.manual_seed(0)
    model = build().to(dtype)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(samples, *shape, generator=generator, dtype=dtype)
    if loss_name == "cross_entropy":
        targets = torch.randint(0, CLASSES, (samples,), generator=generator)
    elif loss_name == "mse":
        targets = torch.randn(samples, CLASSES, generator=generator, dtype=dtype)
    else:
        targets = torch.randint(0, 2, (samples, CLASSES), generator=generator).to(dtype)
    return model, LOSSES[loss_name](), inputs, targets


def backpack_available() -> Optional[str]:
    """BackPACK's version, or None when it does not import."""
    try:
        import backpack  # noqa: F401
        from importlib.metadata import version
    except ImportError:
        return None
    return version("backpack-for-pytorch")


def extended(model: nn.Module, loss_fn: nn.Module) -> Tuple[nn.Module, nn.Module]:
    """Copies of ``model`` and ``loss_fn`` extended by BackPACK (its hooks stay off the model curvwidgets reads)."""
    from backpack import extend

    return extend(copy.deepcopy(model)), extend(copy.deepcopy(loss_fn))


def backpack_diagonal(model: nn.Module, loss_fn: nn.Module, inputs, targets, extension: str,
                      mc_samples: int = 1, seed: int = 0) -> torch.Tensor:
    """BackPACK's ``DiagGGNExact`` or ``DiagGGNMC`` of the batch's loss, flat over ``model.parameters()``.

    ``model`` and ``loss_fn`` are :func:`extended`.
    """
    from backpack import backpack
    from backpack.extensions import DiagGGNExact, DiagGGNMC

    model.zero_grad()
    torch.manual_seed(seed)  # DiagGGNMC draws from torch's global generator
    loss = loss_fn(model(inputs), targets)
    chosen = DiagGGNExact() if extension == "exact" else DiagGGNMC(mc_samples=mc_samples)
    with backpack(chosen):
        loss.backward()
    field = "diag_ggn_exact" if extension == "exact" else "diag_ggn_mc"
    return torch.cat([getattr(p, field).reshape(-1) for p in model.parameters()]).detach()


def best_time(function: Callable[[], torch.Tensor], repeats: int) -> Tuple[float, torch.Tensor]:
    best, result = float("inf"), None
    for _ in range(repeats):
        clock = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - clock)
    return best, result


def agreement(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return ((estimate.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(estimate.double() - reference.double())
            / torch.linalg.vector_norm(reference.double())).item()


def run(model_name: str, loss_name: str, args, peer: Optional[str]) -> List[Dict[str, object]]:
    model, loss_fn, inputs, targets = problem(model_name, loss_name, args.samples, args.dtype)
    batches = [(inputs, targets)]
    dim = sum(p.numel() for p in model.parameters())
    ggn = cw.GGN(model, loss_fn, batches)
    methods: Dict[str, Callable[[], torch.Tensor]] = {"ggn_diagonal": lambda: ggn_diagonal(ggn)}
    if model_name == "small":
        methods["exact_diagonal (P products)"] = lambda: exact_diagonal(ggn)
    if peer:
        peer_model, peer_loss = extended(model, loss_fn)
        methods["BackPACK DiagGGNExact"] = lambda: backpack_diagonal(peer_model, peer_loss, inputs, targets, "exact")
    methods["mc_ggn_diagonal(num_mc=1)"] = lambda: mc_ggn_diagonal(ggn, num_mc=1, seed=0)
    if peer:
        methods["BackPACK DiagGGNMC(1)"] = lambda: backpack_diagonal(peer_model, peer_loss, inputs, targets, "mc")
    seconds: Dict[str, float] = {name: float("inf") for name in methods}
    results: Dict[str, torch.Tensor] = {}
    failures: Dict[str, str] = {}
    for _ in range(args.repeats):  # round-robin, so that a change of machine load hits every method alike
        for name, method in methods.items():
            if name in failures:
                continue
            try:
                elapsed, results[name] = best_time(method, 1)
            except Exception as error:  # a peer that does not support this loss  # noqa: BLE001
                failures[name] = f"{type(error).__name__}: {error}"[:120]
                continue
            seconds[name] = min(seconds[name], elapsed)
    reference = results["ggn_diagonal"]
    mc_errors = {
        "mc_ggn_diagonal(num_mc=1)": lambda seed: mc_ggn_diagonal(ggn, num_mc=1, seed=seed),
        "BackPACK DiagGGNMC(1)": lambda seed: backpack_diagonal(peer_model, peer_loss, inputs, targets, "mc", seed=seed),
    }
    rows = []
    for name in methods:
        row: Dict[str, object] = {"model": model_name, "P": dim, "loss": loss_name, "method": name}
        if name in failures:
            row["failure"] = failures[name]
        else:
            row["seconds"] = seconds[name]
            row["vs ggn_diagonal"] = seconds[name] / seconds["ggn_diagonal"]
            if name.startswith("mc") or "MC" in name:
                draws = [mc_errors[name](seed) for seed in range(args.mc_seeds)]
                row["mean relative error"] = sum(relative_error(d, reference) for d in draws) / len(draws)
            else:
                row["agreement"] = agreement(results[name], reference)
        rows.append(row)
    return rows


def table(rows: List[Dict[str, object]]) -> str:
    lines = ["| model (P) | loss | method | seconds | / ggn_diagonal | agreement or MC error |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if "failure" in row:
            lines.append(f"| {row['model']} ({row['P']}) | {row['loss']} | {row['method']} | - | - | "
                         f"{row['failure']} |")
            continue
        quality = (f"{row['agreement']:.1e}" if "agreement" in row else f"MC {row['mean relative error']:.2f}")
        lines.append(f"| {row['model']} ({row['P']}) | {row['loss']} | {row['method']} | {row['seconds']:.4f} | "
                     f"{row['vs ggn_diagonal']:.2f} | {quality} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128, help="samples in the one batch (default 128)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per method, the best kept (default 3)")
    parser.add_argument("--mc-seeds", type=int, default=5, help="draws averaged for the MC errors (default 5)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--models", default="small,wide")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    args.dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    peer = backpack_available()
    print(f"# {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"Python {platform.python_version()}, BackPACK {peer or 'not installed'}, {args.dtype}, "
          f"{args.samples} samples, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = []
    for model_name in args.models.split(","):
        for loss_name in args.losses.split(","):
            rows += run(model_name, loss_name, args, peer)
            print(f"  {model_name} {loss_name} done", file=sys.stderr)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "backpack": peer, "dtype": str(args.dtype), "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()

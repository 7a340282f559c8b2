#!/usr/bin/env python
"""Speed of curvwidgets' Hessian and GGN products against a gradient and against peer libraries.

For a ResNet-20-style network (BatchNorm, eval mode) and a VGG-style CNN
(no BatchNorm) on CIFAR-shaped synthetic data (float32, seeded):

1. ``t_grad``: one full-data gradient (forward + backward over every batch).
2. curvwidgets ``Hessian @ v`` and ``GGN @ v`` (default backend and forced
   double backward) and a 30-step ``lanczos``, as ratios to ``t_grad``.
3. Peers where they import (PyHessian, hessian-eigenthings, curvlinops): one
   full-data Hessian- and GGN-vector product each, as ratios to ``t_grad``,
   and their agreement with curvwidgets on the same vector
   (``max |a - b| / max |b|``).
4. Products to reach the top Hessian eigenvalue to 1e-3 relative: Lanczos
   (``truncate(k)`` of one long run) against PyHessian's power iteration.

Every timing is the best of ``--repeats``; the methods are timed round-robin
in this one process so that a change in machine load hits them all alike.
Nothing is asserted. From the repository root::

    PYTHONPATH=. python benchmarks/bench_curvature.py --quick
    PYTHONPATH=. python benchmarks/bench_curvature.py --json benchmarks/results/curvature_cpu.json
    PYTHONPATH=. python benchmarks/bench_curvature.py --device cuda --json benchmarks/results/curvature_gpu.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import time
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

import curvwidgets as cw

TOL = 1e-3  # eigenvalue accuracy of section 4
AGREE = 1e-4  # agreement required of every product


# ---- models and data -------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet20(widths=(16, 32, 64), blocks: int = 3, classes: int = 10) -> nn.Module:
    layers: List[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    cin = widths[0]
    for stage, width in enumerate(widths):
        for block in range(blocks):
            layers.append(BasicBlock(cin, width, 2 if stage > 0 and block == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def vgg(widths=(32, 64, 128, 128), classes: int = 10) -> nn.Module:
    layers: List[nn.Module] = []
    cin = 3
    for width in widths:
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        cin = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * (32 >> len(widths)) ** 2, classes))


def with_running_stats(model: nn.Module, data) -> nn.Module:
    """Give BatchNorm non-trivial running statistics (a few train-mode passes), then eval mode."""
    model.train()
    with torch.no_grad():
        for inputs, _ in data:
            model(inputs)
    return model.eval()


def make_data(samples: int, batch: int, seed: int, device) -> list:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, 3, 32, 32, generator=generator)
    targets = torch.randint(0, 10, (samples,), generator=generator)
    return [(x.to(device), y.to(device)) for x, y in zip(inputs.split(batch), targets.split(batch))]


# ---- timing -------------------------------------------------------------------------------------

def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_round_robin(jobs: Dict[str, Callable[[], object]], repeats: int, device) -> Dict[str, List[float]]:
    """Each job once per round, ``repeats`` rounds (the jobs are warm: each ran once already)."""
    times: Dict[str, List[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            sync(device)
            start = time.perf_counter()
            job()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def full_gradient(model: nn.Module, loss_fn, data) -> List[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    count = sum(len(x) for x, _ in data)
    for inputs, targets in data:
        grads = torch.autograd.grad(loss_fn(model(inputs), targets) * (len(inputs) / count), params)
        for acc, g in zip(total, grads):
            acc += g
    return total


def split_like(vector: torch.Tensor, model: nn.Module) -> List[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    return [piece.view_as(p) for piece, p in zip(vector.split([p.numel() for p in params]), params)]


def flat(pieces) -> torch.Tensor:
    return torch.cat([piece.reshape(-1) for piece in pieces])


# ---- peers: each gives {"hvp"/"ggn": flat vector -> flat vector}, or a note why not -----------

def pyhessian_products(model, loss_fn, data, device):
    from pyhessian import hessian

    # PyHessian calls model.eval() itself; it has no GGN product
    engine = hessian(model, loss_fn, dataloader=data, cuda=torch.device(device).type == "cuda")
    return {"hvp": lambda v: flat(engine.dataloader_hv_product(split_like(v, model))[1])}, engine


def eigenthings_products(model, loss_fn, data, device):
    from hessian_eigenthings import GGNOperator, HessianOperator
    from hessian_eigenthings.loss_fns.standard import supervised_forward, supervised_loss, supervised_loss_of_output

    # uses the model in whatever mode it is (eval here); averages batches with equal weight
    H = HessianOperator(model, data, supervised_loss(loss_fn))
    G = GGNOperator(model, data, supervised_forward, supervised_loss_of_output(loss_fn))
    return {"hvp": H.matvec, "ggn": G.matvec}, None


def curvlinops_products(model, loss_fn, data, device):
    from curvlinops import GGNLinearOperator, HessianLinearOperator

    # calls model(X) in whatever mode it is; check_deterministic=True would reject train-mode BatchNorm
    params = [p for p in model.parameters() if p.requires_grad]
    H = HessianLinearOperator(model, loss_fn, params, data, check_deterministic=False)
    G = GGNLinearOperator(model, loss_fn, params, data, check_deterministic=False)
    return {"hvp": lambda v: H @ v, "ggn": lambda v: G @ v}, None


PEERS = {"pyhessian": pyhessian_products, "hessian-eigenthings": eigenthings_products, "curvlinops": curvlinops_products}


# ---- the measurements -----------------------------------------------------------------------------

def curvwidgets_operators(model, loss_fn, data) -> Dict[str, object]:
    ops = {}
    for kind in ("Hessian", "GGN"):
        ops[kind] = getattr(cw, kind)(model, loss_fn, data)
        forced = getattr(cw, kind)(model, loss_fn, data)
        forced.backend = "double-backward"
        ops[kind + " double-backward"] = forced
    return ops


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def products_to_tolerance(estimates: List[float], reference: float) -> Optional[int]:
    """First number of products after which the estimate is within TOL of ``reference``."""
    for count, value in enumerate(estimates, start=1):
        if abs(value - reference) <= TOL * abs(reference):
            return count
    return None


def eigenvalue_section(H, model, loss_fn, data, device, args) -> dict:
    sync(device)
    start = time.perf_counter()
    run = cw.lanczos(H, steps=args.lanczos_steps, seed=0)  # timed once: it is lanczos_steps products
    sync(device)
    seconds = time.perf_counter() - start
    ritz = [float(run.truncate(k).ritz_values[0, -1]) for k in range(1, args.lanczos_steps + 1)]
    reference, source = ritz[-1], f"float32 Lanczos, {args.lanczos_steps} steps"
    if args.float64_reference:
        double = copy.deepcopy(model).double()
        data64 = [(x.double(), y) for x, y in data]
        long = cw.lanczos(cw.Hessian(double, loss_fn, data64), steps=args.lanczos_steps, seed=0)
        reference, source = float(long.ritz_values[0, -1]), f"float64 Lanczos, {args.lanczos_steps} steps"
    out = {"lanczos_seconds": seconds, "reference": reference, "reference_source": source,
           "lanczos_change_last_10_steps": abs(ritz[-1] - ritz[-11]) / abs(ritz[-1]) if len(ritz) > 10 else None,
           "lanczos_products": products_to_tolerance(ritz, reference), "lanczos_ritz": ritz}
    try:
        from pyhessian import hessian
    except ImportError as error:
        return {**out, "pyhessian_note": f"not run: {error}"}
    engine = hessian(model, loss_fn, dataloader=data, cuda=torch.device(device).type == "cuda")
    estimates: List[float] = []
    original = engine.dataloader_hv_product

    def counted(v):
        value, product = original(v)
        estimates.append(value)
        return value, product

    engine.dataloader_hv_product = counted
    torch.manual_seed(0)
    top, _ = engine.eigenvalues(maxIter=args.power_iters, tol=0.0)  # tol=0: run every iteration, keep the trace
    stopped = next((i + 1 for i in range(1, len(estimates))
                    if abs(estimates[i] - estimates[i - 1]) / (abs(estimates[i - 1]) + 1e-6) < TOL), None)
    model.zero_grad(set_to_none=True)
    return {**out, "power_products": products_to_tolerance(estimates, reference), "power_estimates": estimates,
            "power_own_stop_tol1e-3": stopped,
            "power_own_stop_error": abs(estimates[stopped - 1] - reference) / abs(reference) if stopped else None}


def bench_model(name: str, model: nn.Module, data, device, args) -> dict:
    loss_fn = nn.CrossEntropyLoss()
    model.eval()
    ops = curvwidgets_operators(model, loss_fn, data)
    H = ops["Hessian"]
    v = torch.randn(H.dim, generator=torch.Generator().manual_seed(1)).to(device)
    jobs: Dict[str, Callable[[], object]] = {"gradient": lambda: full_gradient(model, loss_fn, data)}
    full_gradient(model, loss_fn, data)  # warm-up
    reference = {}
    for label, op in ops.items():
        reference[label] = op @ v  # also fixes the default backend
        jobs[f"curvwidgets {label}"] = lambda op=op: op @ v
    result = {"dim": H.dim, "backend": {k: op.backend for k, op in ops.items()},
              "fallback_reason": H.fallback_reason, "agreement": {}, "notes": {}}
    engines = []
    for peer, make in PEERS.items():
        try:
            products, engine = make(model, loss_fn, data, device)
        except ImportError as error:
            result["notes"][peer] = f"skipped: {error}"
            print(f"  [{peer} does not import: {error}]")
            continue
        engines.append(engine)
        for kind, product in products.items():
            target = reference["Hessian" if kind == "hvp" else "GGN"]
            result["agreement"][f"{peer} {kind}"] = relative_difference(product(v), target)
            jobs[f"{peer} {kind}"] = lambda product=product: product(v)
        model.zero_grad(set_to_none=True)  # PyHessian leaves graph-carrying .grad behind
    for label in ("Hessian double-backward", "GGN double-backward"):
        result["agreement"][f"curvwidgets {label}"] = relative_difference(reference[label], reference[label.split()[0]])
    print(f"  load average before timing: {os.getloadavg()}")
    times = time_round_robin(jobs, args.repeats, device)
    print(f"  load average after timing:  {os.getloadavg()}")
    model.zero_grad(set_to_none=True)
    best = {k: min(t) for k, t in times.items()}
    result.update(times=times, best=best, ratio={k: t / best["gradient"] for k, t in best.items()})
    if not args.skip_eigen:
        result["eigen"] = eigen = eigenvalue_section(H, model, loss_fn, data, device, args)
        result["ratio"][f"curvwidgets lanczos {args.lanczos_steps} steps (1 run)"] = eigen["lanczos_seconds"] / best["gradient"]
    return result


def report(name: str, r: dict) -> None:
    print(f"\n== {name}: P = {r['dim']}, backends {r['backend']}, t_grad = {r['best']['gradient']:.3f} s")
    for key, ratio in r["ratio"].items():
        print(f"  {key:44s} {ratio:7.2f} x t_grad")
    for key, diff in r["agreement"].items():
        print(f"  agreement {key:36s} {diff:.2e}  {'ok' if diff <= AGREE else 'FAILS 1e-4'}")
    if "eigen" in r:
        e = r["eigen"]
        print(f"  top eigenvalue {e['reference']:.6g} ({e['reference_source']}); products to {TOL:g}: "
              f"lanczos {e['lanczos_products']}, pyhessian power iteration {e.get('power_products')} "
              f"(its own tol={TOL:g} stop after {e.get('power_own_stop_tol1e-3')} products, "
              f"error there {e.get('power_own_stop_error')})")


def count_flops(model, data, device) -> Dict[str, float]:
    """Floating-point operations of one full-data product of each kind, as multiples of a gradient's.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
    convolutions, which dominate these models); independent of machine load, so
    it tells how far a timing ratio is from what the arithmetic allows.
    """
    from torch.utils.flop_counter import FlopCounterMode

    loss_fn = nn.CrossEntropyLoss()
    jobs: Dict[str, Callable[[], object]] = {"gradient": lambda: full_gradient(model, loss_fn, data)}
    for label, op in curvwidgets_operators(model, loss_fn, data).items():
        v = torch.randn(op.dim, device=device)
        op @ v  # fixes the backend outside the counter
        jobs[f"curvwidgets {label} ({op.backend})"] = lambda op=op, v=v: op @ v
    v = torch.randn(sum(p.numel() for p in model.parameters() if p.requires_grad), device=device)
    for peer, make in PEERS.items():
        try:
            products, _ = make(model, loss_fn, data, device)
        except ImportError as error:
            print(f"  [{peer} does not import: {error}]")
            continue
        for kind, product in products.items():
            jobs[f"{peer} {kind}"] = lambda product=product: product(v)
    flops: Dict[str, Optional[float]] = {}
    for name, job in jobs.items():
        try:
            with FlopCounterMode(display=False) as counter:
                job()
            flops[name] = float(counter.get_total_flops())
        except RuntimeError as error:  # the counter's module hooks clash with some autograd.grad calls
            print(f"  [{name} not countable: {str(error).splitlines()[0]}]")
            flops[name] = None
        model.zero_grad(set_to_none=True)
    return {name: count and count / flops["gradient"] for name, count in flops.items()}


def profile(model, data, device) -> None:
    """Where the time of one default-backend and one double-backward Hessian product goes."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    loss_fn = nn.CrossEntropyLoss()
    for kind in ("Hessian", "GGN"):
        for label, op in curvwidgets_operators(model, loss_fn, data).items():
            if not label.startswith(kind):
                continue
            v = torch.randn(op.dim, device=device)
            op @ v
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                op @ v
            print(f"\n--- {label} ({op.backend}) ---")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: 32 samples, narrow models, 1 repeat")
    parser.add_argument("--json", default=None, help="write every timing and result here")
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (best is kept); default 3, 1 with --quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="resnet20,vgg")
    parser.add_argument("--lanczos-steps", type=int, default=None, help="Lanczos run timed and used in section 4; default 30")
    parser.add_argument("--power-iters", type=int, default=None, help="PyHessian power iterations; default 40")
    parser.add_argument("--float64-reference", action="store_true", help="reference eigenvalue from a float64 model copy")
    parser.add_argument("--skip-eigen", action="store_true", help="skip section 4")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables instead of benchmarking")
    parser.add_argument("--flops", action="store_true", help="count floating-point operations instead of timing")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.lanczos_steps = args.lanczos_steps or (6 if args.quick else 30)
    args.power_iters = args.power_iters or (6 if args.quick else 40)
    samples, batch = (32, 8) if args.quick else (512, 128)
    data = make_data(samples, batch, 0, args.device)
    torch.manual_seed(0)
    models = {"resnet20": lambda: resnet20((4, 8, 16) if args.quick else (16, 32, 64), 1 if args.quick else 3),
              "vgg": lambda: vgg((8, 8, 16, 16) if args.quick else (32, 64, 128, 128))}
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "device": args.device, "samples": samples, "batch": batch, "repeats": args.repeats}
    print(meta)
    results = {"meta": meta}
    for name in args.models.split(","):
        model = with_running_stats(models[name]().to(args.device), data)
        if args.profile:
            profile(model, data, args.device)
            continue
        if args.flops:
            results[name] = {"flops_ratio": count_flops(model, data, args.device)}
            print(f"\n== {name}: floating-point operations as multiples of one gradient's")
            for key, ratio in results[name]["flops_ratio"].items():
                print(f"  {key:60s} {ratio if ratio is None else round(ratio, 2)}")
            continue
        print(f"\n{name} ...")
        results[name] = bench_model(name, model, data, args.device, args)
        report(name, results[name])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=str)


if __name__ == "__main__":
    main()

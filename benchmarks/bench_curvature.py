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

``--blocks`` (issue 11) instead times blocks of k = 1, 2, 4, 8 vectors through
``matmat`` on a VGG-style CNN with BatchNorm (eval) and max pooling and on
PreResNet-20, 256 samples in one batch: the cost per vector as a ratio to one
gradient, for the operators of this tree ("after") and of ``--baseline``
("before", loaded from git beside them), forward-mode backends pinned, plus
this tree's double backward. ``--loss-stats`` times ``cw.loss_stats`` on the
embedded digits with the 57k-parameter SmallCNN, before and after, each in a
fresh process (seconds and peak resident memory).

Every timing is the best of ``--repeats``; the methods are timed round-robin
in this one process so that a change in machine load hits them all alike.
Nothing is asserted. From the repository root::

    PYTHONPATH=. python benchmarks/bench_curvature.py --quick
    PYTHONPATH=. python benchmarks/bench_curvature.py --json benchmarks/results/curvature_cpu.json
    PYTHONPATH=. python benchmarks/bench_curvature.py --device cuda --json benchmarks/results/curvature_gpu.json
    PYTHONPATH=. python benchmarks/bench_curvature.py --blocks --repeats 2
    PYTHONPATH=. python benchmarks/bench_curvature.py --loss-stats
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
import types
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

import curvwidgets as cw
from curvwidgets._machine import cpu_model

TOL = 1e-3  # eigenvalue accuracy of section 4
AGREE = 1e-4  # agreement required of every product
BASELINE = "4704c06"  # --blocks / --loss-stats "before": the curvature operators and loss_stats before issue 11
PLANS_BASELINE = "02e85d1"  # --plans "before": the operators before measured plans (issue 18)
BLOCK_SIZES = (1, 2, 4, 8)
#: Per-vector arithmetic of a block of k products, in gradients (counted with --flops, benchmarks/README.md):
#: an HVP block shares one gradient and adds two per vector (a tangent through the forward and the backward pass);
#: a GGN block shares the forward pass (1/3) and adds a Jacobian- and a vector-Jacobian product (2/3 each) per vector.
FLOP_FLOORS = {"HVP": lambda k: 2 + 1 / k, "GGN": lambda k: 4 / 3 + 1 / (3 * k)}


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


def vgg_bn(widths=(32, 64, 128, 128), classes: int = 10) -> nn.Module:
    """The VGG-style CNN of :func:`vgg` with a BatchNorm between each convolution and its ReLU."""
    layers: List[nn.Module] = []
    cin = 3
    for width in widths:
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
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


# ---- blocks of vectors and loss_stats, before and after issue 11 ------------------------------------

def baseline_module(path: str, name: str, commit: str, replace=()) -> types.ModuleType:
    """The package file ``path`` as it was at ``commit`` (``git show``), loaded as module ``name``.

    It imports its siblings relatively from the current package; ``replace``
    rewrites ``(old, new)`` pieces of its source first (to import another
    baseline module instead of a current one).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "-C", root, "show", f"{commit}:{path}"], capture_output=True, text=True,
                            check=True).stdout
    for old, new in replace:
        source = source.replace(old, new)
    module = types.ModuleType(name)
    module.__package__ = "curvwidgets.curvature"
    sys.modules[name] = module
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def baseline_operators(commit: str) -> types.ModuleType:
    return baseline_module("curvwidgets/curvature/operators.py", "curvwidgets.curvature._baseline_operators", commit)


def bench_blocks(model: nn.Module, data, device, args) -> dict:
    """Per-vector cost of k-vector products as a ratio to one gradient, round-robin in this process."""
    loss_fn = nn.CrossEntropyLoss()
    before = baseline_operators(args.baseline)
    ops = {}
    for kind, label in (("Hessian", "HVP"), ("GGN", "GGN")):
        for version, module, backend in (("before", before, None), ("after", cw, None),
                                         ("after, double backward", cw, "double-backward")):
            cls = getattr(module, kind)
            ops[f"{label} {version}"] = cls(model, loss_fn, data, backend=backend or cls.preferred_backend)
    dim = ops["HVP after"].dim
    generator = torch.Generator().manual_seed(2)
    blocks = {k: torch.randn(dim, k, generator=generator).to(device) for k in BLOCK_SIZES}
    full_gradient(model, loss_fn, data)  # warm-up
    jobs: Dict[str, Callable[[], object]] = {"gradient": lambda: full_gradient(model, loss_fn, data)}
    agreement = {}
    for label, op in ops.items():
        products = op @ blocks[BLOCK_SIZES[-1]]  # warm-up
        singles = torch.stack([op.matvec(column) for column in blocks[BLOCK_SIZES[-1]].T], dim=1)
        agreement[f"{label}: block vs single"] = relative_difference(products, singles)
        if label.endswith("before"):
            reference = products
        else:
            agreement[f"{label}: vs before"] = relative_difference(products, reference)
        for k in BLOCK_SIZES:
            jobs[f"{label} k={k}"] = lambda op=op, k=k: op @ blocks[k]
    load = [os.getloadavg()]
    times = time_round_robin(jobs, args.repeats, device)
    load.append(os.getloadavg())
    model.zero_grad(set_to_none=True)
    best = {name: min(t) for name, t in times.items()}
    per_vector = {label: {k: best[f"{label} k={k}"] / k / best["gradient"] for k in BLOCK_SIZES} for label in ops}
    return {"dim": dim, "t_grad": best["gradient"], "per_vector_ratio": per_vector, "agreement": agreement,
            "flops_per_vector_ratio": block_flops(ops, blocks, lambda: full_gradient(model, loss_fn, data)),
            "backends": {label: op.backend for label, op in ops.items()}, "load_average": load, "times": times}


def block_flops(ops: Dict[str, object], blocks: Dict[int, torch.Tensor], gradient: Callable[[], object]) -> dict:
    """Floating-point operations per vector of the "after" blocks of 1 and 8 vectors, as multiples of a gradient's."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(job: Callable[[], object]) -> float:
        with FlopCounterMode(display=False) as counter:
            job()
        return float(counter.get_total_flops())

    reference = flops(gradient)
    return {label: {k: flops(lambda: op @ blocks[k]) / k / reference for k in (1, BLOCK_SIZES[-1])}
            for label, op in ops.items() if "after" in label}


def full_res_conv(classes: int = 10) -> nn.Module:
    """Conv 16-32-64 with two full-resolution convolutions, BatchNorm (eval): issue 18's third model."""
    layers, cin = [], 3
    for index, width in enumerate((16, 16, 32, 64)):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        if index >= 1:  # the first two convolutions run at 32 x 32
            layers.append(nn.MaxPool2d(2))
        cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def plan_models(quick: bool) -> Dict[str, Callable[[], nn.Module]]:
    """The models of issue 18's table (narrow ones with ``--quick``)."""
    import torchvision

    if quick:
        return {"vgg_bn": lambda: vgg_bn((8, 8, 16, 16)), "conv_full_res": full_res_conv}
    return {"vgg_bn": vgg_bn, "preresnet20": lambda: cw.models.create("PreResNet20"),
            "conv_full_res": full_res_conv, "resnet18": lambda: torchvision.models.resnet18(num_classes=10)}


def bench_plans(model: nn.Module, data, device, args) -> dict:
    """Per-vector cost of blocks of k = 1, 2, 4, 8 before (``--baseline``), as a loop of singles, and planned.

    "loop": this tree with ``vector_chunk=1`` (its backend timed); "after":
    the default (``vector_chunk="auto"``, ``backend="auto"``): its plan is
    timed at its first product of each width, on a slice of the first batch.
    That timing's cost (``Plan.cost``) is given as a fraction of one product
    of the block (the best of the later ones); the rest as ratios to one gradient.
    """
    loss_fn = nn.CrossEntropyLoss()
    before = baseline_operators(args.baseline)
    generator = torch.Generator().manual_seed(2)
    result = {"per_vector_ratio": {}, "plans": {}, "planning_cost": {}, "first_product": {}, "agreement": {}}
    for kind, label in (("Hessian", "HVP"), ("GGN", "GGN")):
        ops = {variant: {} for variant in ("before", "loop", "after")}
        jobs: Dict[str, Callable[[], object]] = {"gradient": lambda: full_gradient(model, loss_fn, data)}
        for k in BLOCK_SIZES:
            ops["before"][k] = getattr(before, kind)(model, loss_fn, data)
            ops["loop"][k] = getattr(cw, kind)(model, loss_fn, data, vector_chunk=1)
            ops["after"][k] = getattr(cw, kind)(model, loss_fn, data)
        blocks = {k: torch.randn(ops["after"][1].dim, k, generator=generator).to(device) for k in BLOCK_SIZES}
        for k in BLOCK_SIZES:
            for variant in ops:
                op = ops[variant][k]
                sync(device)
                began = time.perf_counter()
                products = op @ blocks[k]  # the first product: the plan is timed here
                sync(device)
                first = time.perf_counter() - began
                if variant == "after":
                    result["planning_cost"][f"{label} k={k}"] = op.plan.cost
                    result["first_product"][f"{label} k={k}"] = first
                    result["plans"][f"{label} k={k}"] = op.plan.to_meta()
                    result["agreement"][f"{label} k={k}: after vs before"] = relative_difference(products, reference)
                elif variant == "before":
                    reference = products
                jobs[f"{label} {variant} k={k}"] = lambda op=op, k=k: op @ blocks[k]
        times = time_round_robin(jobs, args.repeats, device)
        best = {name: min(t) for name, t in times.items()}
        result["per_vector_ratio"][label] = {variant: {k: best[f"{label} {variant} k={k}"] / k / best["gradient"]
                                                       for k in BLOCK_SIZES} for variant in ops}
        for k in BLOCK_SIZES:
            key = f"{label} k={k}"
            one = best[f"{label} after k={k}"]
            result["planning_cost"][key] /= one  # in products of the block
        result.setdefault("t_grad", best["gradient"])
    result["dim"] = ops["after"][1].dim
    result["load_average"] = [round(load, 2) for load in os.getloadavg()]
    return result


def plan_label(plan: dict) -> str:
    """``forx8``: backend, vectors per pass, and ``/8M`` where the samples per pass follow a timed budget."""
    budget = plan["pass_bytes"]
    return (plan["backend"].split("-")[0][:3] + "x" + str(plan["vectors_per_pass"])
            + (f"/{budget >> 20}M" if budget not in (None, cw.curvature.operators.CPU_PASS_BYTES) else ""))


def report_plans(name: str, r: dict) -> None:
    print(f"\n== {name}: P = {r['dim']}, t_grad = {r['t_grad']:.3f} s, load average {r['load_average']}; "
          "per vector / t_grad")
    print(f"  {'':22s}" + "".join(f"   k={k:<3d}" for k in BLOCK_SIZES) + "   plan chosen (k = 1, 2, 4, 8)")
    for label, variants in r["per_vector_ratio"].items():
        for variant, ratios in variants.items():
            plans = ", ".join(plan_label(r["plans"][f"{label} k={k}"]) for k in BLOCK_SIZES)
            print(f"  {label + ' ' + variant:22s}" + "".join(f"{ratios[k]:8.2f}" for k in BLOCK_SIZES)
                  + (f"   {plans}" if variant == "after" else ""))
    for label, floor in FLOP_FLOORS.items():
        print(f"  {label + ' FLOP floor':22s}" + "".join(f"{floor(k):8.2f}" for k in BLOCK_SIZES))
        after = r["per_vector_ratio"][label]["after"]
        print(f"  {label + ' after / floor':22s}" + "".join(f"{after[k] / floor(k):8.2f}" for k in BLOCK_SIZES)
              + "   after / loop: " + ", ".join(f"{after[k] / r['per_vector_ratio'][label]['loop'][k]:.2f}"
                                                for k in BLOCK_SIZES))
    print("  planning, in products of the block: " + ", ".join(f"{key} {cost:.2f}"
                                                             for key, cost in r["planning_cost"].items()))


def report_blocks(name: str, r: dict) -> None:
    print(f"\n== {name}: P = {r['dim']}, t_grad = {r['t_grad']:.3f} s, load average {r['load_average']}")
    print(f"  per vector / t_grad{'':27s}" + "".join(f"   k={k:<3d}" for k in BLOCK_SIZES))
    for label, ratios in r["per_vector_ratio"].items():
        print(f"  {label:46s}" + "".join(f"{ratios[k]:8.2f}" for k in BLOCK_SIZES))
    for key, diff in r["agreement"].items():
        print(f"  agreement {key:44s} {diff:.1e}")
    for label, ratios in r["flops_per_vector_ratio"].items():
        print(f"  FLOPs per vector / gradient's, {label:24s} " + ", ".join(f"k={k}: {v:.2f}" for k, v in ratios.items()))


def loss_stats_child(version: str, commit: str) -> None:
    """Run ``loss_stats`` once on the digits with SmallCNN (this process only); print seconds and memory as JSON."""
    if version == "before":
        baseline_operators(commit)
        stats = baseline_module("curvwidgets/curvature/stats.py", "curvwidgets.curvature._baseline_stats", commit,
                                replace=[("from .operators import", "from ._baseline_operators import")])
        loss_stats = stats.loss_stats
    else:
        loss_stats = cw.loss_stats
    torch.manual_seed(0)
    model = cw.models.create("SmallCNN")
    data = cw.data.load("digits", augment=False).evaluation_loader("train")
    events = []
    resident_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    statistics = loss_stats(model, nn.CrossEntropyLoss(), data, progress=events.append)
    seconds = time.perf_counter() - start
    print(json.dumps({"version": version, "seconds": seconds, "events": len(events),
                      "peak_resident_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "peak_resident_mb_before_call": resident_before, "statistics": statistics}))


def bench_loss_stats(args) -> dict:
    """``loss_stats`` before and after, each once in a fresh process (peak memory is per process)."""
    results = {"load_average": [os.getloadavg()]}
    for version in ("before", "after"):
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--loss-stats-child", version,
                                "--baseline", args.baseline], capture_output=True, text=True, check=True)
        results[version] = json.loads(child.stdout.strip().splitlines()[-1])
        results["load_average"].append(os.getloadavg())
        r = results[version]
        print(f"  loss_stats {version:6s}: {r['seconds']:7.1f} s, peak resident {r['peak_resident_mb']:6.0f} MB "
              f"({r['peak_resident_mb_before_call']:.0f} MB before the call), {r['events']} progress events")
    statistics = results["before"]["statistics"], results["after"]["statistics"]
    results["largest relative difference"] = max(abs(a - statistics[0][key]) / max(abs(statistics[0][key]), 1e-300)
                                                 for key, a in statistics[1].items())
    print(f"  load average {results['load_average']}; largest relative difference of a statistic: "
          f"{results['largest relative difference']:.1e}")
    return results


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
    parser.add_argument("--blocks", action="store_true", help="per-vector cost of k-vector blocks, before and after")
    parser.add_argument("--plans", action="store_true", help="issue 18: blocks before, as a loop of singles, and "
                                                             "with the measured plan, on four models")
    parser.add_argument("--plan-samples", type=lambda text: {k: int(v) for k, v in (p.split("=") for p in text.split(","))},
                        default={}, help="samples (one batch) per model of --plans, e.g. resnet18=64 (default 256)")
    parser.add_argument("--plan-models", default=None, help="comma-separated subset of --plans' models")
    parser.add_argument("--loss-stats", action="store_true", help="loss_stats on digits/SmallCNN, before and after")
    parser.add_argument("--loss-stats-child", choices=("before", "after"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default=None, help=f"git commit of 'before' (default {BASELINE}; "
                                                         f"{PLANS_BASELINE} with --plans)")
    args = parser.parse_args()
    if args.loss_stats_child:
        loss_stats_child(args.loss_stats_child, args.baseline)
        return
    args.baseline = args.baseline or (PLANS_BASELINE if args.plans else BASELINE)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.lanczos_steps = args.lanczos_steps or (6 if args.quick else 30)
    args.power_iters = args.power_iters or (6 if args.quick else 40)
    samples, batch = (32, 8) if args.quick else (512, 128)
    data = make_data(samples, batch, 0, args.device)
    torch.manual_seed(0)
    models = {"resnet20": lambda: resnet20((4, 8, 16) if args.quick else (16, 32, 64), 1 if args.quick else 3),
              "vgg": lambda: vgg((8, 8, 16, 16) if args.quick else (32, 64, 128, 128))}
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
            "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "device": args.device, "samples": samples, "batch": batch, "repeats": args.repeats}
    if args.blocks or args.plans:
        meta.update(samples=256, batch=256, baseline=args.baseline, cpu=cpu_model())
    print(meta)
    results = {"meta": meta}
    if args.loss_stats:
        results["loss_stats"] = bench_loss_stats(args)
    if args.blocks:
        block_data = make_data(256, 256, 0, args.device)
        block_models = {"vgg_bn": lambda: vgg_bn((8, 8, 16, 16) if args.quick else (32, 64, 128, 128)),
                        "preresnet20": lambda: cw.models.create("PreResNet20")}
        for name, build in block_models.items():
            torch.manual_seed(0)
            model = with_running_stats(build().to(args.device), block_data)
            results[f"blocks {name}"] = bench_blocks(model, block_data, args.device, args)
            report_blocks(name, results[f"blocks {name}"])
    if args.plans:
        for name, build in plan_models(args.quick).items():
            if args.plan_models and name not in args.plan_models.split(","):
                continue
            samples = args.plan_samples.get(name, 256)
            plan_data = make_data(samples, samples, 0, args.device)
            torch.manual_seed(0)
            model = with_running_stats(build().to(args.device), plan_data)
            results[f"plans {name}"] = {"samples": samples, **bench_plans(model, plan_data, args.device, args)}
            report_plans(name, results[f"plans {name}"])
    for name in ([] if args.blocks or args.loss_stats or args.plans else args.models.split(",")):
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

#!/usr/bin/env python
"""Products and time of ``cw.eigenpairs`` and ``cw.estimate_trace`` against ARPACK, fixed-step Lanczos and peers.

Two operators of the same size ``P``, each with an exact reference:

``hessian``
    The float64 Hessian of a small MLP (64 - h - h - 10, ReLU) trained briefly
    with ``cw.train`` on the embedded ``digits`` (the 8 x 8 digits, recovered
    from their 32 x 32 upsampling by 4 x 4 average pooling), on ``--samples``
    training images, as ``cw.Hessian``. Its exact spectrum and trace come from
    the dense ``P x P`` matrix (products on unit vectors, symmetrised) and
    ``numpy.linalg.eigvalsh``.
``synthetic``
    A dense ``Q diag(lambda) Q^T`` (``Q`` Haar-random) whose spectrum is given
    by a formula shaped like the Hessian's: a power-law top
    ``10 / (1 + i/2)^1.4`` for 45% of the eigenvalues, 25% exact zeros, and a
    small negative tail ``-0.11 / (1 + j/20)^1.5``.

``eigen``: the top 3 eigenvalues to ``--tols`` (1e-3 and 1e-6) relative
accuracy. ``cw.eigenpairs(k=3, tol=)`` (default ``max_basis`` and 20) against
``scipy.sparse.linalg.eigsh(k=3, which="LA", tol=)`` (its default ``ncv`` and
40) on the same counted operator, fixed-step ``cw.lanczos`` (the steps after
which the top 3 Ritz values are within the tolerance of the exact
eigenvalues, and the steps after which its own residual estimates say so),
and the peers where they import: PyHessian ``eigenvalues(top_n=3)`` (power
iteration with deflation; default and tighter ``tol``), hessian-eigenthings
``lanczos(k=3)`` (default, and ``max_iter`` = the steps cw.lanczos needed),
curvlinops' ``HessianLinearOperator`` under ``eigsh``. Every row gives the
products, the achieved error ``max_i |theta_i - lambda_i| / |lambda_i|`` over
the top 3, and the time.

``trace``: ``cw.estimate_trace`` with each method to ``--trace-tol`` (1e-3)
relative standard error within ``--trace-cap`` products (default ``P``: the
exact trace costs ``P`` products on unit vectors), and at fixed budgets
(``--budgets``, 100) over ``--seeds`` seeds (10) the RMS relative error at
equal products against PyHessian's Hutchinson ``trace()`` and curvlinops'
``hutchinson_trace``, ``hutchpp_trace`` and ``xtrace`` (and
hessian-eigenthings' ``hutchinson`` / ``hutch_plus_plus``).

Products are counted by wrapping each method's operator (deterministic for a
seed); times are the best of ``--repeats`` (``time.perf_counter``), taken
side by side in this one process (nothing is asserted about them). Peers are
optional (``benchmarks/requirements-peers.txt``); each that does not import
is skipped with the reason. From the repository root::

    PYTHONPATH=. python benchmarks/bench_estimates.py --quick
    PYTHONPATH=. python benchmarks/bench_estimates.py --json benchmarks/results/estimates.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="P = 2410 (hidden 24-24, 512 samples, 10 epochs), 1 repeat, lanczos 300 steps")
    parser.add_argument("--json", default=None, help="also write every result and every repeat here")
    parser.add_argument("--sections", default="eigen,trace", help="comma-separated subset of: eigen, trace")
    parser.add_argument("--operators", default="hessian,synthetic", help="comma-separated subset of: hessian, synthetic")
    parser.add_argument("--hidden", default=None, help="hidden widths of the MLP; default 32,32 (24,24 quick)")
    parser.add_argument("--samples", type=int, default=None, help="training images in the Hessian; default 1437 (512 quick)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs; default 20 (10 quick)")
    parser.add_argument("--tols", default="1e-3,1e-6", help="eigenvalue accuracies")
    parser.add_argument("--which", default="largest,smallest", help="which end(s) of the spectrum: largest, smallest")
    parser.add_argument("--eigen-seeds", type=int, default=None, help="start vectors per eigen method; default 3 (1 quick)")
    parser.add_argument("--all-bases", action="store_true",
                        help="with --quick, also max_basis = ncv = 8 for the smallest eigenvalues (over 2000 products)")
    parser.add_argument("--lanczos-steps", type=int, default=None, help="length of the fixed-step Lanczos run; default 400 (300 quick)")
    parser.add_argument("--trace-tol", type=float, default=1e-3, help="relative standard error asked of estimate_trace")
    parser.add_argument("--trace-cap", type=int, default=None, help="max_products with --trace-tol; default P")
    parser.add_argument("--tol-seeds", type=int, default=None, help="seeds of the --trace-tol runs; default 3 (1 quick)")
    parser.add_argument("--budgets", default=None, help="fixed product budgets of the trace comparison; default 100,400 (100 quick)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the fixed-budget trace comparison")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (best kept); default 3 (1 quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch and BLAS (set before they load; these operators are small, and one "
                             "thread is far faster than two on a loaded 2-core machine); 0: library default")
    parser.add_argument("--no-peers", action="store_true", help="skip PyHessian, hessian-eigenthings and curvlinops")
    parser.add_argument("--seed", type=int, default=0, help="seed of training, of the synthetic matrix and of start vectors")
    args = parser.parse_args(argv)
    q = args.quick
    args.hidden = tuple(int(h) for h in (args.hidden or ("24,24" if q else "32,32")).split(","))
    args.samples = args.samples or (512 if q else 1437)
    args.epochs = args.epochs or (10 if q else 20)
    args.tols = [float(t) for t in args.tols.split(",")]
    args.eigen_seeds = args.eigen_seeds or (1 if q else 3)
    args.lanczos_steps = args.lanczos_steps or (300 if q else 400)
    args.tol_seeds = args.tol_seeds or (1 if q else 3)
    args.budgets = [int(b) for b in (args.budgets or ("100" if q else "100,400")).split(",")]
    args.repeats = args.repeats or (1 if q else 3)
    args.sections = [s for s in args.sections.split(",") if s]
    args.which = [s for s in args.which.split(",") if s]
    for s in args.which:
        if s not in ("largest", "smallest"):
            parser.error(f"--which takes largest and/or smallest; got {s!r}")
    args.operators = [s for s in args.operators.split(",") if s]
    for s in args.sections:
        if s not in ("eigen", "trace"):
            parser.error(f"unknown section {s!r}")
    for s in args.operators:
        if s not in ("hessian", "synthetic"):
            parser.error(f"unknown operator {s!r}")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse.linalg as sla  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import curvwidgets as cw  # noqa: E402
from curvwidgets._machine import cpu_model  # noqa: E402

K = 3  # eigenpairs wanted
CW_METHODS = ("hutchinson", "hutch++", "xtrace")


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def load() -> Tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


# ---- operators ----------------------------------------------------------------------------------

class Counted(cw.LinearOperator):
    """A float64 CPU operator that counts its products (one per vector, a block counting its columns)."""

    def __init__(self, matvec: Callable, matmat: Callable, dim: int):
        self.dim, self.dtype, self.device, self.symmetric = dim, torch.float64, torch.device("cpu"), True
        self._matvec, self._matmat = matvec, matmat
        self.count = 0

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        self.count += 1
        return self._matvec(vector)

    def matmat(self, block: torch.Tensor) -> torch.Tensor:
        self.count += block.shape[1]
        return self._matmat(block)

    def scipy(self) -> sla.LinearOperator:
        def matvec(x: np.ndarray) -> np.ndarray:
            return self.matvec(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))).numpy()

        return sla.LinearOperator((self.dim, self.dim), matvec=matvec, dtype=np.float64)


class CountedTensorOp:
    """``A @ X`` for torch blocks or vectors with ``shape``/``dtype``/``device`` (what curvlinops' estimators use), counted."""

    def __init__(self, product: Callable, dim: int):
        self.product, self.shape, self.dtype, self.device = product, (dim, dim), torch.float64, torch.device("cpu")
        self.count = 0

    def __matmul__(self, block: torch.Tensor) -> torch.Tensor:
        self.count += 1 if block.ndim == 1 else block.shape[1]
        return self.product(block)


class Quadratic(nn.Module):
    """A 'model' whose loss ``x^T A x / 2`` has the Hessian ``A``: how PyHessian is run on the synthetic matrix."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.matrix = matrix
        self.x = nn.Parameter(torch.full((matrix.shape[0],), 0.1, dtype=matrix.dtype))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.x

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * output @ (self.matrix @ output)


class Problem:
    """One operator: its counted product, exact top eigenvalues and trace, and how each peer builds it."""

    def __init__(self, name: str, op: Counted, eigenvalues: np.ndarray, model: nn.Module, loss_fn: Callable,
                 data: Tuple[torch.Tensor, torch.Tensor], info: Dict[str, Any]):
        self.name, self.op, self.model, self.loss_fn, self.data, self.info = name, op, model, loss_fn, data, info
        self.eigenvalues = np.sort(eigenvalues)[::-1]  # descending
        self.top = self.eigenvalues[:K]
        self.trace = float(eigenvalues.sum())
        self.dim = op.dim


def gather(loader) -> Tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = zip(*list(loader))
    return torch.cat(inputs), torch.cat(targets)


def pool(x: torch.Tensor) -> torch.Tensor:
    """The 8 x 8 digit from its (3, 32, 32) upsampled, normalised copy: 64 features."""
    return F.avg_pool2d(x[:, :1], 4).flatten(1)


def hessian_problem(args) -> Problem:
    start = time.perf_counter()
    digits = cw.data.load("digits", augment=False)
    inputs, targets = gather(digits.train)
    test_inputs, test_targets = gather(digits.test)
    inputs, test_inputs = pool(inputs), pool(test_inputs)
    torch.manual_seed(args.seed)
    model = cw.models.MLP(input_shape=(64,), hidden=args.hidden)
    batches = list(zip(inputs.split(128), targets.split(128)))
    history = cw.train(model, (batches, [(test_inputs, test_targets)]), epochs=args.epochs,
                       optimizer_kwargs={"lr": 0.05}, seed=args.seed)
    model = model.double().eval()
    trained = time.perf_counter() - start
    data = (inputs[: args.samples].double(), targets[: args.samples])
    loss_fn = nn.CrossEntropyLoss()
    hessian = cw.Hessian(model, loss_fn, [data])
    P = hessian.dim
    log(f"  trained {args.epochs} epochs in {trained:.1f} s (test accuracy {history.rows[-1]['test_top1']:.3f}); "
        f"P = {P}; dense Hessian ...")
    start = time.perf_counter()
    columns = [hessian.matmat(block) for block in torch.eye(P, dtype=torch.float64).split(64, dim=1)]
    dense = torch.cat(columns, dim=1)
    defect = float((dense - dense.T).norm() / dense.norm())
    dense = (dense + dense.T) / 2
    built = time.perf_counter() - start
    start = time.perf_counter()
    eigenvalues = np.linalg.eigvalsh(dense.numpy())
    solved = time.perf_counter() - start
    log(f"  dense Hessian {built:.1f} s (asymmetry {defect:.1e}), eigvalsh {solved:.1f} s")
    op = Counted(hessian.matvec, hessian.matmat, P)
    info = {"P": P, "hidden": list(args.hidden), "samples": args.samples, "epochs": args.epochs,
            "test_accuracy": history.rows[-1]["test_top1"], "train_loss": history.rows[-1]["train_loss"],
            "backend": hessian.backend, "asymmetry_of_dense": defect, "seconds_train": trained,
            "seconds_dense_products": built, "seconds_eigvalsh": solved,
            "trace_of_dense": float(torch.trace(dense)), "negative_eigenvalues": int((eigenvalues < 0).sum())}
    return Problem("hessian", op, eigenvalues, model, loss_fn, data, info)


def synthetic_spectrum(P: int) -> np.ndarray:
    positive, zero = int(0.45 * P), int(0.25 * P)
    top = 10.0 / (1.0 + 0.5 * np.arange(positive)) ** 1.4
    tail = -0.11 / (1.0 + 0.05 * np.arange(P - positive - zero)) ** 1.5
    return np.sort(np.r_[top, np.zeros(zero), tail])


def synthetic_problem(P: int, seed: int) -> Problem:
    start = time.perf_counter()
    eigenvalues = synthetic_spectrum(P)
    generator = torch.Generator().manual_seed(seed + 1)
    q, r = torch.linalg.qr(torch.randn(P, P, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # Haar
    matrix = (q * torch.from_numpy(eigenvalues)) @ q.T
    matrix = (matrix + matrix.T) / 2
    log(f"  synthetic Q diag(lambda) Q^T, P = {P}: {time.perf_counter() - start:.1f} s")
    op = Counted(lambda v: matrix @ v, lambda b: matrix @ b, P)
    quadratic = Quadratic(matrix)
    dummy = (torch.zeros(1, dtype=torch.float64), torch.zeros(1))
    info = {"P": P, "spectrum": "10/(1+i/2)^1.4 (45%), 0 (25%), -0.11/(1+j/20)^1.5 (30%)",
            "negative_eigenvalues": int((eigenvalues < 0).sum())}
    problem = Problem("synthetic", op, eigenvalues, quadratic, quadratic.loss, dummy, info)
    problem.matrix = matrix
    return problem


# ---- peers ----------------------------------------------------------------------------------------

def import_peers(skip: bool) -> Tuple[Dict[str, Any], Dict[str, str]]:
    modules, notes = {}, {}
    for name, module, dist in (("pyhessian", "pyhessian", "pyhessian"),
                               ("hessian-eigenthings", "hessian_eigenthings", "hessian-eigenthings"),
                               ("curvlinops", "curvlinops", "curvlinops-for-pytorch")):
        if skip:
            notes[name] = "skipped: --no-peers"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                modules[name] = importlib.import_module(module)
            try:
                notes[name] = "version " + importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                notes[name] = "version unknown"
        except Exception as error:  # an ImportError, or a peer failing at import under this torch
            notes[name] = f"skipped: {type(error).__name__}: {error}"
        log(f"  {name}: {notes[name]}")
    return modules, notes


@contextlib.contextmanager
def default_float64():
    """PyHessian draws its vectors with ``torch.randn(size)``: in the default dtype, which must match the model's."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


class PyHessianRunner:
    """PyHessian on one batch (it keeps the gradient's graph and differentiates it again per product), counted."""

    def __init__(self, problem: Problem):
        self.module = sys.modules["pyhessian.hessian"]
        self.problem = problem
        self.original = self.module.hessian_vector_product
        self.count = 0
        with default_float64():
            self.engine = self.module.hessian(problem.model, problem.loss_fn, data=problem.data, cuda=False)

    def _counting(self, *a, **k):
        self.count += 1
        return self.original(*a, **k)

    @contextlib.contextmanager
    def counting(self):
        self.count = 0
        self.module.hessian_vector_product = self._counting
        try:
            with default_float64():
                yield
        finally:
            self.module.hessian_vector_product = self.original

    def close(self) -> None:
        self.problem.model.zero_grad(set_to_none=True)


def eigenthings_operator(he, problem: Problem):
    """hessian-eigenthings' own HessianOperator on the Hessian; its LambdaOperator on the synthetic matrix. Counted."""
    if problem.name == "hessian":
        native = he.HessianOperator(problem.model, [problem.data], he.supervised_loss(problem.loss_fn))
        product = native.matvec
    else:
        product = lambda v: problem.matrix @ v  # noqa: E731
    box = {"count": 0}

    def counted(v):
        box["count"] += 1
        return product(v)

    return he.LambdaOperator(counted, problem.dim, dtype=torch.float64), box


def curvlinops_operator(cl, problem: Problem) -> CountedTensorOp:
    """curvlinops' HessianLinearOperator on the Hessian, the tensor itself on the synthetic matrix. Counted."""
    if problem.name == "hessian":
        params = [p for p in problem.model.parameters() if p.requires_grad]
        native = cl.HessianLinearOperator(problem.model, problem.loss_fn, params, [problem.data],
                                          check_deterministic=False)
        return CountedTensorOp(lambda x: native @ x, problem.dim)
    return CountedTensorOp(lambda x: problem.matrix @ x, problem.dim)


# ---- measuring --------------------------------------------------------------------------------------

def relative_error(values: Any, exact: np.ndarray) -> float:
    """``max_i |theta_i - lambda_i| / |lambda_i|`` over the K wanted, both ordered from the wanted end."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    exact = np.asarray(exact, dtype=np.float64)
    if len(values) < K:
        return math.inf
    values = values[::-1][:K] if exact[0] >= exact[-1] else values[:K]  # exact: descending top or ascending bottom
    return float(np.max(np.abs(values - exact[:K]) / np.abs(exact[:K])))


class Job:
    """One method: ``run()`` returns a dict with at least ``products``; it is repeated, timed, its first result kept."""

    def __init__(self, label: str, run: Callable[[], Dict[str, Any]]):
        self.label, self.run = label, run
        self.result: Optional[Dict[str, Any]] = None
        self.times: List[float] = []
        self.products_per_repeat: List[int] = []
        self.error: Optional[str] = None


def run_jobs(jobs: List[Job], repeats: int) -> List[Dict[str, Any]]:
    """Each job once per round, ``repeats`` rounds; a job that raises is reported, not fatal."""
    for _ in range(repeats):
        for job in jobs:
            if job.error:
                continue
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    start = time.perf_counter()
                    out = job.run()
                    seconds = time.perf_counter() - start
            except Exception as error:  # a peer that fails on this operator
                job.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                log(f"    {job.label}: FAILED {job.error}")
                continue
            job.times.append(seconds)
            job.products_per_repeat.append(out["products"])
            if job.result is None:
                out["warnings"] = sorted({str(w.message)[:160] for w in caught
                                          if issubclass(w.category, RuntimeWarning)})
                job.result = out
    rows = []
    for job in jobs:
        row = {"method": job.label, **(job.result or {}), "error_message": job.error, "times": job.times,
               "seconds": min(job.times) if job.times else None,
               "products_deterministic": len(set(job.products_per_repeat)) <= 1}
        rows.append(row)
    return rows


# ---- eigen section ----------------------------------------------------------------------------------

def counted_run(op, call: Callable[[], Any]) -> Tuple[Any, int]:
    before = op.count
    out = call()
    return out, op.count - before


def start_vector(P: int, seed: int) -> np.ndarray:
    return torch.randn(P, generator=torch.Generator().manual_seed(1000 + seed), dtype=torch.float64).numpy()


def wanted(values: np.ndarray, which: str) -> np.ndarray:
    """The K wanted of ascending ``values``, from the wanted end (largest first / smallest first)."""
    return values[::-1][:K] if which == "largest" else values[:K]


def lanczos_steps_needed(exact: np.ndarray, which: str, tol: float, long_run) -> Dict[str, Optional[int]]:
    """Steps after which the K wanted Ritz values are within ``tol`` of the exact ones (oracle), and after which
    their residual estimates are at most ``tol |theta|`` (what a run could check by itself)."""
    oracle = own = None
    for m in range(K, long_run.steps + 1):
        short = long_run.truncate(m)
        count = short.num_steps[0]
        ritz = wanted(short.nodes(0), which)
        residuals = wanted(short.residual_estimates[0][:count], which)
        if oracle is None and relative_error(ritz, exact) <= tol:
            oracle = m
        if own is None and np.all(residuals <= tol * np.abs(ritz)):
            own = m
        if oracle is not None and own is not None:
            break
    return {"oracle": oracle, "own_residuals": own}


def eigen_section(problem: Problem, peers: Dict[str, Any], args) -> Dict[str, Any]:
    op, P = problem.op, problem.dim
    long_runs = [cw.lanczos(op, args.lanczos_steps, seed=seed) for seed in range(args.eigen_seeds)]
    pyh = PyHessianRunner(problem) if "pyhessian" in peers else None
    he = peers.get("hessian-eigenthings")
    he_op, he_box = eigenthings_operator(he, problem) if he else (None, None)
    cl_scipy = None
    if "curvlinops" in peers and problem.name == "hessian":
        cl_op = curvlinops_operator(peers["curvlinops"], problem)
        cl_scipy = sla.LinearOperator((P, P), dtype=np.float64, matvec=lambda x: (
            cl_op @ torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))).numpy())
        cl_scipy.counter = cl_op
    out: Dict[str, Any] = {}
    for which in args.which:
        log(f"  {which} ...")
        exact = problem.top if which == "largest" else np.sort(problem.eigenvalues)[:K]
        arpack = "LA" if which == "largest" else "SA"
        part: Dict[str, Any] = {"exact": exact.tolist(), "exact_next": (
            problem.eigenvalues[K:K + 3] if which == "largest" else np.sort(problem.eigenvalues)[K:K + 3]).tolist(),
            "load_before": load(), "by_tol": {}}

        def eigenpairs_job(tol, seed, basis=None):
            def run():
                pairs, products = counted_run(op, lambda: cw.eigenpairs(op, k=K, which=which, tol=tol, seed=seed,
                                                                         max_products=20 * P, max_basis=basis))
                return {"products": products, "reported_products": pairs.products, "restarts": pairs.restarts,
                        "converged": pairs.converged, "values": pairs.values.tolist(),
                        "rel_error": relative_error(pairs.values, exact),
                        "max_rel_residual": float(np.max(pairs.relative_residuals))}
            return run

        def eigsh_job(tol, seed, ncv=None, scipy_op=None, counter=None):
            def run():
                target, count = (scipy_op, counter) if scipy_op is not None else (op.scipy(), op)
                before = count.count
                values = sla.eigsh(target, k=K, which=arpack, tol=tol, v0=start_vector(P, seed), ncv=ncv,
                                   maxiter=20 * P, return_eigenvectors=False)
                return {"products": count.count - before, "values": np.sort(values).tolist(),
                        "rel_error": relative_error(values, exact)}
            return run

        def lanczos_job(steps, seed):
            def run():
                result, products = counted_run(op, lambda: cw.lanczos(op, steps, seed=seed))
                return {"products": products, "values": wanted(result.nodes(0), which).tolist(),
                        "rel_error": relative_error(result.nodes(0), exact)}
            return run

        def pyhessian_job(tol, max_iter, seed):
            def run():
                with pyh.counting():
                    torch.manual_seed(seed)
                    values, _ = pyh.engine.eigenvalues(maxIter=max_iter, tol=tol, top_n=K)
                return {"products": pyh.count, "values": sorted(values, reverse=True),
                        "rel_error": relative_error(values, exact)}
            return run

        def eigenthings_job(max_iter, which_he, seed, reorth=None):
            def run():
                he_box["count"] = 0
                result = he.lanczos(he_op, k=K, max_iter=max_iter, which=which_he, seed=seed, reorthogonalize=reorth)
                values = result.eigenvalues.numpy()
                return {"products": he_box["count"], "values": np.sort(values).tolist(),
                        "rel_error": relative_error(values, exact),
                        "own_converged": [bool(c) for c in result.converged]}
            return run

        seeds = range(args.eigen_seeds)
        # defaults, tolerance-independent
        jobs = [Job(f"scipy eigsh default (tol=0, ncv=20), seed {s}", eigsh_job(0.0, s)) for s in seeds]
        if pyh and which == "largest":
            jobs += [Job(f"PyHessian eigenvalues(top_n=3) default (maxIter=100, tol=1e-3), seed {s}",
                         pyhessian_job(1e-3, 100, s)) for s in seeds]
        if he:
            label = "default (max_iter=6, which='LM')" if which == "largest" else "(max_iter=6 default, which='SA')"
            jobs += [Job(f"hessian-eigenthings lanczos(k=3) {label}, seed {s}",
                         eigenthings_job(None, "LM" if which == "largest" else "SA", s)) for s in seeds]
        log(f"    defaults ({len(jobs)} runs) ...")
        part["defaults"] = run_jobs(jobs, args.repeats)
        # max_basis = ncv = 8 restarts hundreds of times at the bottom: left out of --quick there unless --all-bases
        small = which == "largest" or not args.quick or args.all_bases
        for tol in args.tols:
            steps = [lanczos_steps_needed(exact, which, tol, run) for run in long_runs]
            long_basis = any(st["oracle"] is not None and st["oracle"] > 50 for st in steps)
            jobs = []
            for s in seeds:
                jobs += [Job(f"cw.eigenpairs (max_basis=40, default), seed {s}", eigenpairs_job(tol, s)),
                         Job(f"cw.eigenpairs max_basis=20, seed {s}", eigenpairs_job(tol, s, 20))]
                jobs += [Job(f"cw.eigenpairs max_basis=8, seed {s}", eigenpairs_job(tol, s, 8))] if small else []
                jobs += [Job(f"scipy eigsh (ncv=20, default), seed {s}", eigsh_job(tol, s)),
                         Job(f"scipy eigsh ncv=40, seed {s}", eigsh_job(tol, s, 40))]
                jobs += [Job(f"scipy eigsh ncv=8, seed {s}", eigsh_job(tol, s, 8))] if small else []
                m = steps[s]["oracle"]
                if m is not None:
                    jobs.append(Job(f"cw.lanczos {m} steps (oracle), seed {s}", lanczos_job(m, s)))
                    if he:
                        jobs.append(Job(f"hessian-eigenthings lanczos(k=3, which='{arpack}', max_iter={m}), seed {s}",
                                        eigenthings_job(m, arpack, s)))
                        if long_basis:  # its default turns reorthogonalisation off above 50 steps
                            jobs.append(Job(f"hessian-eigenthings same, reorthogonalize=True, seed {s}",
                                            eigenthings_job(m, arpack, s, True)))
                if cl_scipy is not None and which == "largest":
                    jobs.append(Job(f"curvlinops HessianLinearOperator + eigsh (ncv=20), seed {s}",
                                    eigsh_job(tol, s, None, cl_scipy, cl_scipy.counter)))
                if pyh and which == "largest":
                    for factor in (1, 10, 100):
                        jobs.append(Job(f"PyHessian eigenvalues(top_n=3, maxIter=1000, tol={tol / factor:g}), "
                                        f"seed {s}", pyhessian_job(tol / factor, 1000, s)))
            log(f"    tol {tol:g} ({len(jobs)} runs) ...")
            part["by_tol"][tol] = {"lanczos_steps": steps, "rows": run_jobs(jobs, args.repeats)}
        part["load_after"] = load()
        out[which] = part
    if pyh:
        pyh.close()
    return out


# ---- trace section ----------------------------------------------------------------------------------

def trace_section(problem: Problem, peers: Dict[str, Any], args) -> Dict[str, Any]:
    op, P, exact = problem.op, problem.dim, problem.trace
    cap = min(args.trace_cap or P, 20 * P)
    out: Dict[str, Any] = {"exact": exact, "cap": cap, "load_before": load()}

    def cw_job(method, seed, budget, tol=None):
        def run():
            estimate, products = counted_run(op, lambda: cw.estimate_trace(op, method, max_products=budget, tol=tol,
                                                                           seed=seed))
            return {"products": products, "reported_products": estimate.products, "value": estimate.value,
                    "standard_error": estimate.standard_error, "converged": estimate.converged}
        return run

    pyh = PyHessianRunner(problem) if "pyhessian" in peers else None

    def pyhessian_job(seed, max_iter, tol):
        def run():
            with pyh.counting():
                torch.manual_seed(seed)
                samples = pyh.engine.trace(maxIter=max_iter, tol=tol)
            return {"products": pyh.count, "value": float(np.mean(samples)),
                    "standard_error": float(np.std(samples, ddof=1) / math.sqrt(len(samples))) if len(samples) > 1
                    else math.nan}
        return run

    cl = peers.get("curvlinops")
    cl_op = curvlinops_operator(cl, problem) if cl else None

    def curvlinops_job(function, seed, budget):
        def run():
            before = cl_op.count
            torch.manual_seed(seed)
            value = float(function(cl_op, budget))
            return {"products": cl_op.count - before, "value": value, "standard_error": None}
        return run

    he = peers.get("hessian-eigenthings")
    he_op, he_box = eigenthings_operator(he, problem) if he else (None, None)

    def eigenthings_job(method, seed, budget):
        def run():
            he_box["count"] = 0
            if method == "hutchinson":
                result = he.hutchinson(he_op, num_samples=budget, seed=seed)
            else:
                result = he.hutch_plus_plus(he_op, num_matvecs=budget, seed=seed)
            return {"products": he_box["count"], "value": result.estimate, "standard_error": result.stderr}
        return run

    # 1. to a relative standard error, within the cap
    jobs = [Job(f"cw.estimate_trace {m} tol={args.trace_tol:g}, max_products={cap}, seed {s}",
                cw_job(m, s, cap, args.trace_tol)) for s in range(args.tol_seeds) for m in CW_METHODS]
    if pyh:
        jobs += [Job(f"PyHessian trace() default (maxIter=100, tol=1e-3), seed {s}", pyhessian_job(s, 100, 1e-3))
                 for s in range(args.seeds)]
    log(f"  trace to tol ({len(jobs)} runs) ...")
    out["to_tol"] = summarise(run_jobs(jobs, args.repeats), exact)
    # 2. fixed budgets over seeds
    out["budgets"] = {}
    for budget in args.budgets:
        jobs = []
        for s in range(args.seeds):
            jobs += [Job(f"cw.estimate_trace {m}", cw_job(m, s, budget)) for m in CW_METHODS]
            if pyh:
                jobs.append(Job("PyHessian trace(maxIter=B, tol=0) (Hutchinson)", pyhessian_job(s, budget, 0.0)))
            if cl:
                jobs += [Job("curvlinops hutchinson_trace", curvlinops_job(cl.hutchinson_trace, s, budget)),
                         Job("curvlinops hutchpp_trace", curvlinops_job(cl.hutchpp_trace, s, budget - budget % 3)),
                         Job("curvlinops xtrace", curvlinops_job(cl.xtrace, s, budget - budget % 2))]
            if he:
                jobs += [Job("hessian-eigenthings hutchinson", eigenthings_job("hutchinson", s, budget)),
                         Job("hessian-eigenthings hutch_plus_plus", eigenthings_job("hutch++", s, budget))]
        log(f"  trace budget {budget} ({len(jobs)} runs) ...")
        rows = summarise(run_jobs(jobs, args.repeats), exact)
        out["budgets"][budget] = {"runs": rows, "summary": aggregate(rows)}
    if pyh:
        pyh.close()
    out["load_after"] = load()
    return out


def summarise(rows: List[Dict[str, Any]], exact: float) -> List[Dict[str, Any]]:
    for row in rows:
        if row.get("value") is not None:
            row["rel_error"] = abs(row["value"] - exact) / abs(exact)
            se = row.get("standard_error")
            row["rel_standard_error"] = None if se is None else se / abs(row["value"])
    return rows


def aggregate(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per method over seeds: RMS relative error, mean products, mean reported relative SE, 2-SE coverage, time."""
    by: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        by.setdefault(row["method"], []).append(row)
    summary = {}
    for method, group in by.items():
        ok = [r for r in group if r.get("rel_error") is not None]
        if not ok:
            summary[method] = {"runs": 0, "error_message": group[0].get("error_message")}
            continue
        errors = np.array([r["rel_error"] for r in ok])
        ses = [r["rel_standard_error"] for r in ok if r.get("rel_standard_error") is not None]
        covered = [r["rel_error"] <= 2 * r["rel_standard_error"] for r in ok
                   if r.get("rel_standard_error") is not None and math.isfinite(r["rel_standard_error"])]
        summary[method] = {
            "runs": len(ok), "products": float(np.mean([r["products"] for r in ok])),
            "rms_rel_error": float(np.sqrt(np.mean(errors ** 2))), "max_rel_error": float(errors.max()),
            "mean_rel_standard_error": float(np.mean(ses)) if ses else None,
            "within_2se": f"{sum(covered)}/{len(covered)}" if covered else None,
            "median_seconds": float(np.median([r["seconds"] for r in ok])),
        }
    return summary


# ---- report -------------------------------------------------------------------------------------------

def fmt(x: Any, spec: str = ".2e") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec)


def ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.0f}"


def merge_seeds(rows: List[Dict[str, Any]]) -> List[Tuple[str, List[Dict[str, Any]]]]:
    """Rows of the same method over seeds, in first-seen order (the label less its ', seed s')."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["method"].rsplit(", seed ", 1)[0], []).append(row)
    return list(groups.items())


def joined(group: List[Dict[str, Any]], key: str, spec: str = "d") -> str:
    return " / ".join("-" if r.get(key) is None else format(r[key], spec) for r in group)


def report_eigen(name: str, problem: Problem, e: Dict[str, Any]) -> None:
    for which, part in e.items():
        end = "top" if which == "largest" else "bottom"
        print(f"\n### {name}: {end}-{K} eigenvalues (which={which!r}), P = {problem.dim}")
        print(f"\nexact {end} {K}: {', '.join(f'{v:.6g}' for v in part['exact'])}; next: "
              f"{', '.join(f'{v:.4g}' for v in part['exact_next'])}. Load average {part['load_before']} -> "
              f"{part['load_after']}. Several numbers in a cell: start vectors (seeds) 0 / 1 / ...; time: best of "
              "the repeats, ms.\n")
        print("| tol | method | products | restarts | achieved rel. error | time (ms) | notes |")
        print("|---|---|---|---|---|---|---|")
        for label, group in merge_seeds(part["defaults"]):
            print(f"| default | {label} | {joined(group, 'products')} | - | {joined(group, 'rel_error', '.1e')} | "
                  f"{' / '.join(ms(r['seconds']) for r in group)} | {notes(group)} |")
        for tol, block in part["by_tol"].items():
            steps = block["lanczos_steps"]
            for label, group in merge_seeds_steps(block["rows"]):
                print(f"| {tol:g} | {label} | {joined(group, 'products')} | {joined(group, 'restarts')} | "
                      f"{joined(group, 'rel_error', '.1e')} | {' / '.join(ms(r['seconds']) for r in group)} | "
                      f"{notes(group)} |")
            print(f"| {tol:g} | cw.lanczos: steps until its own residual estimates are <= tol * abs(theta) | "
                  f"{' / '.join(str(s['own_residuals']) for s in steps)} | - | - | - | (oracle steps "
                  f"{' / '.join(str(s['oracle']) for s in steps)}) |")


def merge_seeds_steps(rows: List[Dict[str, Any]]) -> List[Tuple[str, List[Dict[str, Any]]]]:
    """As :func:`merge_seeds`, with the oracle step counts (which differ by seed) taken out of the labels."""
    renamed = [dict(r, method=re.sub(r"(lanczos|max_iter=)\s?\d+", lambda m: m.group(1) + (" m" if m.group(1) ==
                                     "lanczos" else "m"), r["method"])) for r in rows]
    return merge_seeds(renamed)


def notes(group: List[Dict[str, Any]]) -> str:
    parts = []
    for r in group:
        bits = []
        if r.get("error_message"):
            bits.append("failed: " + r["error_message"][:80])
        if r.get("converged") is False:
            bits.append("converged=False")
        if r.get("own_converged") is not None and not all(r["own_converged"]):
            bits.append("own flags " + "".join("T" if c else "F" for c in r["own_converged"]))
        if r.get("reported_products") is not None and r["reported_products"] != r["products"]:
            bits.append(f"reports {r['reported_products']} products")
        if r.get("max_rel_residual") is not None:
            bits.append(f"max rel. residual {r['max_rel_residual']:.0e}")
        if not r.get("products_deterministic", True):
            bits.append("products vary between repeats")
        if r.get("warnings"):
            bits.append("warned")
        parts.append("; ".join(bits))
    if not any(parts):
        return ""
    return parts[0] if len(set(parts)) == 1 else " / ".join(part or "-" for part in parts)


def report_trace(name: str, problem: Problem, t: Dict[str, Any], args) -> None:
    exact = t["exact"]
    print(f"\n### {name}: trace, P = {problem.dim}, exact trace {exact:.6g}")
    print(f"\nLoad average {t['load_before']} -> {t['load_after']}.\n")
    print(f"To a relative standard error of {args.trace_tol:g}, at most {t['cap']} products "
          f"(several numbers: seeds 0 / 1 / ...; PyHessian over {args.seeds} seeds: mean products, RMS error):\n")
    print("| method | products | achieved rel. error | reported rel. SE | converged | time (ms) |")
    print("|---|---|---|---|---|---|")
    for label, group in merge_seeds(t["to_tol"]):
        if label.startswith("PyHessian"):
            ok = [r for r in group if r.get("rel_error") is not None]
            if not ok:
                print(f"| {label} | failed: {group[0].get('error_message')} | | | | |")
                continue
            errs = np.array([r["rel_error"] for r in ok])
            print(f"| {label} | {np.mean([r['products'] for r in ok]):.1f} (min {min(r['products'] for r in ok)}, "
                  f"max {max(r['products'] for r in ok)}) | RMS {np.sqrt(np.mean(errs ** 2)):.1e} | "
                  f"{np.mean([r['rel_standard_error'] for r in ok]):.1e} (its samples' SE) | - | "
                  f"{ms(float(np.median([r['seconds'] for r in ok])))} |")
            continue
        print(f"| {label} | {joined(group, 'products')} | {joined(group, 'rel_error', '.1e')} | "
              f"{joined(group, 'rel_standard_error', '.1e')} | {' / '.join(str(r.get('converged')) for r in group)} | "
              f"{' / '.join(ms(r['seconds']) for r in group)} |")
    for budget, block in t["budgets"].items():
        print(f"\nBudget {budget} products, {args.seeds} seeds:\n")
        print("| method | products | RMS rel. error | max rel. error | mean reported rel. SE | error <= 2 SE | "
              "median time (ms) |")
        print("|---|---|---|---|---|---|---|")
        for method, s in block["summary"].items():
            if not s["runs"]:
                print(f"| {method} | failed: {s.get('error_message')} | | | | | |")
                continue
            print(f"| {method} | {s['products']:g} | {s['rms_rel_error']:.2e} | {s['max_rel_error']:.2e} | "
                  f"{fmt(s['mean_rel_standard_error'], '.2e')} | {s['within_2se'] or '-'} | {ms(s['median_seconds'])} |")


# ---- main ---------------------------------------------------------------------------------------------

def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__, "commit": git_commit(),
            "curvwidgets": cw.__file__, "load_start": load(), "args": vars(args)}
    log(f"CPU {meta['cpu_model']}, {meta['cpu_count']} cores, torch {torch.__version__} with "
        f"{meta['torch_threads']} thread(s), load {meta['load_start']}")
    peers, peer_notes = import_peers(args.no_peers)
    meta["peers"] = peer_notes
    results: Dict[str, Any] = {"meta": meta}
    problems: Dict[str, Problem] = {}
    if "hessian" in args.operators:
        log("hessian ...")
        problems["hessian"] = hessian_problem(args)
    if "synthetic" in args.operators:
        log("synthetic ...")
        size = problems["hessian"].dim if "hessian" in problems else \
            sum(a * b + b for a, b in zip((64, *args.hidden), (*args.hidden, 10)))
        problems["synthetic"] = synthetic_problem(size, args.seed)
    for name, problem in problems.items():
        results[name] = {"info": problem.info, "exact_top": problem.top.tolist(), "exact_trace": problem.trace}
        if "eigen" in args.sections:
            log(f"{name}: eigen ...")
            results[name]["eigen"] = eigen_section(problem, peers, args)
        if "trace" in args.sections:
            log(f"{name}: trace ...")
            results[name]["trace"] = trace_section(problem, peers, args)
    meta["seconds_total"] = time.perf_counter() - started
    meta["load_end"] = load()
    print(f"CPU: {meta['cpu_model']} ({meta['cpu_count']} cores), torch {meta['torch']} with {meta['torch_threads']} "
          f"thread(s), scipy {meta['scipy']}, commit {meta['commit']}, {meta['date']}; load average "
          f"{meta['load_start']} at the start, {meta['load_end']} at the end; {meta['seconds_total']:.0f} s in all.")
    print("Peers: " + "; ".join(f"{k} {v}" for k, v in peer_notes.items()))
    for name, problem in problems.items():
        print(f"\n{name}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in problem.info.items()))
        if "eigen" in results[name]:
            report_eigen(name, problem, results[name]["eigen"])
        if "trace" in results[name]:
            report_trace(name, problem, results[name]["trace"], args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))


if __name__ == "__main__":
    main(ARGS)

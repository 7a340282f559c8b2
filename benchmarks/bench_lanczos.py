#!/usr/bin/env python
"""Speed and accuracy of ``curvwidgets.lanczos``, as ratios measured in one process.

Two sections (see ``benchmarks/README.md`` for what every figure means):

``dense``
    Lanczos (``m`` steps) on the ``P x P`` Wigner matrix against a full dense
    eigendecomposition of the same matrix (``numpy.linalg.eigvalsh``, and
    ``numpy.linalg.eigh`` with vectors), with the quality of the Lanczos answer
    (Wasserstein-1 to the exact spectrum, largest and smallest Ritz values
    against the extreme eigenvalues). Lanczos is timed on the raw matrix (which
    ``lanczos`` wraps with ``as_operator``, a symmetry check) and on an
    operator wrapped beforehand.

``reorth``
    The cost of full reorthogonalisation at large ``P``: a run of ``m`` steps
    on a cheap diagonal operator, less ``m`` operator products, divided by the
    sum over ``k = 1 .. m`` of one classical Gram-Schmidt pass over ``k`` basis
    rows (``c = V @ w; w -= V.T @ c``: the memory-bound minimum of one pass).
    Also: where the time of a run goes (torch.profiler over a package run, and
    an instrumented copy of the package's loop as of commit c726434), the
    end-of-run orthogonality measurement, ``store_vectors=True``, and
    prototypes of cheaper loops (benchmark code only, not the package).

Only torch, numpy, scipy and curvwidgets are needed (no plotting), so it runs
on a headless GPU server from the repository root::

    PYTHONPATH=. python benchmarks/bench_lanczos.py --quick
    PYTHONPATH=. python benchmarks/bench_lanczos.py --device cuda --json results/gpu.json

Timings are the best of ``--repeats`` runs (``time.perf_counter``, with
``torch.cuda.synchronize`` around each on a GPU); every repeat is kept in the
JSON. No timing is asserted: the figures are ratios of timings taken side by
side in this one process.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark curvwidgets.lanczos against dense eigensolvers and against its memory-bound limit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run (P=1500 dense, P=2e5 reorth, 2 repeats)")
    parser.add_argument("--sections", default="dense,reorth", help="comma-separated subset of: dense, reorth")
    parser.add_argument("--device", default="cpu", help="where operator products run: cpu, cuda, cuda:1, ...")
    parser.add_argument("--basis-device", default=None, help="where the Lanczos basis lives (lanczos basis_device=); default: --device")
    parser.add_argument("--dtypes", default="float64,float32", help="comma-separated dtypes for the Lanczos runs")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of each Lanczos / pass timing (best is reported); default 5, 2 with --quick")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Wigner matrix and of the start vectors")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and BLAS (set before importing them); default: library default")
    dense = parser.add_argument_group("dense section")
    dense.add_argument("--dense-P", type=int, default=None, help="size of the Wigner matrix; default 10000, 1500 with --quick")
    dense.add_argument("--dense-steps", type=int, default=30, help="Lanczos steps m")
    dense.add_argument("--dense-repeats", type=int, default=None, help="repeats of each dense eigendecomposition; default 3, 1 with --quick")
    dense.add_argument("--no-eigh", action="store_true", help="skip numpy.linalg.eigh with vectors (the slowest timing)")
    dense.add_argument(
        "--dense-backends", default=None,
        help="exact solvers: numpy (CPU, float64) and/or torch (torch.linalg on --device, float64); default numpy on cpu, numpy,torch on cuda",
    )
    reorth = parser.add_argument_group("reorth section")
    reorth.add_argument("--reorth-P", type=int, default=None, help="size of the diagonal operator; default 1000000, 200000 with --quick")
    reorth.add_argument("--reorth-steps", type=int, default=None, help="Lanczos steps m; default 100, 40 with --quick")
    reorth.add_argument("--pass-stride", type=int, default=1, help="time the one-pass cost every STRIDE rows and interpolate linearly in between")
    reorth.add_argument("--no-prototypes", action="store_true", help="skip the prototype loops (benchmark code, not the package)")
    reorth.add_argument("--no-breakdown", action="store_true", help="skip the profile of a package run and the instrumented c726434 loop")
    parser.add_argument("--json", default=None, help="also write all results (every repeat) as JSON to this path")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.repeats is None:
        args.repeats = 2 if quick else 5
    if args.dense_P is None:
        args.dense_P = 1500 if quick else 10000
    if args.dense_repeats is None:
        args.dense_repeats = 1 if quick else 3
    if args.reorth_P is None:
        args.reorth_P = 200_000 if quick else 1_000_000
    if args.reorth_steps is None:
        args.reorth_steps = 40 if quick else 100
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for section in args.sections:
        if section not in ("dense", "reorth"):
            parser.error(f"unknown section {section!r}")
    args.dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    for name in args.dtypes:
        if name not in ("float32", "float64"):
            parser.error(f"dtype must be float32 or float64; got {name!r}")
    if min(args.repeats, args.dense_repeats, args.pass_stride, args.dense_steps, args.reorth_steps) < 1:
        parser.error("repeats, strides and steps must be >= 1")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads is not None:
    # BLAS libraries read these when they load, so set them before numpy and torch are imported.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import curvwidgets as cw  # noqa: E402
from curvwidgets._machine import cpu_model  # noqa: E402

# The module, not the function of the same name that curvwidgets.linalg re-exports.
LANCZOS_MODULE = importlib.import_module("curvwidgets.linalg.lanczos")
CHECKS_MODULE = importlib.import_module("curvwidgets.linalg._checks")
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64}


# --------------------------------------------------------------------------- timing


class Clock:
    """Wall-clock timing that waits for the accelerator(s) involved before reading the clock."""

    def __init__(self, *devices: torch.device):
        self.cuda = sorted({d.index or 0 for d in devices if d.type == "cuda"})

    def sync(self) -> None:
        for index in self.cuda:
            torch.cuda.synchronize(index)

    def time(self, fn: Callable[[], Any]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def best(self, fn: Callable[[], Any], repeats: int, setup: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
        times = []
        for _ in range(repeats):
            if setup is not None:
                setup()
            times.append(self.time(fn))
        return summary(times)


def summary(times: List[float]) -> Dict[str, Any]:
    return {"best": min(times), "median": float(np.median(times)), "all": times}


def interleaved(clock: Clock, fns: Dict[str, Callable[[], Any]], repeats: int) -> Dict[str, Dict[str, Any]]:
    """Time each function ``repeats`` times, round-robin, so that drifting load hits all alike."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(clock.time(fn))
    return {name: summary(values) for name, values in times.items()}


def load() -> List[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- environment


def cpu_family_model() -> str:
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cpu family", "model", "stepping") and key not in fields:
                fields[key] = value.strip()
    except OSError:
        pass
    return ", ".join(f"{k} {v}" for k, v in fields.items())


def git_state() -> Dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "curvwidgets"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return {"commit": commit, "package_modified_in_worktree": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {}


def environment(args: argparse.Namespace, device: torch.device, storage: torch.device) -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_family_model": cpu_family_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "thread_env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": importlib.import_module("scipy").__version__,
        "curvwidgets": getattr(cw, "__version__", "?"),
        "git": git_state(),
        "device": str(device),
        "basis_device": str(storage),
        "loadavg_start": load(),
        "args": {k: v for k, v in vars(args).items()},
    }
    try:
        info["memory_total_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    for d in {device, storage}:
        if d.type == "cuda":
            props = torch.cuda.get_device_properties(d)
            info.setdefault("gpus", {})[str(d)] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return info


# --------------------------------------------------------------------------- helpers


def orthogonality_float64(basis: torch.Tensor, chunk: int = 1 << 13) -> float:
    """``||V V^T - I||_2`` for the rows of ``basis`` (k, P), the Gram matrix accumulated in float64 by column chunks."""
    k, dim = basis.shape
    gram = torch.zeros(k, k, dtype=torch.float64, device=basis.device)
    for start in range(0, dim, chunk):
        block = basis[:, start : start + chunk].to(torch.float64)
        gram += block @ block.T
    gram -= torch.eye(k, dtype=torch.float64, device=basis.device)
    return float(torch.linalg.matrix_norm(gram, ord=2))


def row_block_symmetry_defect(matrix: torch.Tensor, elements: int = 1 << 22) -> float:
    """``||A - A^T||_F / ||A||_F`` as the package computed it before issue 11 (commit 4704c06), for comparison.

    ``A - A^T`` a block of rows at a time: ``A[i:i+r] - A[:, i:i+r].T``, a
    transposed sweep over whole columns for every block. The package now
    checks by pairs of square tiles (``linalg.operators._dense_defect``).
    """
    scale = torch.linalg.matrix_norm(matrix).item()
    if scale == 0:
        return 0.0
    rows = max(1, elements // matrix.shape[0])
    norms = [torch.linalg.matrix_norm(matrix[i : i + rows] - matrix[:, i : i + rows].T)
             for i in range(0, matrix.shape[0], rows)]
    return torch.linalg.vector_norm(torch.stack(norms)).item() / scale


def result_arrays(result: Any) -> Dict[str, np.ndarray]:
    """``alpha`` and ``beta`` of the first run of a ``LanczosResult``, without the NaN padding."""
    count = int(result.num_steps[0])
    return {"alpha": np.asarray(result.alpha[0, :count], dtype=float), "beta": np.asarray(result.beta[0, : count - 1], dtype=float)}


# --------------------------------------------------------------------------- loops (benchmark code)
#
# Each loop below does a single-vector Lanczos run and returns a dict with its
# alpha, beta, basis and orthogonality. `loop_c726434` is the package's loop as
# of commit c726434 (before d4f8831 changed it), for one run, optionally with a
# timer around each component; at that commit its alpha/beta equalled the
# package's bit for bit. It is timed next to the package as a "before" figure. `lean_two_pass` is the same arithmetic without the full-vector
# finite check, without temporaries and without the copy of the next vector.
# `local_one_pass` changes the algorithm: three-term recurrence first, then one
# Gram-Schmidt pass against the whole basis, and a second pass only when the
# first removed more than 1 - 1/sqrt(2) of the norm (the DGKS test).


class Sections:
    """Accumulates wall time per named component (synchronising around each on a GPU)."""

    def __init__(self, clock: Clock, enabled: bool):
        self.clock, self.enabled, self.totals = clock, enabled, {}
        self._name: Optional[str] = None
        self._start = 0.0

    def __call__(self, name: str) -> "Sections":
        self._name = name
        return self

    def __enter__(self) -> None:
        if self.enabled:
            self.clock.sync()
            self._start = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.clock.sync()
            self.totals[self._name] = self.totals.get(self._name, 0.0) + time.perf_counter() - self._start


def loop_c726434(
    op: Any, steps: int, seed: int, storage: torch.device, clock: Clock, measure: bool = True, instrument: bool = False
) -> Dict[str, Any]:
    """The package's loop at commit c726434 for one start vector, optionally with a timer per component."""
    part = Sections(clock, instrument)
    with part("setup (start vector, basis allocation)"):
        vector = CHECKS_MODULE.start_vectors(op, 1, seed, "gaussian", None)
        basis = torch.empty(1, steps, op.dim, dtype=op.dtype, device=storage)
        basis[:, 0] = vector.to(storage)
    tolerance = torch.finfo(op.dtype).eps ** 0.5
    alpha, beta = np.full(steps, np.nan), np.full(steps, np.nan)
    scale, count = 0.0, 0
    current = vector
    for step in range(steps):
        with part("operator product"):
            products = op.matvec(current[0])[None]
        with part("finite check of the product (isfinite(...).all())"):
            if not bool(torch.isfinite(products).all()):
                raise ValueError("non-finite product")
            products = products.to(storage)
        residual = products[0]
        rows = basis[0, : step + 1]
        with part("Gram-Schmidt pass 1 (V@w, w -= V.T@c)"):
            first = rows @ residual
            residual.sub_(rows.T @ first)
        with part("Gram-Schmidt pass 2"):
            residual.sub_(rows.T @ (rows @ residual))
        with part("alpha, beta (.item(), norm)"):
            alpha[step] = first[step].item()
            beta[step] = torch.linalg.vector_norm(residual).item()
            count = step + 1
            scale = max(scale, abs(alpha[step]), beta[step])
        if not (step + 1 < steps and beta[step] > tolerance * scale):
            break
        with part("normalise and store (basis[j+1] = w / beta)"):
            basis[0, step + 1] = residual / beta[step]
        with part("next vector (basis[[run], j+1].to(device))"):
            current = basis[[0], step + 1].to(op.device)
    with part("orthogonality measurement (Gram matrix)"):
        # what _orthogonality did at c726434 (one float64 chunk of 2^20 columns)
        orth = orthogonality_float64(basis[0, :count], chunk=1 << 20) if measure else float("nan")
    return {"alpha": alpha[:count], "beta": beta[: max(count - 1, 0)], "basis": basis[0, :count], "orthogonality": orth, "parts": part.totals}


def lean_two_pass(op: Any, steps: int, seed: int, storage: torch.device, clock: Clock, measure: bool = True) -> Dict[str, Any]:
    """Same arithmetic as the package (two full CGS passes per step), with fewer passes over memory."""
    vector = CHECKS_MODULE.start_vectors(op, 1, seed, "gaussian", None)
    basis = torch.empty(1, steps, op.dim, dtype=op.dtype, device=storage)
    basis[0, 0] = vector[0].to(storage)
    first = torch.empty(steps, dtype=op.dtype, device=storage)
    second = torch.empty(steps, dtype=op.dtype, device=storage)
    tolerance = torch.finfo(op.dtype).eps ** 0.5
    alpha, beta = np.full(steps, np.nan), np.full(steps, np.nan)
    scale, count = 0.0, 0
    current = vector[0]
    for step in range(steps):
        residual = op.matvec(current).to(storage)
        rows = basis[0, : step + 1]
        c1 = torch.mv(rows, residual, out=first[: step + 1])
        residual.addmv_(rows.T, c1, alpha=-1)
        c2 = torch.mv(rows, residual, out=second[: step + 1])
        residual.addmv_(rows.T, c2, alpha=-1)
        # one host round trip for both scalars; a NaN/inf anywhere in the product reaches both
        alpha[step], beta[step] = torch.stack((c1[step], torch.linalg.vector_norm(residual))).tolist()
        if not (math.isfinite(alpha[step]) and math.isfinite(beta[step])):
            raise ValueError(f"lanczos step {step + 1}: the operator product contains NaN or inf; stopped")
        count = step + 1
        scale = max(scale, abs(alpha[step]), beta[step])
        if not (step + 1 < steps and beta[step] > tolerance * scale):
            break
        torch.div(residual, beta[step], out=basis[0, step + 1])
        current = basis[0, step + 1] if storage == op.device else basis[0, step + 1].to(op.device)
    orth = LANCZOS_MODULE._orthogonality(basis[:, :count], np.array([count])) if measure else float("nan")
    return {"alpha": alpha[:count], "beta": beta[: max(count - 1, 0)], "basis": basis[0, :count], "orthogonality": orth}


def local_one_pass(op: Any, steps: int, seed: int, storage: torch.device, clock: Clock, measure: bool = True) -> Dict[str, Any]:
    """Three-term recurrence, one full CGS pass, and a second pass only when the DGKS test asks for it."""
    vector = CHECKS_MODULE.start_vectors(op, 1, seed, "gaussian", None)
    basis = torch.empty(1, steps, op.dim, dtype=op.dtype, device=storage)
    basis[0, 0] = vector[0].to(storage)
    local = torch.zeros(2, dtype=op.dtype, device=storage)  # (beta_{j-1}, alpha_j) of the three-term recurrence
    first = torch.empty(steps, dtype=op.dtype, device=storage)
    second = torch.empty(steps, dtype=op.dtype, device=storage)
    tolerance = torch.finfo(op.dtype).eps ** 0.5
    alpha, beta = np.full(steps, np.nan), np.full(steps, np.nan)
    scale, count, extra_passes = 0.0, 0, 0
    current = vector[0]
    for step in range(steps):
        residual = op.matvec(current).to(storage)
        rows = basis[0, : step + 1]
        recent = basis[0, max(step - 1, 0) : step + 1]
        torch.dot(basis[0, step], residual, out=local[1])
        residual.addmv_(recent.T, local[2 - recent.shape[0] :], alpha=-1)
        before = torch.linalg.vector_norm(residual)
        c1 = torch.mv(rows, residual, out=first[: step + 1])
        residual.addmv_(rows.T, c1, alpha=-1)
        after = torch.linalg.vector_norm(residual)
        a0, correction, norm_before, norm_after = torch.stack((local[1], c1[step], before, after)).tolist()
        a = a0 + correction
        if not norm_after > norm_before / math.sqrt(2.0):  # also taken for NaN, so NaN reaches the check below
            c2 = torch.mv(rows, residual, out=second[: step + 1])
            residual.addmv_(rows.T, c2, alpha=-1)
            extra, norm_after = torch.stack((c2[step], torch.linalg.vector_norm(residual))).tolist()
            a += extra
            extra_passes += 1
        alpha[step], beta[step] = a, norm_after
        if not (math.isfinite(a) and math.isfinite(norm_after)):
            raise ValueError(f"lanczos step {step + 1}: the operator product contains NaN or inf; stopped")
        count = step + 1
        scale = max(scale, abs(a), norm_after)
        if not (step + 1 < steps and norm_after > tolerance * scale):
            break
        local[0] = norm_after
        torch.div(residual, norm_after, out=basis[0, step + 1])
        current = basis[0, step + 1] if storage == op.device else basis[0, step + 1].to(op.device)
    orth = LANCZOS_MODULE._orthogonality(basis[:, :count], np.array([count])) if measure else float("nan")
    return {
        "alpha": alpha[:count], "beta": beta[: max(count - 1, 0)], "basis": basis[0, :count],
        "orthogonality": orth, "second_passes": extra_passes,
    }


PROTOTYPES = {"loop_c726434": loop_c726434, "lean_two_pass": lean_two_pass, "local_one_pass": local_one_pass}


def profile_package(op: Any, steps: int, seed: int, storage: torch.device, clock: Clock, top: int = 12) -> Dict[str, Any]:
    """Self time per aten operator of one run of the package's ``lanczos`` (torch.profiler).

    Robust to changes of the package's loop. On a GPU, device (kernel) time per operator too; CPU
    self time of ``aten::_local_scalar_dense`` (``.item()``, ``.tolist()``) is then mostly waiting.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if clock.cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities):  # the profiler's own start-up (about 1 s), not timed
        cw.lanczos(op, 2, seed=seed, basis_device=storage)
    clock.sync()
    start = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        cw.lanczos(op, steps, seed=seed, basis_device=storage)
        clock.sync()
    wall = time.perf_counter() - start
    rows = []
    for event in prof.key_averages():
        cpu = event.self_cpu_time_total / 1e6
        device_time = getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0)) / 1e6
        rows.append({"op": event.key, "calls": event.count, "self_cpu_s": cpu, "self_device_s": device_time})
    rows.sort(key=lambda r: -(r["self_cpu_s"] + r["self_device_s"]))
    return {"wall_s": wall, "ops": rows[:top], "self_cpu_total_s": sum(r["self_cpu_s"] for r in rows)}


def gauss_rule(alpha: np.ndarray, beta: np.ndarray):
    import scipy.linalg

    values, vectors = scipy.linalg.eigh_tridiagonal(alpha, beta)
    return values, vectors[0] ** 2


def compare_rules(reference: Dict[str, np.ndarray], other: Dict[str, np.ndarray]) -> Dict[str, float]:
    """How far a loop's Gauss rule is from the package's: Ritz values (relative to ||T||) and weights."""
    n = min(len(reference["alpha"]), len(other["alpha"]))
    v0, w0 = gauss_rule(reference["alpha"][:n], reference["beta"][: n - 1])
    v1, w1 = gauss_rule(other["alpha"][:n], other["beta"][: n - 1])
    norm = max(np.abs(v0).max(), 1e-300)
    return {
        "compared_steps": int(n),
        "max_abs_ritz_diff_rel": float(np.abs(v0 - v1).max() / norm),
        "max_abs_weight_diff": float(np.abs(w0 - w1).max()),
        "max_abs_alpha_diff": float(np.abs(reference["alpha"][:n] - other["alpha"][:n]).max()),
        "max_abs_beta_diff": float(np.abs(reference["beta"][: n - 1] - other["beta"][: n - 1]).max()) if n > 1 else 0.0,
    }


# --------------------------------------------------------------------------- section 1: dense


def bench_dense(args: argparse.Namespace, device: torch.device, storage: torch.device, clock: Clock) -> Dict[str, Any]:
    P, m, R = args.dense_P, args.dense_steps, args.repeats
    out: Dict[str, Any] = {"P": P, "steps": m, "repeats": R, "dense_repeats": args.dense_repeats, "loadavg_start": load()}
    log(f"[dense] generating the Wigner matrix P={P}")
    start = time.perf_counter()
    H = cw.synthetic.wigner(P, seed=args.seed)
    out["wigner_generation_s"] = time.perf_counter() - start
    backends = args.dense_backends or ("numpy,torch" if device.type == "cuda" else "numpy")
    backends = [b.strip() for b in backends.split(",") if b.strip()]

    exact: Dict[str, Any] = {}
    eigenvalues = None
    if "numpy" in backends:
        log(f"[dense] numpy.linalg.eigvalsh x{args.dense_repeats}")
        times = []
        for _ in range(args.dense_repeats):
            t0 = time.perf_counter()
            eigenvalues = np.linalg.eigvalsh(H)
            times.append(time.perf_counter() - t0)
        exact["numpy.eigvalsh (cpu, float64)"] = summary(times)
        if not args.no_eigh:
            log(f"[dense] numpy.linalg.eigh (with vectors) x{args.dense_repeats}")
            times = []
            for _ in range(args.dense_repeats):
                t0 = time.perf_counter()
                w, v = np.linalg.eigh(H)
                times.append(time.perf_counter() - t0)
                del w, v
            exact["numpy.eigh+vectors (cpu, float64)"] = summary(times)
    if "torch" in backends:
        Ht = torch.as_tensor(H).to(device)
        log(f"[dense] torch.linalg.eigvalsh / eigh on {device} x{args.dense_repeats}")
        exact[f"torch.eigvalsh ({device}, float64)"] = clock.best(lambda: torch.linalg.eigvalsh(Ht), args.dense_repeats)
        if eigenvalues is None:
            eigenvalues = torch.linalg.eigvalsh(Ht).cpu().numpy()
        if not args.no_eigh:
            exact[f"torch.eigh+vectors ({device}, float64)"] = clock.best(lambda: torch.linalg.eigh(Ht), args.dense_repeats)
        del Ht
    if eigenvalues is None:
        eigenvalues = np.linalg.eigvalsh(H)
    out["exact"] = exact
    out["lambda_max"], out["lambda_min"] = float(eigenvalues[-1]), float(eigenvalues[0])

    runs: Dict[str, Any] = {}
    for name in args.dtypes:
        dtype = TORCH_DTYPES[name]
        # What a user passes: the numpy matrix itself on the CPU, a tensor already on the GPU.
        raw = H.astype(NUMPY_DTYPES[name], copy=False) if device.type == "cpu" else torch.as_tensor(H).to(device=device, dtype=dtype)
        op = cw.as_operator(raw)
        log(f"[dense] lanczos m={m} {name} x{R}")
        kwargs = dict(seed=args.seed, basis_device=storage)
        clock.time(lambda: cw.lanczos(op, m, **kwargs))  # warm-up (allocator, kernels)
        timings = interleaved(
            clock,
            {
                "lanczos(matrix)": lambda: cw.lanczos(raw, m, **kwargs),
                "lanczos(pre-wrapped op)": lambda: cw.lanczos(op, m, **kwargs),
                "as_operator(matrix) [symmetry check]": lambda: cw.as_operator(raw),
                "as_operator(matrix, check_symmetric=False)": lambda: cw.as_operator(raw, check_symmetric=False),
            },
            R,
        )
        matrix = op.matrix if hasattr(op, "matrix") else None
        if matrix is not None:
            timings["before issue 11: symmetry check by row blocks"] = clock.best(lambda: row_block_symmetry_defect(matrix), R)
        result = cw.lanczos(op, m, **kwargs)
        theta = result.nodes(0)
        quality = {
            "wasserstein1": cw.wasserstein1(result, eigenvalues),
            "theta_max": float(theta[-1]), "lambda_max": float(eigenvalues[-1]),
            "abs_err_max": float(eigenvalues[-1] - theta[-1]),
            "rel_err_max": float((eigenvalues[-1] - theta[-1]) / abs(eigenvalues[-1])),
            "theta_min": float(theta[0]), "lambda_min": float(eigenvalues[0]),
            "abs_err_min": float(theta[0] - eigenvalues[0]),
            "residual_estimate_top": float(result.residual_estimates[0, result.num_steps[0] - 1]),
            "orthogonality": float(result.orthogonality),
            "num_steps": int(result.num_steps[0]),
        }
        if not args.no_prototypes:
            proto = local_one_pass(op, m, args.seed, storage, clock)
            nodes, weights = gauss_rule(proto["alpha"], proto["beta"])
            quality["prototype local_one_pass"] = {
                "wasserstein1": cw.wasserstein1((nodes, weights), eigenvalues),
                "theta_max": float(nodes[-1]),
                "orthogonality": float(proto["orthogonality"]),
                "second_passes": proto["second_passes"],
                **compare_rules(result_arrays(result), proto),
            }
        best = {k: v["best"] for k, v in timings.items()}
        ratios = {}
        for exact_name, exact_timing in exact.items():
            ratios[f"{exact_name} / lanczos(matrix)"] = exact_timing["best"] / best["lanczos(matrix)"]
            ratios[f"{exact_name} / lanczos(pre-wrapped op)"] = exact_timing["best"] / best["lanczos(pre-wrapped op)"]
        runs[name] = {"timings": timings, "quality": quality, "speedup": ratios}
        del raw, op, matrix
    out["lanczos"] = runs
    out["loadavg_end"] = load()
    return out


# --------------------------------------------------------------------------- section 2: reorthogonalisation


def robustness(args: argparse.Namespace, dtype: torch.dtype, device: torch.device, storage: torch.device, clock: Clock) -> Dict[str, Any]:
    """Accuracy of the prototype loops against the package, on three diagonal spectra (``P <= 200000``).

    ``uniform``: the spectrum of the timed runs (``linspace(1, 2, P)``). ``spiked``: a bulk on [0, 1]
    and five outliers (the extreme Ritz values converge within a few steps, which is when plain
    Lanczos loses orthogonality). ``clustered``: 30 distinct eigenvalues, so the Krylov space becomes
    invariant and a run should stop early. In float32 every loop is also scored against a float64
    run of the package from the same start vector (its Gauss rule is the exact one to ~1e-13).
    """
    P = min(args.reorth_P, 200_000)
    m = args.reorth_steps
    uniform = torch.linspace(1.0, 2.0, P, dtype=torch.float64)
    spiked = torch.linspace(0.0, 1.0, P, dtype=torch.float64)
    spiked[-5:] = torch.tensor([5.0, 10.0, 20.0, 50.0, 100.0], dtype=torch.float64)
    clustered = 1.0 + (torch.arange(P, dtype=torch.float64) % 30) / 30.0
    out: Dict[str, Any] = {"P": P, "steps": m}

    def rule(alpha: np.ndarray, beta: np.ndarray) -> Dict[str, np.ndarray]:
        return {"alpha": alpha[~np.isnan(alpha)], "beta": beta[~np.isnan(beta)]}

    for case, diagonal in (("uniform", uniform), ("spiked", spiked), ("clustered", clustered)):
        exact64 = None
        if dtype != torch.float64:
            d64 = diagonal.to(device=device)
            op64 = cw.as_operator(lambda v, d=d64: d * v, dim=P, dtype=torch.float64, device=device)
            run64 = cw.lanczos(op64, m, seed=args.seed, basis_device=storage)
            exact64 = rule(run64.alpha[0], run64.beta[0])
            del op64, run64, d64
        d = diagonal.to(device=device, dtype=dtype)
        op = cw.as_operator(lambda v, d=d: d * v, dim=P, dtype=dtype, device=device)
        reference = cw.lanczos(op, m, seed=args.seed, store_vectors=True, basis_device=storage)
        count = int(reference.num_steps[0])
        arrays = rule(reference.alpha[0], reference.beta[0])
        entry: Dict[str, Any] = {
            "package": {
                "num_steps": count,
                "orthogonality (float64 Gram)": orthogonality_float64(reference.basis[0, :count]),
                "theta_max": float(reference.nodes(0)[-1]), "lambda_max": float(diagonal.max()),
            }
        }
        if exact64 is not None:
            entry["package"]["vs float64"] = compare_rules(exact64, arrays)
        del reference
        for name, loop in PROTOTYPES.items():
            run = loop(op, m, args.seed, storage, clock, measure=False)
            entry[name] = {
                "num_steps": len(run["alpha"]),
                "orthogonality (float64 Gram)": orthogonality_float64(run["basis"]),
                "theta_max": float(gauss_rule(run["alpha"], run["beta"])[0][-1]),
                **compare_rules(arrays, run),
            }
            if exact64 is not None:
                entry[name]["vs float64"] = compare_rules(exact64, run)
            if "second_passes" in run:
                entry[name]["second_passes"] = run["second_passes"]
            del run
        out[case] = entry
    return out


def pass_sweep(basis: torch.Tensor, vector: torch.Tensor, work: torch.Tensor, clock: Clock, ks: List[int], two: Any) -> List[float]:
    """One timing, for each k in ``ks``, of one CGS pass over ``k`` rows.

    ``two=False``: ``c = V @ w; w -= V.T @ c`` (the reference pass); ``True``: two passes of the package's
    ``_project_out`` (a step of ``reorthogonalisation="twice"``); ``"fused"``: one pass with no
    temporaries (``mv(out=)``, ``addmv_``), written here.
    """
    times = []
    for k in ks:
        rows = basis[0, :k]
        work.copy_(vector)
        if two == "fused":
            coefficients = torch.empty(k, dtype=work.dtype, device=work.device)

            def fused_pass() -> None:
                torch.mv(rows, work, out=coefficients)
                work.addmv_(rows.T, coefficients, alpha=-1)
            times.append(clock.time(fused_pass))
        elif two:
            buffer = torch.empty(k, dtype=work.dtype, device=work.device)

            def two_passes() -> None:
                LANCZOS_MODULE._project_out(work, rows, buffer)
                LANCZOS_MODULE._project_out(work, rows, buffer)
            times.append(clock.time(two_passes))
        else:
            def one_pass() -> None:
                c = rows @ work
                work.sub_(rows.T @ c)
            times.append(clock.time(one_pass))
    return times


TWICE = "lanczos(reorthogonalisation='twice')"


def dgks_vs_twice(
    op: Any, m: int, kwargs: Dict[str, Any], reference: Any, run_times: Dict[str, List[float]], matvec_s: float, res: Dict[str, Any]
) -> Dict[str, Any]:
    """The package's default (DGKS) against its forced two passes, from the timings of the same rounds.

    ``reference`` is the default run (``store_vectors=True``); ``res`` holds the one-pass sum and the
    end-of-run orthogonality timing. Reads of the basis per step: counted by the package
    (``basis_reads_per_step``), and time-equivalent, ``2 * (t - m * matvec) / sum_k one pass``
    (a pass reads the basis twice), with and without the end-of-run measure.
    """
    twice = cw.lanczos(op, m, reorthogonalisation="twice", store_vectors=True, **kwargs)
    measure = res["_orthogonality"]["best"]
    out: Dict[str, Any] = {
        "speedup": min(run_times[TWICE]) / min(run_times["lanczos"]),
        "speedup_by_round": [t2 / t1 for t1, t2 in zip(run_times["lanczos"], run_times[TWICE])],
        **compare_rules(result_arrays(twice), result_arrays(reference)),
    }
    for name, key, result in (("dgks", "lanczos", reference), ("twice", TWICE, twice)):
        beyond = min(run_times[key]) - m * matvec_s
        out[name] = {
            "reads_per_step_counted": float(result.basis_reads_per_step),
            "second_passes": int((result.gram_schmidt_passes == 2).sum()),
            "reads_per_step_time_equivalent": 2 * beyond / res["sum_one_pass_s"],
            "reads_per_step_time_equivalent_without_orthogonality_measure": 2 * (beyond - measure) / res["sum_one_pass_s"],
            "orthogonality (float64 Gram)": orthogonality_float64(result.basis[0]),
        }
    return out


def bench_reorth(args: argparse.Namespace, device: torch.device, storage: torch.device, clock: Clock) -> Dict[str, Any]:
    P, m, R = args.reorth_P, args.reorth_steps, args.repeats
    out: Dict[str, Any] = {"P": P, "steps": m, "repeats": R, "pass_stride": args.pass_stride, "runs": {}}
    for name in args.dtypes:
        dtype = TORCH_DTYPES[name]
        res: Dict[str, Any] = {"loadavg_start": load()}
        diagonal = torch.linspace(1.0, 2.0, P, dtype=dtype, device=device)
        op = cw.as_operator(lambda v: diagonal * v, dim=P, dtype=dtype, device=device)
        generator = torch.Generator().manual_seed(args.seed + 1)
        probe = torch.randn(P, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
        basis = (torch.randn(1, m, P, generator=generator, dtype=torch.float64) / math.sqrt(P)).to(device=storage, dtype=dtype)
        w = torch.randn(P, generator=generator, dtype=torch.float64).to(device=storage, dtype=dtype)
        work = w.clone()
        ks = sorted(set(list(range(1, m + 1, args.pass_stride)) + [m]))

        kwargs = dict(seed=args.seed, basis_device=storage)
        clock.time(lambda: cw.lanczos(op, 3, **kwargs))  # warm-up
        runs = {
            "lanczos": lambda: cw.lanczos(op, m, **kwargs),
            TWICE: lambda: cw.lanczos(op, m, reorthogonalisation="twice", **kwargs),
            "lanczos(store_vectors=True)": lambda: cw.lanczos(op, m, store_vectors=True, **kwargs),
        }
        if not args.no_prototypes:
            for proto_name, loop in PROTOTYPES.items():
                runs[f"prototype {proto_name}"] = (lambda loop=loop: loop(op, m, args.seed, storage, clock))
        # Everything that enters a ratio is timed in the same round, round after round, so that a burst
        # of load from other jobs hits one round of each figure rather than all rounds of one figure.
        product_times: List[float] = []
        checked_times: List[float] = []
        transfer_times: List[float] = []
        run_times: Dict[str, List[float]] = {key: [] for key in runs}
        one_rounds: List[List[float]] = []
        two_rounds: List[List[float]] = []
        fused_rounds: List[List[float]] = []
        for round_ in range(R):
            log(f"[reorth] {name}: round {round_ + 1}/{R}: matvec, one-pass sweep k=1..{m}, two-pass sweep, {len(runs)} Lanczos runs")
            product_times += [clock.time(lambda: op.matvec(probe)) for _ in range(5)]
            checked_times += [clock.time(lambda: CHECKS_MODULE.apply_operator(op, probe[None], 1, "bench")) for _ in range(5)]
            if storage != device:
                transfer_times += [clock.time(lambda: probe.to(storage)) for _ in range(5)]
            one_rounds.append(pass_sweep(basis, w, work, clock, ks, two=False))
            fused_rounds.append(pass_sweep(basis, w, work, clock, ks, two="fused"))
            two_rounds.append(pass_sweep(basis, w, work, clock, ks, two=True))
            for key, fn in runs.items():
                run_times[key].append(clock.time(fn))
        # Could the Gram matrix be accumulated for free? One k x 2 product over the basis reads it once,
        # like the k x 1 product of a pass: compare V @ w with V @ [w, v] at k = m.
        rows, second = basis[0], torch.flip(w, (0,))
        stacked = torch.stack((w, second))
        res["gemv V@w at k=m"] = clock.best(lambda: rows @ w, R)
        res["gemm V@[w,v] at k=m"] = clock.best(lambda: rows @ stacked.T, R)
        res["gemm [w;v]@V.T (2 x P) at k=m"] = clock.best(lambda: stacked @ rows.T, R)
        del basis, work, rows, second, stacked
        product = summary(product_times)
        res["matvec"] = product
        res["apply_operator (matvec + shape/finite checks)"] = summary(checked_times)
        if transfer_times:
            res["transfer device->basis"] = summary(transfer_times)
        timings = {key: summary(values) for key, values in run_times.items()}
        res["timings"] = timings

        grid = np.arange(1, m + 1)
        one = np.interp(grid, ks, np.min(one_rounds, axis=0))
        bytes_per_pass = 2 * grid * P * (torch.finfo(dtype).bits // 8)
        res["one_pass_s_by_k"] = one.tolist()
        res["sum_one_pass_s"] = float(one.sum())
        res["sum_one_pass_s_by_round"] = [float(np.interp(grid, ks, r).sum()) for r in one_rounds]
        res["one_pass_bandwidth_GBps_at_k_max"] = float(bytes_per_pass[-1] / one[-1] / 1e9)
        res["one_pass_bandwidth_GBps_median_over_k"] = float(np.median(bytes_per_pass / one) / 1e9)
        fused = np.interp(grid, ks, np.min(fused_rounds, axis=0))
        res["fused_one_pass_s_by_k"] = fused.tolist()
        res["sum_fused_one_pass_s"] = float(fused.sum())
        two = np.interp(grid, ks, np.min(two_rounds, axis=0))
        res["two_passes_s_by_k"] = two.tolist()
        res["sum_two_passes_s"] = float(two.sum())

        reference = cw.lanczos(op, m, store_vectors=True, **kwargs)
        res["num_steps"] = int(reference.num_steps[0])
        res["orthogonality (package measure)"] = float(reference.orthogonality)
        res["orthogonality (float64 Gram)"] = orthogonality_float64(reference.basis[0])
        if hasattr(LANCZOS_MODULE, "_orthogonality"):
            res["_orthogonality"] = clock.best(lambda: LANCZOS_MODULE._orthogonality(reference.basis, reference.num_steps), R)
        res["orthogonality_float64_chunked"] = clock.best(lambda: orthogonality_float64(reference.basis[0]), R)

        # Same figure per round (lanczos and passes of one round), as a check on the best-of figure.
        res["ratio_vs_one_pass_by_round"] = [
            (t - m * product["best"]) / total for t, total in zip(run_times["lanczos"], res["sum_one_pass_s_by_round"])
        ]
        t_run = timings["lanczos"]["best"]
        beyond = t_run - m * product["best"]
        res["per_step_beyond_matvec_s"] = beyond / m
        res["ratio_vs_one_pass"] = beyond / res["sum_one_pass_s"]
        if "_orthogonality" in res:
            res["ratio_vs_one_pass_without_orthogonality_measure"] = (beyond - res["_orthogonality"]["best"]) / res["sum_one_pass_s"]
            res["orthogonality_measure_fraction_of_run"] = res["_orthogonality"]["best"] / t_run
        res["ratio_two_passes_vs_one_pass"] = res["sum_two_passes_s"] / res["sum_one_pass_s"]
        res["dgks_vs_twice"] = dgks_vs_twice(op, m, kwargs, reference, run_times, product["best"], res)
        res["store_vectors_overhead_fraction"] = timings["lanczos(store_vectors=True)"]["best"] / t_run - 1.0
        reference_arrays = result_arrays(reference)
        del reference

        if not args.no_prototypes:
            res["prototypes"] = {}
            for proto_name, loop in PROTOTYPES.items():
                run = loop(op, m, args.seed, storage, clock)
                t = timings[f"prototype {proto_name}"]["best"]
                entry = {
                    "ratio_vs_one_pass": (t - m * product["best"]) / res["sum_one_pass_s"],
                    "speedup_vs_package": t_run / t,
                    "orthogonality (package measure)": float(run["orthogonality"]),
                    "orthogonality (float64 Gram)": orthogonality_float64(run["basis"]),
                    **compare_rules(reference_arrays, run),
                }
                if "_orthogonality" in res:
                    entry["ratio_vs_one_pass_without_orthogonality_measure"] = (
                        t - m * product["best"] - res["_orthogonality"]["best"]
                    ) / res["sum_one_pass_s"]
                if "second_passes" in run:
                    entry["second_passes"] = run["second_passes"]
                res["prototypes"][proto_name] = entry
                del run

        if not args.no_breakdown:
            log(f"[reorth] {name}: profile of the package run; instrumented loop of c726434")
            res["profile"] = profile_package(op, m, args.seed, storage, clock)
            before = loop_c726434(op, m, args.seed, storage, clock, instrument=True)
            parts = before["parts"]
            total = sum(parts.values())
            res["breakdown_c726434_s"] = parts
            res["breakdown_c726434_total_s"] = total
            res["breakdown_c726434_fraction"] = {k: v / total for k, v in parts.items()}
            del before
        if not args.no_prototypes:
            log(f"[reorth] {name}: prototypes on harder spectra")
            res["robustness"] = robustness(args, dtype, device, storage, clock)
        res["loadavg_end"] = load()
        out["runs"][name] = res
        del op, diagonal, probe, w
    return out


# --------------------------------------------------------------------------- report


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:8.3f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.3f} ms"
    return f"{seconds * 1e6:8.1f} us"


def print_dense(d: Dict[str, Any]) -> None:
    print(f"\n== dense: Lanczos m={d['steps']} vs dense eigensolvers, Wigner P={d['P']} "
          f"(best of {d['repeats']} / dense best of {d['dense_repeats']}; load {d['loadavg_start']} -> {d['loadavg_end']})")
    for name, t in d["exact"].items():
        print(f"  {name:<46} {fmt_s(t['best'])}   (all: {', '.join(f'{x:.2f}' for x in t['all'])})")
    for dtype, run in d["lanczos"].items():
        print(f"  -- Lanczos, {dtype}")
        for name, t in run["timings"].items():
            print(f"  {name:<46} {fmt_s(t['best'])}   (median {fmt_s(t['median']).strip()})")
        for name, ratio in run["speedup"].items():
            print(f"  speed-up {name:<62} {ratio:9.1f}x")
        q = run["quality"]
        print(f"  W1 = {q['wasserstein1']:.4g}   lambda_1 = {q['lambda_max']:.6f}, theta_1 = {q['theta_max']:.6f} "
              f"(err {q['abs_err_max']:.3g}, rel {q['rel_err_max']:.2e}, residual est. {q['residual_estimate_top']:.2e})")
        print(f"  lambda_P = {q['lambda_min']:.6f}, theta_m = {q['theta_min']:.6f} (err {q['abs_err_min']:.3g});"
              f"  orthogonality {q['orthogonality']:.2e}")
        if "prototype local_one_pass" in q:
            p = q["prototype local_one_pass"]
            print(f"  prototype local_one_pass: W1 = {p['wasserstein1']:.4g}, theta_1 = {p['theta_max']:.6f}, "
                  f"orthogonality {p['orthogonality']:.2e}, max |d theta|/||T|| = {p['max_abs_ritz_diff_rel']:.1e}, "
                  f"max |d tau^2| = {p['max_abs_weight_diff']:.1e}, second passes {p['second_passes']}")


def print_reorth(r: Dict[str, Any]) -> None:
    m = r["steps"]
    print(f"\n== reorth: Lanczos m={m} on a diagonal operator, P={r['P']} (best of {r['repeats']})")
    for dtype, res in r["runs"].items():
        print(f"  -- {dtype} (load {res['loadavg_start']} -> {res['loadavg_end']})")
        print(f"  {'matvec (op.matvec)':<52} {fmt_s(res['matvec']['best'])}")
        print(f"  {'apply_operator (matvec + finite check)':<52} {fmt_s(res['apply_operator (matvec + shape/finite checks)']['best'])}")
        if "transfer device->basis" in res:
            print(f"  {'transfer of one vector device -> basis device':<52} {fmt_s(res['transfer device->basis']['best'])}")
        print(f"  {'one CGS pass at k=' + str(m) + ' rows':<52} {fmt_s(res['one_pass_s_by_k'][-1])}"
              f"   ({res['one_pass_bandwidth_GBps_at_k_max']:.1f} GB/s)")
        print(f"  {'sum_k one pass, k=1..' + str(m):<52} {fmt_s(res['sum_one_pass_s'])}")
        print(f"  {'sum_k one fused pass (mv out=, addmv_), k=1..' + str(m):<52} {fmt_s(res['sum_fused_one_pass_s'])}"
              f"   ({res['sum_fused_one_pass_s'] / res['sum_one_pass_s']:.2f}x one pass)")
        print(f"  {'sum_k two passes of the package (_project_out x2)':<52} {fmt_s(res['sum_two_passes_s'])}"
              f"   ({res['ratio_two_passes_vs_one_pass']:.2f}x one pass)")
        gemv = res["gemv V@w at k=m"]["best"]
        print(f"  {'V @ w at k=' + str(m) + ' (gemv)':<52} {fmt_s(gemv)};  V @ [w, v]: "
              f"{res['gemm V@[w,v] at k=m']['best'] / gemv:.2f}x,  [w; v] @ V.T: {res['gemm [w;v]@V.T (2 x P) at k=m']['best'] / gemv:.2f}x")
        for name, t in res["timings"].items():
            print(f"  {name:<52} {fmt_s(t['best'])}   (median {fmt_s(t['median']).strip()})")
        if "_orthogonality" in res:
            print(f"  {'_orthogonality (end-of-run Gram matrix)':<52} {fmt_s(res['_orthogonality']['best'])}"
                  f"   ({100 * res['orthogonality_measure_fraction_of_run']:.1f}% of the run)")
        print(f"  {'same measure, float64 Gram by 2^13-column chunks':<52} {fmt_s(res['orthogonality_float64_chunked']['best'])}")
        print(f"  orthogonality: package measure {res['orthogonality (package measure)']:.2e}, "
              f"float64 Gram {res['orthogonality (float64 Gram)']:.2e}")
        print(f"  store_vectors=True overhead: {100 * res['store_vectors_overhead_fraction']:+.1f}%")
        line = f"  RATIO (lanczos - {m} matvec) / sum_k one pass = {res['ratio_vs_one_pass']:.2f}x  (aim: <= 2x; per round, median {np.median(res['ratio_vs_one_pass_by_round']):.2f}x)"
        if "ratio_vs_one_pass_without_orthogonality_measure" in res:
            line += f";  without the orthogonality measure {res['ratio_vs_one_pass_without_orthogonality_measure']:.2f}x"
        print(line)
        d = res["dgks_vs_twice"]
        print(f"  DGKS (default) vs reorthogonalisation='twice': {d['speedup']:.2f}x faster "
              f"(per round, median {np.median(d['speedup_by_round']):.2f}x); Ritz values differ by "
              f"{d['max_abs_ritz_diff_rel']:.1e} ||T||, weights by {d['max_abs_weight_diff']:.1e}")
        for name in ("dgks", "twice"):
            e = d[name]
            print(f"    {name:<6} reads of the basis per step: counted {e['reads_per_step_counted']:.2f} "
                  f"({e['second_passes']} second passes), time-equivalent {e['reads_per_step_time_equivalent']:.2f} "
                  f"({e['reads_per_step_time_equivalent_without_orthogonality_measure']:.2f} without the orthogonality measure); "
                  f"orthogonality {e['orthogonality (float64 Gram)']:.1e}")
        for name, p in res.get("prototypes", {}).items():
            extra = f", second passes {p['second_passes']}/{res['num_steps']}" if "second_passes" in p else ""
            without = p.get("ratio_vs_one_pass_without_orthogonality_measure")
            without = f" ({without:.2f}x without the orthogonality measure)" if without is not None else ""
            print(f"  prototype {name:<15} ratio {p['ratio_vs_one_pass']:.2f}x{without}, speed-up over the package {p['speedup_vs_package']:.2f}x")
            print(f"  {'':<25} orthogonality {p['orthogonality (float64 Gram)']:.1e}, vs package: max |d theta|/||T|| "
                  f"{p['max_abs_ritz_diff_rel']:.1e}, max |d tau^2| {p['max_abs_weight_diff']:.1e}{extra}")
        for case, entry in res.get("robustness", {}).items():
            if not isinstance(entry, dict):
                continue
            print(f"  harder spectrum '{case}' (P={res['robustness']['P']}, m={res['robustness']['steps']}):")
            for loop, e in entry.items():
                text = f"    {loop:<15} steps {e['num_steps']:4d}, orthogonality {e['orthogonality (float64 Gram)']:.1e}, theta_1 {e['theta_max']:.9g}"
                if "max_abs_ritz_diff_rel" in e:
                    text += f", vs package: max |d theta|/||T|| {e['max_abs_ritz_diff_rel']:.1e}, max |d tau^2| {e['max_abs_weight_diff']:.1e}"
                if "second_passes" in e:
                    text += f", second passes {e['second_passes']}"
                if "vs float64" in e:
                    text += (f"; vs float64 run (first {e['vs float64']['compared_steps']} steps): "
                             f"|d theta|/||T|| {e['vs float64']['max_abs_ritz_diff_rel']:.1e}, |d tau^2| {e['vs float64']['max_abs_weight_diff']:.1e}")
                print(text)
        if "profile" in res:
            prof = res["profile"]
            print(f"  profile of one package run ({fmt_s(prof['wall_s']).strip()} under the profiler), top operators by self time"
                  " (% of that wall time):")
            for row in prof["ops"]:
                device_part = f", device {fmt_s(row['self_device_s']).strip()}" if row["self_device_s"] else ""
                print(f"    {row['op']:<40} {row['calls']:6d} calls  cpu {fmt_s(row['self_cpu_s'])}"
                      f"  {100 * row['self_cpu_s'] / prof['wall_s']:5.1f}%{device_part}")
        if "breakdown_c726434_s" in res:
            print(f"  breakdown of the package loop as of c726434 (instrumented, {fmt_s(res['breakdown_c726434_total_s']).strip()}):")
            for name, seconds in sorted(res["breakdown_c726434_s"].items(), key=lambda kv: -kv[1]):
                print(f"    {name:<56} {fmt_s(seconds)}  {100 * res['breakdown_c726434_fraction'][name]:5.1f}%")


def main(args: argparse.Namespace) -> Dict[str, Any]:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    storage = torch.device(args.basis_device) if args.basis_device is not None else device
    for d in (device, storage):
        if d.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"--device/--basis-device {d} asked for, but torch.cuda.is_available() is False")
    clock = Clock(device, storage)
    report: Dict[str, Any] = {"environment": environment(args, device, storage)}
    env = report["environment"]
    print(f"curvwidgets Lanczos benchmark  {env['date']}")
    print(f"  CPU: {env['cpu_model']} ({env['cpu_family_model']}), {env['cpu_count']} cores, torch threads {env['torch_threads']}"
          f"; torch {env['torch']}, numpy {env['numpy']}, scipy {env['scipy']}")
    print(f"  device {device}, basis device {storage}{'; ' + str(env['gpus']) if 'gpus' in env else ''}; load average {env['loadavg_start']}")
    with torch.no_grad():
        if "dense" in args.sections:
            report["dense"] = bench_dense(args, device, storage, clock)
            print_dense(report["dense"])
        if "reorth" in args.sections:
            report["reorth"] = bench_reorth(args, device, storage, clock)
            print_reorth(report["reorth"])
    env["loadavg_end"] = load()
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nJSON written to {path}")
    return report


if __name__ == "__main__":
    main(ARGS)

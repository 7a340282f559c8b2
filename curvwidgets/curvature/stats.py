"""The paper's "advanced statistics" of a loss surface, as a dict of floats.

All statistics are over the mini-batches of ``data`` and the selected
parameters; under ``torch.distributed`` they are reduced over ranks. With
batch means ``x_b`` and batch weights ``W_b`` (the batch size ``n_b``, or for
a loss with ``ignore_index`` or class weights the weight of the targets it
counts; ``W = sum W_b``), the mean is ``x = sum W_b x_b / W``, which is the
value on one batch of every sample, and the variance ``sum W_b ||x_b - x||^2 /
W``: for vectors, the trace of the covariance of the mini-batch estimate. A
NaN or infinite loss, gradient or product makes the statistics built on it NaN.

The statistics are of the loss as the user defined it over the whole data as
one batch: for ``reduction="sum"`` the loss, gradient and curvature of the sum
over every sample, ``W`` times the mean's, and the mini-batch estimates of
them (``W x_b``) alike: losses and traces scale by ``W``, squared norms and
variances by ``W^2``.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .._validate import check_cancel, check_progress, choice, positive_int, seed_value
from ..linalg.estimates import Estimate
from ..losses import ModelLoss
from ..progress import CancelToken, ProgressCallback, report
from .data import all_reduce_sum
from .operators import GGN, CurvatureOperator, Hessian
from .output_hessian import reduction_of
from .params import ParamsLike

__all__ = ["loss_stats", "STATISTICS", "BACKENDS", "curvature_names"]

#: ``loss_stats(backend=...)``: "forward-mode" is each matrix's forward-mode backend.
BACKENDS = ("auto", "forward-mode", "double-backward")

STATISTICS = {
    "loss_mean": "the loss over all samples as one batch (their mean; for reduction='sum' their sum)",
    "loss_variance": "variance of the mini-batch estimate of that loss over mini-batches",
    "gradient_norm_sq": "||g||^2 of the full-data gradient g",
    "gradient_variance": "sum_b W_b ||g_b - g||^2 / W: trace of the mini-batch gradient covariance",
    "{c}_vector_norm_sq": "||C u||^2 for a random unit vector u (C = hessian or ggn)",
    "{c}_vector_variance": "sum_b W_b ||C_b u - C u||^2 / W over mini-batches",
    "{c}_trace": "Hutchinson estimate of tr(C): mean of z^T C z over Rademacher z",
    "{c}_trace_se": "its standard error: std(z^T C z) / sqrt(num_probes) (NaN for one probe)",
    "{c}_frobenius_sq": "Hutchinson estimate of ||C||_F^2: mean of ||C z||^2 over Rademacher z",
    "{c}_frobenius_sq_se": "its standard error: std(||C z||^2) / sqrt(num_probes) (NaN for one probe)",
    "weight_l2": "L2 norm of the selected parameters",
    "weight_linf": "largest absolute value of the selected parameters",
    "num_samples": "number of samples N (in batches whose loss counts any target)",
}


class _Moments:
    """Accumulates ``sum W_b``, ``sum W_b x_b`` and ``sum W_b ||x_b||^2`` of float64 tensors."""

    def __init__(self, shape: Tuple[int, ...], device: torch.device):
        self.weight = torch.zeros((), dtype=torch.float64, device=device)
        self.first = torch.zeros(shape, dtype=torch.float64, device=device)
        self.second = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, weight: float, value: torch.Tensor) -> None:
        self.weight += weight
        self.first += weight * value
        self.second += weight * torch.sum(value * value)

    def reduce(self) -> Tuple[torch.Tensor, float]:
        """The weighted mean, and the weighted variance ``E||x||^2 - ||E x||^2``, over ranks.

        The variance is clipped at 0 against rounding; a NaN (from a NaN or
        infinite ``x_b``) stays NaN.
        """
        for tensor in (self.weight, self.first, self.second):
            all_reduce_sum(tensor)
        mean = self.first / self.weight
        return mean, (self.second / self.weight - torch.sum(mean * mean)).clamp_min(0.0).item()


def _curvature_statistics(op: CurvatureOperator, name: str, num_probes: int, seed: int,
                          batch_done: Callable[[], None], scale: float) -> Dict[str, float]:
    """One pass over the data: the product along a random unit vector per batch, and Hutchinson probes.

    ``batch_done`` is called after each batch (it reports progress and may
    raise ``Cancelled``). The statistics are of the mean loss's curvature
    times ``scale`` (``W`` for a summed loss, else 1).
    """
    generator = torch.Generator().manual_seed(int(seed))
    direction = torch.randn(op.dim, 1, generator=generator, dtype=torch.float64)
    direction /= torch.linalg.vector_norm(direction)
    probes = (torch.randint(0, 2, (op.dim, num_probes), generator=generator) * 2 - 1).double()
    block = torch.cat([direction, probes], dim=1).to(op.device, op.dtype)
    along = _Moments((op.dim,), op.device)
    probe_sum = torch.zeros(op.dim, num_probes, dtype=torch.float64, device=op.device)
    for weight, product in op.batch_products(block):
        along.add(weight, product[:, 0] / weight)
        probe_sum += product[:, 1:]
        batch_done()
    mean, variance = along.reduce()
    count = along.weight
    probe_products = all_reduce_sum(probe_sum) / count
    probes = block[:, 1:].to(torch.float64)
    trace = Estimate.of(scale * torch.sum(probes * probe_products, 0).cpu().numpy())
    frobenius = Estimate.of(scale**2 * torch.sum(probe_products**2, 0).cpu().numpy())
    return {
        f"{name}_vector_norm_sq": scale**2 * torch.sum(mean * mean).item(),
        f"{name}_vector_variance": scale**2 * variance,
        f"{name}_trace": trace.value,
        f"{name}_trace_se": trace.standard_error,
        f"{name}_frobenius_sq": frobenius.value,
        f"{name}_frobenius_sq_se": frobenius.standard_error,
    }


def loss_stats(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Iterable,
    params: ParamsLike = None,
    bn_mode: str = "eval",
    curvature: Union[str, Sequence[str], None] = None,
    num_probes: int = 10,
    seed: int = 0,
    num_samples: Optional[int] = None,
    device=None,
    dtype=None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    *,
    backend: str = "auto",
    vector_chunk: Union[int, str] = "auto",
    sample_chunk: Union[int, str, None] = "auto",
) -> Dict[str, float]:
    """Loss, gradient and curvature statistics of ``model`` on ``data``.

    Parameters
    ----------
    model, loss_fn, data, params, bn_mode, num_samples, device, dtype
        As for :class:`~curvwidgets.curvature.Hessian`.
    curvature : {"hessian", "ggn"} or a sequence of them, optional
        Which curvature matrices to describe; one pass over the data each
        (an empty sequence: none). By default both, or the Hessian alone for
        a :class:`~curvwidgets.losses.ModelLoss` (which has no GGN).
    num_probes : int, default: 10
        Rademacher probes of the Hutchinson estimates.
    seed : int, default: 0
        Seed of the random unit vector and the probes.
    progress, cancel
        The progress protocol: stage ``"loss_stats"``, an event with
        ``step=0`` once the inputs are checked, then one per batch of each
        pass over the data (the gradient pass first, then one per entry
        of ``curvature``), ``step`` counting batches over all passes and
        ``total = (1 + len(curvature)) * batches``; the partial result is the
        dict of the passes completed (the event of a pass's last batch
        includes that pass). ``cancel`` is honoured after every batch.
    backend : {"auto", "forward-mode", "double-backward"}, default: "auto"
        How curvature products are differentiated (``"forward-mode"``: each
        matrix's forward-mode backend, forward-over-reverse for the Hessian).
        ``"auto"`` times them once per matrix with ``vector_chunk``, on a
        slice of the first batch (see :meth:`~curvwidgets.curvature.Hessian.plan_for`).
    vector_chunk : int or "auto", default: "auto"
        Vectors pushed through a pass at once (``"auto"``: timed); the block
        of a pass is the random unit vector and the ``num_probes`` probes.
    sample_chunk : int, "auto" or None, default: "auto"
        Samples per pass; with ``vector_chunk`` it bounds the memory of the
        products. See :class:`~curvwidgets.curvature.Hessian`. The variances
        stay over the batches of ``data`` however they are split.

    Returns
    -------
    dict of str to float
        The keys of :data:`STATISTICS`, with ``{c}`` replaced by each entry of
        ``curvature``.

    Raises
    ------
    ValueError
        ``curvature`` naming another matrix; ``num_probes``, ``seed`` or
        ``vector_chunk`` not a valid int; ``backend`` not in :data:`BACKENDS`;
        a loss that counts no target of ``data``; and the errors of
        :class:`~curvwidgets.curvature.Hessian`.
    Cancelled
        When ``cancel`` is set; it carries the statistics of the completed passes.
    TypeError
        ``curvature`` neither a name nor a sequence of names; ``progress`` or
        ``cancel`` not following the progress protocol.
    """
    curvature = curvature_names(curvature if curvature is not None else
                                ("hessian",) if isinstance(loss_fn, ModelLoss) else ("hessian", "ggn"))
    positive_int("num_probes", num_probes)
    seed_value("seed", seed)
    choice("backend", backend, BACKENDS)
    check_progress(progress)
    check_cancel(cancel)
    arguments = dict(params=params, bn_mode=bn_mode, num_samples=num_samples, seed=seed, device=device, dtype=dtype,
                     vector_chunk=vector_chunk, sample_chunk=sample_chunk)
    operators = {"hessian": Hessian, "ggn": GGN}

    def operator(name: str) -> CurvatureOperator:
        kind = operators[name]
        return kind(model, loss_fn, data, **arguments,
                    backend=kind.preferred_backend if backend == "forward-mode" else backend)

    ops = {name: operator(name) for name in curvature}  # built first: their arguments are checked before any work
    first = ops[curvature[0]] if curvature else operator("hessian")
    statistics: Dict[str, float] = {}
    batches = first.data.batch_count()
    total = (1 + len(curvature)) * batches
    done = 0
    report(progress, cancel, "loss_stats", 0, total, partial=lambda: dict(statistics))  # inputs checked

    def batch_done() -> None:
        nonlocal done
        done += 1
        if done % batches:  # a pass's last batch is reported by pass_done, with the pass's statistics
            report(progress, cancel, "loss_stats", done, total, partial=lambda: dict(statistics))

    def pass_done(passes: int) -> None:  # also after batches of weight 0, which yield nothing
        nonlocal done
        done = passes * batches
        report(progress, cancel, "loss_stats", done, total, partial=lambda: dict(statistics))

    losses = _Moments((), first.device)
    gradients = _Moments((first.dim,), first.device)
    samples = 0
    for size, weight, loss, gradient in first.batch_gradients():
        samples += size
        losses.add(weight, torch.tensor(loss, dtype=torch.float64, device=first.device))
        gradients.add(weight, gradient)
        batch_done()
    loss_mean, loss_variance = losses.reduce()
    first.check_total_weight(losses.weight)
    gradient_mean, gradient_variance = gradients.reduce()
    scale = losses.weight.item() if reduction_of(loss_fn) == "sum" else 1.0  # the summed loss's: W times the mean's
    weights = torch.cat([p.detach().reshape(-1) for name, p in model.named_parameters() if name in set(first.layout.names)])
    statistics.update({
        "loss_mean": scale * loss_mean.item(),
        "loss_variance": scale**2 * loss_variance,
        "gradient_norm_sq": scale**2 * torch.sum(gradient_mean * gradient_mean).item(),
        "gradient_variance": scale**2 * gradient_variance,
        "weight_l2": torch.linalg.vector_norm(weights.double()).item(),
        "weight_linf": weights.abs().max().item(),
        "num_samples": all_reduce_sum(torch.tensor(float(samples), dtype=torch.float64, device=first.device)).item(),
    })
    pass_done(1)
    for passes, (name, op) in enumerate(ops.items(), start=2):
        statistics.update(_curvature_statistics(op, name, num_probes, seed, batch_done, scale))
        pass_done(passes)
    return statistics


def curvature_names(curvature: Union[str, Sequence[str]]) -> List[str]:
    """``curvature`` as a list of distinct names from ``("hessian", "ggn")``, in the order given."""
    names = [curvature] if isinstance(curvature, str) else curvature
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"curvature must be 'hessian', 'ggn' or a list of them; got {curvature!r}")
    unknown = sorted(set(names) - {"hessian", "ggn"})
    if unknown:
        raise ValueError(f"curvature must name 'hessian' and/or 'ggn'; got {unknown}")
    return list(dict.fromkeys(names))

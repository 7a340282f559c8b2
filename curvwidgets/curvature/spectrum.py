"""The Lanczos spectrum of a model's Hessian or GGN as a :class:`~curvwidgets.results.Spectrum`, in one call."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import torch
from torch import nn

from .._validate import boolean, check_cancel, check_progress, choice, positive, positive_int
from ..linalg._checks import NonFiniteProduct
from ..linalg.lanczos import lanczos
from ..progress import Cancelled, CancelToken, ProgressCallback, report
from ..results import Fingerprint, Spectrum
from .fingerprint import fingerprint
from .operators import GGN, BN_MODES, Hessian
from .params import ParamsLike

__all__ = ["spectrum", "MATRICES", "curvature_operator", "batches_of"]

#: The curvature matrices :func:`spectrum` takes, and their operator classes.
MATRICES = {"hessian": Hessian, "ggn": GGN}


def batches_of(data: Any) -> Iterable:
    """The batches a curvature computation runs on: a DataSet's training split without augmentation, else ``data``."""
    from ..training.data import DataSet  # the training layer is imported only for its data sets

    return data.evaluation_loader("train") if isinstance(data, DataSet) else data


def curvature_operator(model: nn.Module, data: Any, matrix: str = "hessian", **options: Any) -> Union[Hessian, GGN]:
    """``cw.Hessian`` or ``cw.GGN`` of ``model`` on ``data`` (a DataSet: its unaugmented training split).

    ``options`` go to the operator (``loss_fn`` defaults to the data set's,
    :func:`curvwidgets.data.default_loss`: cross-entropy but for ``tinytext``).
    """
    from ..training.data import default_loss

    choice("matrix", matrix, tuple(MATRICES))
    loss_fn = options.pop("loss_fn", None)
    loss_fn = loss_fn if loss_fn is not None else default_loss(data)
    return MATRICES[matrix](model, loss_fn, batches_of(data), **options)


def spectrum(
    model: nn.Module,
    data: Any,
    matrix: str = "hessian",
    steps: int = 30,
    num_vectors: int = 1,
    *,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    params: ParamsLike = None,
    bn_mode: str = "eval",
    num_samples: Optional[int] = None,
    seed: int = 0,
    backend: str = "auto",
    save_vectors: bool = False,
    basis_device: Union[str, torch.device, None] = None,
    meta: Optional[Mapping[str, Any]] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    tol: Optional[float] = None,
    tol_pairs: int = 1,
) -> Spectrum:
    """Lanczos spectrum of the Hessian or GGN of ``model``'s mean loss over ``data``.

    Parameters
    ----------
    model : nn.Module
        Left exactly as found (parameters, buffers, ``training`` flags).
    data : DataSet or re-iterable of (inputs, targets)
        A :class:`~curvwidgets.training.data.DataSet` means its training split
        in a fixed order without augmentation.
    matrix : {"hessian", "ggn"}, default: "hessian"
    steps : int, default: 30
        Lanczos steps ``m`` per start vector (the most, with ``tol``).
    num_vectors : int, default: 1
        Random start vectors (the paper uses one). With several, the trace,
        moments and negative mass come with standard errors
        (:meth:`~curvwidgets.results.Spectrum.estimates`).
    loss_fn : callable, optional
        Default: the data set's (:func:`curvwidgets.data.default_loss`:
        :class:`~curvwidgets.losses.SequenceCrossEntropyLoss` for
        ``tinytext``), else ``nn.CrossEntropyLoss()``.
    params, bn_mode, num_samples, seed, backend
        As for :class:`~curvwidgets.Hessian` (``seed`` also seeds the start vectors).
    save_vectors : bool, default: False
        Keep the Ritz vectors (float32, ``num_vectors * steps * P`` numbers),
        which landscapes along eigenvectors need.
    basis_device : optional
        Where the Lanczos basis lives (``"cpu"`` to offload it from a GPU).
    meta : mapping, optional
        Extra metadata (model name, checkpoint, epoch, data, ...) to record.
    progress, cancel
        The progress protocol: an event with ``step=0`` once the inputs are
        checked, then one per Lanczos step (``stage="lanczos"``, the partial
        ``LanczosResult``); a cancel raises
        :class:`~curvwidgets.Cancelled` carrying the partial :class:`Spectrum`.
    tol, tol_pairs
        Stop each run once its ``tol_pairs`` largest Ritz values have residual
        estimates ``<= tol * |theta|`` (see :func:`~curvwidgets.lanczos`);
        recorded in ``meta``.

    Returns
    -------
    Spectrum
        With ``meta``: ``matrix``, ``params``, ``bn_mode``, ``backend`` (the one
        used), ``plan`` (:attr:`~curvwidgets.curvature.Plan.to_meta` of the
        products' plan and its timings), ``steps``, ``num_vectors``, ``seed``, ``num_samples``, ``dim``,
        ``seconds``, ``seconds_per_step``, ``version``,
        ``weights_fingerprint`` (:func:`~curvwidgets.fingerprint` of ``model``
        and ``params``: landscapes along its eigenvectors check it), and what
        ``meta`` gave.

    Raises
    ------
    ValueError, TypeError
        A bad argument, named in the message (and those of :class:`~curvwidgets.Hessian`);
        a ``ValueError`` also when the products are not finite (NaN or inf in
        ``data`` or the weights).
    """
    from .. import __version__

    choice("matrix", matrix, tuple(MATRICES))
    choice("bn_mode", bn_mode, BN_MODES)
    steps, num_vectors = positive_int("steps", steps), positive_int("num_vectors", num_vectors)
    tol = None if tol is None else positive("tol", tol)
    tol_pairs = positive_int("tol_pairs", tol_pairs)
    boolean("save_vectors", save_vectors)
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be None or a mapping of metadata; got {type(meta).__name__}")
    check_progress(progress)
    check_cancel(cancel)
    op = curvature_operator(model, data, matrix, loss_fn=loss_fn, params=params, bn_mode=bn_mode,
                            num_samples=num_samples, seed=seed, backend=backend)
    weights = fingerprint(model, params).to_meta()
    report(progress, cancel, "lanczos", 0, steps, partial=lambda: None)  # inputs checked, the first product next
    began = time.perf_counter()

    def wrap(result: Any, steps_done: int) -> Spectrum:
        seconds = time.perf_counter() - began
        record = {**dict(meta or {}), "matrix": matrix, "params": params if isinstance(params, (str, list)) else None,
                  "bn_mode": bn_mode, "backend": op.backend, "plan": op.plan.to_meta() if op.plan else None,
                  "steps": steps, "num_vectors": num_vectors, "seed": seed, "tol": tol,
                  "num_samples": num_samples if num_samples is not None else getattr(op.data.data, "num_samples", None),
                  "seconds": seconds, "seconds_per_step": seconds / max(steps_done, 1),
                  "version": __version__, Fingerprint.META_KEY: weights}
        return Spectrum.from_lanczos(result, record, save_vectors=save_vectors)

    try:
        result = lanczos(op, steps, num_vectors=num_vectors, seed=seed, store_vectors=save_vectors,
                         basis_device=basis_device, progress=progress, cancel=cancel, tol=tol, tol_pairs=tol_pairs)
    except Cancelled as stopped:
        raise Cancelled(wrap(stopped.result, stopped.step), stopped.step, stopped.stage) from None
    except NonFiniteProduct as error:
        raise NonFiniteProduct(f"the {matrix} of the model's loss on data is not finite ({error}); look for NaN or "
                               "inf in data or in the model's weights") from error
    return wrap(result, int(result.num_steps.max()))

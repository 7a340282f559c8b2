"""Which parameters of a model a curvature operator acts on, and the flat-vector layout."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = ["ParamsLike", "ParameterLayout", "select_parameters"]

ParamsLike = Union[None, str, Sequence[str], nn.Module, Sequence[torch.Tensor]]


@dataclass(frozen=True)
class ParameterLayout:
    """The selected parameters and how a flat vector of length ``dim`` maps onto them.

    A flat vector is the concatenation of the flattened selected parameters,
    in the order of ``model.named_parameters()``.

    Attributes
    ----------
    names : tuple of str
        Qualified names of the selected parameters.
    shapes : tuple of torch.Size
        Their shapes.
    """

    names: Tuple[str, ...]
    shapes: Tuple[torch.Size, ...]

    @property
    def sizes(self) -> Tuple[int, ...]:
        """Number of entries of each selected parameter."""
        return tuple(shape.numel() for shape in self.shapes)

    @property
    def dim(self) -> int:
        """Length ``P`` of a flat vector."""
        return sum(self.sizes)

    def unflatten(self, vector: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Views of a flat ``vector`` (shape ``(P,)``, or ``(P, k)`` for ``k`` vectors) per parameter.

        For ``(P, k)`` each view has shape ``(k, *parameter.shape)``.
        """
        pieces = torch.split(vector, self.sizes, dim=0)
        if vector.ndim == 1:
            return tuple(piece.view(shape) for piece, shape in zip(pieces, self.shapes))
        return tuple(piece.T.reshape(vector.shape[1], *shape) for piece, shape in zip(pieces, self.shapes))

    def flatten(self, tensors: Sequence[torch.Tensor], batched: bool = False) -> torch.Tensor:
        """Inverse of :meth:`unflatten`: shape ``(P,)``, or ``(P, k)`` when ``batched``."""
        if batched:
            return torch.cat([tensor.reshape(tensor.shape[0], -1) for tensor in tensors], dim=1).T
        return torch.cat([tensor.reshape(-1) for tensor in tensors])


def select_parameters(model: nn.Module, params: ParamsLike = None) -> ParameterLayout:
    """Resolve ``params`` to a :class:`ParameterLayout` of ``model``'s trainable parameters.

    Parameters
    ----------
    model : nn.Module
    params : None, str, sequence of str, nn.Module or sequence of tensors
        None: every parameter with ``requires_grad``. Strings: glob patterns
        over qualified names (``"features.0.*"``, ``"*.bias"``); every pattern
        must match. A submodule of ``model``: its parameters. Tensors:
        parameters of ``model``, given as objects.

    Raises
    ------
    TypeError
        ``model`` not a module; ``params`` of another type, or a list mixing
        names and tensors.
    ValueError
        No trainable parameters; an empty selection; a pattern that matches
        nothing; a module or tensor that is not part of ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    named: Dict[str, torch.Tensor] = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not named:
        raise ValueError("model has no trainable parameters (none with requires_grad=True)")
    if isinstance(params, (list, tuple)) and not params:
        raise ValueError("params is an empty selection: name at least one parameter, or pass None for all of them")
    if params is None:
        chosen = list(named)
    elif isinstance(params, str) or (isinstance(params, (list, tuple)) and params and all(isinstance(p, str) for p in params)):
        patterns = [params] if isinstance(params, str) else list(params)
        chosen = []
        for pattern in patterns:
            matches = [name for name in named if fnmatch.fnmatchcase(name, pattern)]
            if not matches:
                raise ValueError(f"params pattern {pattern!r} matches no trainable parameter; names are e.g. {list(named)[:5]}")
            chosen.extend(matches)
    elif isinstance(params, nn.Module):
        owned = {id(p) for p in params.parameters()}
        chosen = [name for name, p in named.items() if id(p) in owned]
        if not chosen:
            raise ValueError("params module has no trainable parameters of model (is it a submodule of model?)")
    elif isinstance(params, (list, tuple)) and params and all(isinstance(p, torch.Tensor) for p in params):
        by_id = {id(p): name for name, p in named.items()}
        missing = [index for index, p in enumerate(params) if id(p) not in by_id]
        if missing:
            raise ValueError(f"params tensors at positions {missing} are not trainable parameters of model")
        chosen = [by_id[id(p)] for p in params]
    else:
        kinds = sorted({type(p).__name__ for p in params}) if isinstance(params, (list, tuple)) else None
        raise TypeError(
            "params must be None, a glob pattern or list of patterns, a submodule, or a list of parameter tensors; "
            f"got {type(params).__name__}" + (f" of {', '.join(kinds)}" if kinds else "")
        )
    order = [name for name in named if name in set(chosen)]
    return ParameterLayout(tuple(order), tuple(named[name].shape for name in order))

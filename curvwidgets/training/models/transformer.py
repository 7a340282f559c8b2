"""A small causal transformer language model, GPT-style, that trains in seconds on a CPU.

Written out in plain tensor operations (attention included, with an explicit
causal mask) so that every curvature backend differentiates through it:
``torch.func.functional_call``, ``torch.func.vmap`` over parameters, forward
mode (``torch.func.jvp``) and double backward. PyTorch's fused
``scaled_dot_product_attention`` has neither forward-mode nor second
derivatives on the CPU, and ``nn.MultiheadAttention`` calls it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..._validate import positive_int

__all__ = ["TinyTransformer"]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``t`` attends to positions ``<= t`` only.

    Input and output ``(..., T, d_model)``; ``d_model`` must be divisible by ``n_heads``.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., T, d_model)`` to ``(..., T, d_model)``: ``softmax(q k^T / sqrt(d_head))`` over positions ``<= t``."""
        length = x.shape[-2]
        heads = self.qkv(x).unflatten(-1, (3, self.n_heads, -1)).movedim(-4, -2)  # (..., 3, heads, T, d_head)
        query, key, value = heads.unbind(-4)
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
        later = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        weights = torch.softmax(scores.masked_fill(later, float("-inf")), dim=-1)
        return self.out((weights @ value).movedim(-3, -2).flatten(-2))


class Block(nn.Module):
    """Pre-LayerNorm block: ``x + attention(LN(x))``, then ``x + MLP(LN(x))`` (GELU, width ``4 d_model``)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., T, d_model)`` to ``(..., T, d_model)``."""
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Causal transformer language model: token and learned position embeddings, pre-LN blocks, LayerNorm, linear head.

    The logits at position ``t`` depend on the tokens at positions ``0 .. t``
    only, so one forward pass predicts every next token of a window. There is
    no dropout: the network is a deterministic function of its parameters,
    as curvature needs.

    Parameters
    ----------
    num_classes : int, default: 10
        Vocabulary size ``V``: token ids are in ``0 .. V - 1`` and each
        position gets ``V`` logits (the name is the registry's, see
        :func:`curvwidgets.training.models.create`).
    in_channels : int, default: 3
        Accepted so that the registry can pass it (``cw.train`` passes the
        data's first input dimension) and ignored: the inputs are token ids.
    d_model : int, default: 64
        Width of the embeddings and the residual stream.
    n_layers : int, default: 2
        Number of transformer blocks.
    n_heads : int, default: 4
        Attention heads per block; must divide ``d_model``.
    context : int, default: 32
        Longest window ``T`` the position embedding covers.

    Notes
    -----
    Input: int64 token ids of shape ``(B, T)`` with ``1 <= T <= context``.
    Output: logits of shape ``(B, T, V)``, the vocabulary last, as language
    models return them (train them with
    :class:`~curvwidgets.losses.SequenceCrossEntropyLoss`).

    Parameters: ``V d`` (token embedding) + ``context d`` (positions) +
    ``n_layers (12 d^2 + 13 d)`` (per block: two LayerNorms ``4 d``, the
    query/key/value projection ``3 d^2 + 3 d``, the output projection
    ``d^2 + d``, the MLP ``8 d^2 + 5 d``) + ``2 d`` (final LayerNorm) +
    ``d V + V`` (head), with ``d = d_model``: 107,304 with the defaults and
    ``V = 40``.

    Examples
    --------
    >>> model = TinyTransformer(num_classes=40)
    >>> model(torch.zeros(2, 16, dtype=torch.int64)).shape
    torch.Size([2, 16, 40])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        context: int = 32,
    ) -> None:
        super().__init__()
        vocabulary = positive_int("num_classes", num_classes)
        positive_int("in_channels", in_channels)
        d_model = positive_int("d_model", d_model)
        n_layers = positive_int("n_layers", n_layers)
        n_heads = positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"n_heads must divide d_model = {d_model}; got n_heads={n_heads}")
        self.context = positive_int("context", context)
        self.tokens = nn.Embedding(vocabulary, d_model)
        self.positions = nn.Embedding(self.context, d_model)
        self.blocks = nn.Sequential(*(Block(d_model, n_heads) for _ in range(n_layers)))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocabulary)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map int64 token ids ``(B, T)``, ``T <= context``, to next-token logits ``(B, T, V)`` (any leading dims)."""
        if tokens.ndim == 0 or tokens.shape[-1] > self.context:
            raise ValueError(f"tokens must have shape (B, T) with T <= context = {self.context}; "
                             f"got {tuple(tokens.shape)}")
        where = torch.arange(tokens.shape[-1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(where)
        return self.head(self.norm(self.blocks(x)))

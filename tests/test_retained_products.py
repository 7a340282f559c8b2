"""RetainedProducts: the operators' products with each pass's graph kept, against dense autograd references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.curvature.retained import RetainedProducts

from curvature_cases import assert_unchanged, classification_data, cnn, dense_ggn, dense_hessian, mlp, snapshot

OPERATORS = {"hessian": (cw.Hessian, dense_hessian), "ggn": (cw.GGN, dense_ggn)}


@pytest.mark.parametrize("matrix", sorted(OPERATORS))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("sample_chunk", [None, 3])
def test_products_and_gradient_match_dense_references(matrix, reduction, sample_chunk):
    operator_class, dense = OPERATORS[matrix]
    model = cnn(batch_norm=True)
    batches, inputs, targets = classification_data(model)
    loss_fn = nn.CrossEntropyLoss(reduction=reduction)
    names = [name for name, _ in model.named_parameters()]
    before = snapshot(model)
    retained = RetainedProducts(operator_class(model, loss_fn, batches, sample_chunk=sample_chunk))
    reference = dense(model, loss_fn, inputs, targets, names)
    block = torch.randn(retained.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(retained @ block, reference @ block, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(retained @ block[:, 0], reference @ block[:, 0], rtol=1e-10, atol=1e-12)
    model.eval()
    parameters = list(model.parameters())
    expected = torch.cat([piece.reshape(-1) for piece in torch.autograd.grad(loss_fn(model(inputs), targets), parameters)])
    torch.testing.assert_close(retained.gradient(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(retained.operator.gradient(), expected, rtol=1e-10, atol=1e-12)
    model.train()
    assert_unchanged(model, before)
    assert len(retained.passes) == (10 if sample_chunk == 3 else len(batches))  # 7, 5, 8, 4 in threes: 3 + 2 + 3 + 2


def test_ignored_targets_weight_the_passes_as_the_loss_counts():
    model = mlp()
    batches, inputs, targets = classification_data(model, sizes=(6, 6))
    targets = targets.clone()
    targets[:5] = -100  # the first pass of 3 counts nothing, the second 1 of 3
    batches = [(inputs[:6], targets[:6]), (inputs[6:], targets[6:])]
    loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
    names = [name for name, _ in model.named_parameters()]
    retained = RetainedProducts(cw.Hessian(model, loss_fn, batches, sample_chunk=3))
    vector = torch.randn(retained.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(retained @ vector, dense_hessian(model, loss_fn, inputs, targets, names) @ vector,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("selected", [None, ["0.weight"]])
def test_weights_changed_afterwards_are_not_seen(selected):
    """Neither the selected parameters nor the others: an optimiser's in-place step after it is made."""
    model = mlp()
    batches, inputs, targets = classification_data(model)
    loss_fn = nn.CrossEntropyLoss()
    names = selected or [name for name, _ in model.named_parameters()]
    retained = RetainedProducts(cw.Hessian(model, loss_fn, batches, params=selected))
    reference = dense_hessian(model, loss_fn, inputs, targets, names)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.5)
    vector = torch.randn(retained.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(retained @ vector, reference @ vector, rtol=1e-10, atol=1e-12)


def test_bad_operator_and_vector_are_named():
    with pytest.raises(TypeError, match="operator must be a cw.Hessian or cw.GGN"):
        RetainedProducts(torch.eye(3))
    model = mlp()
    retained = RetainedProducts(cw.Hessian(model, nn.CrossEntropyLoss(), classification_data(model)[0]))
    with pytest.raises(ValueError, match=r"must have shape \(57,\)"):
        retained @ torch.zeros(retained.dim + 1, dtype=torch.float64)

"""The loss as the user defined it: the mean or the sum over every sample of the data, as one batch.

Every estimator (operator products, GGN diagonals, ``loss_stats``, landscapes)
is compared, in float64, with a dense autograd reference of ``loss_fn`` over
all samples concatenated into one batch: nothing rescaled. The cases are those
of ``test_ggn_diagonal``: cross-entropy with class weights, ``ignore_index``
(a wholly ignored batch included), label smoothing and probability targets,
MSE and BCE with logits, with single and sequence outputs, over unequal batches;
and ``SequenceCrossEntropyLoss`` (classes last), the mean over the tokens it
counts.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import curvwidgets as cw
from curvature_cases import dense_ggn, dense_hessian
from curvwidgets.curvature import ggn_diagonal
from test_ggn_diagonal import REDUCED_CASES, case, generator, names, split

TOL = 1e-12


def assert_close(estimate, reference, tol=TOL):
    scale = reference.abs().max()
    assert scale > 0
    error = (estimate - reference).abs().max() / scale
    assert error <= tol, f"relative error {error:.3e} > {tol:.0e}"


@pytest.mark.parametrize("name, reduction", REDUCED_CASES)
def test_hessian_and_ggn_are_those_of_the_loss_over_all_samples_as_one_batch(name, reduction):
    model, loss, inputs, targets = case(name)
    loss_fn = loss(reduction)
    data = split(inputs, targets)
    hessian, ggn = cw.Hessian(model, loss_fn, data), cw.GGN(model, loss_fn, data)
    block = torch.randn(hessian.dim, 3, generator=generator(40), dtype=torch.float64)
    assert_close(hessian @ block, dense_hessian(model, loss_fn, inputs, targets, names(model)) @ block)
    assert_close(ggn @ block, dense_ggn(model, loss_fn, inputs, targets, names(model)) @ block)


@pytest.mark.parametrize("name", ["ce_weights_ignore", "seq_ce_all", "mse", "seq_bce"])
def test_the_ggn_diagonal_of_a_summed_loss_is_the_dense_one_of_the_sum(name):
    model, loss, inputs, targets = case(name)
    summed = loss("sum")
    reference = torch.diagonal(dense_ggn(model, summed, inputs, targets, names(model)))
    assert_close(ggn_diagonal(cw.GGN(model, summed, split(inputs, targets))), reference)


def test_a_plain_function_is_a_mean_unless_it_says_it_sums():
    model, _, inputs, targets = case("mse")
    data = split(inputs, targets)

    def summed(outputs, targets):
        return F.mse_loss(outputs, targets, reduction="sum")

    def mean(outputs, targets):
        return F.mse_loss(outputs, targets)

    block = torch.randn(cw.Hessian(model, mean, data).dim, 2, generator=generator(41), dtype=torch.float64)
    assert_close(cw.Hessian(model, mean, data) @ block,
                 dense_hessian(model, mean, inputs, targets, names(model)) @ block)
    summed.reduction = "sum"
    assert_close(cw.Hessian(model, summed, data) @ block,
                 dense_hessian(model, summed, inputs, targets, names(model)) @ block)


def outputs_at(model, flat, inputs):
    """The model's outputs with its parameters set to the flat vector ``flat``."""
    values = [piece.view_as(p) for piece, p in zip(torch.split(flat, [p.numel() for p in model.parameters()]),
                                                    model.parameters())]
    return torch.func.functional_call(model, dict(zip(names(model), values)), (inputs,))


@pytest.mark.parametrize("name", ["ce_weights_ignore", "seq_ce", "mse", "bce"])
def test_loss_stats_of_a_summed_loss_are_the_sums(name):
    model, loss, inputs, targets = case(name)
    data = split(inputs, targets)
    mean, summed = (cw.loss_stats(model, loss(r), data, num_probes=4, seed=3) for r in ("mean", "sum"))
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).requires_grad_(True)
    for reduction, statistics in (("mean", mean), ("sum", summed)):
        value = loss(reduction)(outputs_at(model, flat, inputs), targets)
        gradient, = torch.autograd.grad(value, flat)
        assert statistics["loss_mean"] == pytest.approx(value.item(), rel=1e-12)
        assert statistics["gradient_norm_sq"] == pytest.approx(float(gradient @ gradient), rel=1e-11)
    # the curvature statistics: same probes, W times (traces) or W^2 times (squares) the mean's
    weight = summed["loss_mean"] / mean["loss_mean"]
    for statistic in ("hessian_trace", "ggn_trace"):
        assert summed[statistic] == pytest.approx(weight * mean[statistic], rel=1e-10)
    for statistic in ("loss_variance", "gradient_variance", "hessian_frobenius_sq", "ggn_vector_norm_sq",
                      "ggn_vector_variance"):
        assert summed[statistic] == pytest.approx(weight**2 * mean[statistic], rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("name", ["ce_weights_ignore", "seq_ce", "mse"])
def test_a_landscape_of_a_summed_loss_is_the_sum_over_the_split(name):
    model, loss, inputs, targets = case(name)
    data = split(inputs, targets)
    direction = cw.random_directions(model, 1, seed=4)[0]
    walk = cw.loss_landscape(model, data, [direction], dist=0.5, n_points=3, loss_fn=loss("sum"))
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    for index, t in enumerate(np.linspace(-0.5, 0.5, 3)):
        outputs = outputs_at(model, flat + t * direction.vector, inputs)
        assert walk["train_loss"][0, index] == pytest.approx(loss("sum")(outputs, targets).item(), rel=1e-12)


def test_the_summed_hessian_is_the_number_of_samples_times_the_mean_one():
    model, loss, inputs, targets = case("ce")
    data = split(inputs, targets)
    block = torch.randn(cw.Hessian(model, nn.CrossEntropyLoss(), data).dim, 2, generator=generator(42),
                        dtype=torch.float64)
    summed = cw.Hessian(model, loss("sum"), data) @ block
    assert_close(summed, len(inputs) * (cw.Hessian(model, loss("mean"), data) @ block))

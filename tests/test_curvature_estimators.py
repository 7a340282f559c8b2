"""Diagonals, loss statistics and inverse products against exact references."""

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvature_cases import classification_data, cnn, dense_ggn, dense_hessian, mlp
from curvwidgets.curvature import exact_diagonal, hutchinson_diagonal, mc_ggn_diagonal
from curvwidgets.linalg import conjugate_gradient, lanczos_solve

LOSS = nn.CrossEntropyLoss()


def names(model):
    return [name for name, _ in model.named_parameters()]


@pytest.fixture(scope="module")
def bn_case():
    model = cnn(batch_norm=True)
    batches, inputs, targets = classification_data(model)
    return model, batches, inputs, targets


def test_exact_diagonals_are_the_dense_diagonals(bn_case):
    model, batches, inputs, targets = bn_case
    hessian = dense_hessian(model, LOSS, inputs, targets, names(model))
    ggn = dense_ggn(model, LOSS, inputs, targets, names(model))
    torch.testing.assert_close(exact_diagonal(cw.Hessian(model, LOSS, batches), block_size=7), torch.diagonal(hessian),
                               rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(exact_diagonal(cw.GGN(model, LOSS, batches)), torch.diagonal(ggn), rtol=1e-10, atol=1e-14)


def relative_error(estimate, exact):
    return (torch.linalg.vector_norm(estimate - exact) / torch.linalg.vector_norm(exact)).item()


def test_monte_carlo_ggn_diagonal_converges(bn_case):
    model, batches, _, _ = bn_case
    ggn = cw.GGN(model, LOSS, batches)
    exact = exact_diagonal(ggn)
    errors = [relative_error(mc_ggn_diagonal(ggn, num_mc=draws, seed=1, chunk_size=200), exact) for draws in (4, 64, 1024)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02
    torch.testing.assert_close(mc_ggn_diagonal(ggn, num_mc=3, seed=1, chunk_size=5), mc_ggn_diagonal(ggn, num_mc=3, seed=1))


def test_monte_carlo_ggn_diagonal_for_mse_and_a_subset():
    model = mlp()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(16, 5, generator=generator, dtype=torch.float64)
    targets = torch.randn(16, 3, generator=generator, dtype=torch.float64)
    ggn = cw.GGN(model, nn.MSELoss(), [(inputs[:9], targets[:9]), (inputs[9:], targets[9:])], params="2.*")
    assert relative_error(mc_ggn_diagonal(ggn, num_mc=400, seed=0), exact_diagonal(ggn)) < 0.1


def test_hutchinson_diagonal_converges_for_any_operator():
    matrix = cw.synthetic.wigner(60, seed=0) + 3 * np.eye(60)
    exact = torch.from_numpy(np.diag(matrix).copy())
    errors = [relative_error(hutchinson_diagonal(matrix, draws, seed=2), exact) for draws in (10, 100, 5000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01


def test_monte_carlo_diagonal_rejects_unsupported_settings(bn_case):
    model, batches, _, _ = bn_case
    with pytest.raises(ValueError, match="bn_mode='eval'"):
        mc_ggn_diagonal(cw.GGN(model, LOSS, batches, bn_mode="train"))
    smoothed = cw.GGN(model, nn.CrossEntropyLoss(label_smoothing=0.1), batches)
    with pytest.raises(ValueError, match="hutchinson_diagonal"):
        mc_ggn_diagonal(smoothed)
    with pytest.raises(TypeError, match="GGN operator"):
        mc_ggn_diagonal(cw.Hessian(model, LOSS, batches))
    with pytest.raises(ValueError, match="num_mc must be"):
        mc_ggn_diagonal(cw.GGN(model, LOSS, batches), num_mc=0)


def test_loss_statistics_against_direct_computation(bn_case):
    model, batches, inputs, targets = bn_case
    stats = cw.loss_stats(model, LOSS, batches, num_probes=3, seed=3)
    model.eval()
    sizes = torch.tensor([len(batch[0]) for batch in batches], dtype=torch.float64)
    losses, gradients = [], []
    for batch_inputs, batch_targets in batches:
        model.zero_grad()
        loss = LOSS(model(batch_inputs), batch_targets)
        loss.backward()
        losses.append(loss.item())
        gradients.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    model.zero_grad()
    weights = sizes / sizes.sum()
    losses, gradients = torch.tensor(losses, dtype=torch.float64), torch.stack(gradients)
    mean_gradient = weights @ gradients
    assert stats["loss_mean"] == pytest.approx(LOSS(model(inputs), targets).item(), rel=1e-12)
    assert stats["loss_variance"] == pytest.approx((weights @ (losses - weights @ losses) ** 2).item(), rel=1e-9)
    assert stats["gradient_norm_sq"] == pytest.approx(mean_gradient.square().sum().item(), rel=1e-10)
    assert stats["gradient_variance"] == pytest.approx((weights @ (gradients - mean_gradient).square().sum(1)).item(), rel=1e-9)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert stats["weight_l2"] == pytest.approx(flat.norm().item()) and stats["weight_linf"] == flat.abs().max().item()
    assert stats["num_samples"] == 24


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_curvature_statistics_use_the_stated_vector_and_probes(curvature):
    model = mlp()
    batches, inputs, targets = classification_data(model)
    dense = dense_hessian if curvature == "hessian" else dense_ggn
    stats = cw.loss_stats(model, LOSS, batches, curvature=[curvature], num_probes=3, seed=5)
    # The documented draws: a Gaussian unit vector, then Rademacher probes, from one generator seeded 5.
    generator = torch.Generator().manual_seed(5)
    dim = cw.Hessian(model, LOSS, batches).dim
    direction = torch.randn(dim, 1, generator=generator, dtype=torch.float64)[:, 0]
    direction /= direction.norm()
    probes = (torch.randint(0, 2, (dim, 3), generator=generator) * 2 - 1).double()
    matrix = dense(model, LOSS, inputs, targets, names(model))
    full = matrix @ direction
    per_batch = torch.stack([dense(model, LOSS, x, y, names(model)) @ direction for x, y in batches])
    weights = torch.tensor([len(x) for x, _ in batches], dtype=torch.float64) / 24
    assert stats[f"{curvature}_vector_norm_sq"] == pytest.approx(full.square().sum().item(), rel=1e-10)
    assert stats[f"{curvature}_vector_variance"] == pytest.approx((weights @ (per_batch - full).square().sum(1)).item(), rel=1e-8)
    products = matrix @ probes
    assert stats[f"{curvature}_trace"] == pytest.approx((probes * products).sum(0).mean().item(), rel=1e-10)
    assert stats[f"{curvature}_frobenius_sq"] == pytest.approx(products.square().sum(0).mean().item(), rel=1e-10)
    assert {"hessian", "ggn"} - {curvature} != {name.split("_")[0] for name in stats if name.endswith("_trace")}


def test_hutchinson_statistics_converge_to_trace_and_frobenius_norm():
    model = mlp()
    batches, inputs, targets = classification_data(model)
    stats = cw.loss_stats(model, LOSS, batches, curvature=["ggn"], num_probes=1500, seed=0)
    ggn = dense_ggn(model, LOSS, inputs, targets, names(model))
    assert stats["ggn_trace"] == pytest.approx(torch.trace(ggn).item(), rel=0.05)
    assert stats["ggn_frobenius_sq"] == pytest.approx(ggn.square().sum().item(), rel=0.1)
    with pytest.raises(ValueError, match="curvature must name"):
        cw.loss_stats(model, LOSS, batches, curvature=["fisher"])


@pytest.mark.parametrize("solver", ["cg", "lanczos"])
def test_damped_inverse_products(bn_case, solver):
    model, batches, inputs, targets = bn_case
    ggn = cw.GGN(model, LOSS, batches)
    damping = 0.1
    rhs = torch.linspace(-1, 1, ggn.dim, dtype=torch.float64)
    dense = dense_ggn(model, LOSS, inputs, targets, names(model)) + damping * torch.eye(ggn.dim, dtype=torch.float64)
    expected = torch.linalg.solve(dense, rhs)
    if solver == "cg":
        result = conjugate_gradient(ggn, rhs, damping=damping, tol=1e-10)
        assert result.residual_norms[-1] <= 1e-10 * result.residual_norms[0]
    else:
        result = lanczos_solve(ggn, rhs, steps=ggn.dim, damping=damping, tol=1e-8)
    assert result.converged
    torch.testing.assert_close(result.solution, expected, rtol=1e-7, atol=1e-9)


def test_conjugate_gradient_stops_on_an_indefinite_operator():
    result = conjugate_gradient(np.diag([1.0, -1.0]), np.array([1.0, 1.0]), tol=1e-12)
    assert not result.converged and result.iterations == 0
    with pytest.raises(ValueError, match=r"rhs must have shape \(2,\)"):
        conjugate_gradient(np.eye(2), np.ones(3))

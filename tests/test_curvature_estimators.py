"""Diagonals, loss statistics and inverse products against exact references."""

import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvature_cases import classification_data, cnn, dense_ggn, dense_hessian, mlp
from test_curvature_operators import counting_case, split_like
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
    # their standard errors: the spread of the probes' values over sqrt(3)
    assert stats[f"{curvature}_trace_se"] == pytest.approx((probes * products).sum(0).std().item() / 3**0.5, rel=1e-8)
    assert stats[f"{curvature}_frobenius_sq_se"] == pytest.approx(products.square().sum(0).std().item() / 3**0.5,
                                                                  rel=1e-8)
    # Only the named matrix is described (a string names one matrix as a list of one does).
    described = {name for name in stats if name.startswith(("hessian_", "ggn_"))}
    assert described == {f"{curvature}_{key}" for key in ("vector_norm_sq", "vector_variance", "trace", "trace_se",
                                                           "frobenius_sq", "frobenius_sq_se")}
    assert cw.loss_stats(model, LOSS, batches, curvature=curvature, num_probes=3, seed=5) == pytest.approx(stats, rel=1e-10)


def test_hutchinson_statistics_converge_to_trace_and_frobenius_norm():
    model = mlp()
    batches, inputs, targets = classification_data(model)
    stats = cw.loss_stats(model, LOSS, batches, curvature=["ggn"], num_probes=1500, seed=0)
    ggn = dense_ggn(model, LOSS, inputs, targets, names(model))
    assert stats["ggn_trace"] == pytest.approx(torch.trace(ggn).item(), rel=0.05)
    assert stats["ggn_frobenius_sq"] == pytest.approx(ggn.square().sum().item(), rel=0.1)
    with pytest.raises(ValueError, match="curvature must name"):
        cw.loss_stats(model, LOSS, batches, curvature=["fisher"])


def test_nan_losses_and_gradients_give_nan_statistics_not_numbers():
    model = mlp()
    batches, _, _ = classification_data(model)
    poisoned = list(batches)
    inputs, targets = poisoned[2]
    poisoned[2] = (inputs.clone().index_fill_(0, torch.tensor([0]), math.nan), targets)
    stats = cw.loss_stats(model, LOSS, poisoned, curvature=["ggn"], num_probes=2)
    for key in ("loss_mean", "loss_variance", "gradient_norm_sq", "gradient_variance", "ggn_vector_variance", "ggn_trace"):
        assert math.isnan(stats[key]), key

    def finite_loss_nan_gradient(outputs, labels):  # d sqrt(|0 * o|) / do is inf * 0
        return LOSS(outputs, labels) + (outputs[:, 0] * 0).abs().sqrt().sum()

    stats = cw.loss_stats(model, finite_loss_nan_gradient, batches, curvature=[])
    assert math.isfinite(stats["loss_mean"]) and math.isfinite(stats["loss_variance"])
    assert math.isnan(stats["gradient_norm_sq"]) and math.isnan(stats["gradient_variance"])


@pytest.mark.parametrize("case", ["ignore_index", "class_weights", "nll_both"])
def test_loss_statistics_weight_batches_by_what_the_loss_counts(case):
    model, loss_class, options, inputs, targets = counting_case(case)
    loss_fn = loss_class(**options)
    batches = split_like(inputs, targets)
    stats = cw.loss_stats(model, loss_fn, batches, curvature=["hessian"], num_probes=2, seed=1)
    # One batch of every sample: its loss and gradient, and the direction's Hessian product.
    model.zero_grad()
    loss = loss_fn(model(inputs), targets)
    loss.backward()
    gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad()
    dim = gradient.numel()
    direction = torch.randn(dim, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)[:, 0]
    product = dense_hessian(model, loss_fn, inputs, targets, names(model)) @ (direction / direction.norm())
    assert stats["loss_mean"] == pytest.approx(loss.item(), rel=1e-12)
    assert stats["gradient_norm_sq"] == pytest.approx(gradient.square().sum().item(), rel=1e-10)
    assert stats["hessian_vector_norm_sq"] == pytest.approx(product.square().sum().item(), rel=1e-10)
    # The variance over batches, weighted by the weight W_b of the targets each counts (batch 1: none).
    weight = torch.ones(3, dtype=torch.float64) if "weight" not in options else options["weight"]
    per_batch = [(weight[y[y != -1]].sum().item(), loss_fn(model(x), y).item()) for x, y in batches]
    counted = [(w, value) for w, value in per_batch if w > 0]
    total = sum(w for w, _ in counted)
    variance = sum(w * (value - loss.item()) ** 2 for w, value in counted) / total
    assert stats["loss_variance"] == pytest.approx(variance, rel=1e-9)
    assert stats["num_samples"] == sum(len(x) for (x, _), (w, _) in zip(batches, per_batch) if w > 0)


def cancel_after(steps):
    """A progress callback recording its events, and a cancel token it sets once ``steps`` units are done."""
    events, cancel = [], threading.Event()

    def progress(event):
        events.append(event)
        if event.step >= steps:
            cancel.set()

    return events, progress, cancel


def test_exact_diagonal_reports_progress_and_cancels_with_the_entries_done():
    model = mlp()
    batches, inputs, targets = classification_data(model)
    op = cw.Hessian(model, LOSS, batches)
    exact = torch.diagonal(dense_hessian(model, LOSS, inputs, targets, names(model)))
    blocks = math.ceil(op.dim / 20)
    events, progress, cancel = cancel_after(2)
    with pytest.raises(cw.Cancelled) as stopped:
        exact_diagonal(op, block_size=20, progress=progress, cancel=cancel)
    assert stopped.value.step == 2 and [(e.step, e.total, e.stage) for e in events] == [(1, blocks, "exact_diagonal"),
                                                                                        (2, blocks, "exact_diagonal")]
    torch.testing.assert_close(stopped.value.result[:40], exact[:40], rtol=1e-10, atol=1e-14)
    assert torch.isnan(stopped.value.result[40:]).all()
    events, progress, _ = cancel_after(blocks + 1)
    torch.testing.assert_close(exact_diagonal(op, block_size=20, progress=progress), exact, rtol=1e-10, atol=1e-14)
    assert [e.step for e in events] == list(range(1, blocks + 1))


def test_hutchinson_diagonal_cancels_with_the_estimate_of_the_probes_so_far():
    matrix = cw.synthetic.wigner(30, seed=0)
    events, progress, cancel = cancel_after(2)
    with pytest.raises(cw.Cancelled) as stopped:
        hutchinson_diagonal(matrix, 12, seed=3, block_size=4, progress=progress, cancel=cancel)
    assert stopped.value.step == 2 and [(e.step, e.total) for e in events] == [(1, 3), (2, 3)]
    # The first eight probes of the same seed: the estimate of a run asking for eight.
    torch.testing.assert_close(stopped.value.result, hutchinson_diagonal(matrix, 8, seed=3, block_size=4),
                               rtol=1e-12, atol=0)
    torch.testing.assert_close(events[0].partial, hutchinson_diagonal(matrix, 4, seed=3, block_size=4), rtol=1e-12, atol=0)


def test_monte_carlo_ggn_diagonal_cancels_with_the_estimate_of_the_batches_so_far(bn_case):
    model, batches, _, _ = bn_case
    events, progress, cancel = cancel_after(2)
    with pytest.raises(cw.Cancelled) as stopped:
        mc_ggn_diagonal(cw.GGN(model, LOSS, batches), num_mc=2, seed=1, progress=progress, cancel=cancel)
    assert stopped.value.step == 2 and [(e.step, e.total, e.stage) for e in events] == [(1, 4, "mc_ggn_diagonal"),
                                                                                        (2, 4, "mc_ggn_diagonal")]
    # Draws are seeded by batch index, so the first two batches alone give the same estimate.
    first_two = mc_ggn_diagonal(cw.GGN(model, LOSS, batches[:2]), num_mc=2, seed=1)
    torch.testing.assert_close(stopped.value.result, first_two, rtol=1e-12, atol=0)


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


# ---- loss_stats: backends, chunks, progress per batch (issue 11) ----------------------------------

@pytest.mark.parametrize("options", [
    {"backend": "double-backward"}, {"backend": "forward-mode"}, {"vector_chunk": 2}, {"sample_chunk": 3},
    {"sample_chunk": None, "vector_chunk": 1},
])
def test_loss_stats_backend_and_chunks_leave_the_statistics_unchanged(options):
    model = mlp()
    batches, _, _ = classification_data(model)
    reference = cw.loss_stats(model, LOSS, batches, num_probes=3, seed=2)
    assert cw.loss_stats(model, LOSS, batches, num_probes=3, seed=2, **options) == pytest.approx(reference, rel=1e-10)


def test_loss_stats_times_the_plans_once_per_matrix_on_a_slice(monkeypatch):
    model = mlp()
    batches, _, _ = classification_data(model)
    timed = []
    original = cw.curvature.CurvatureOperator._timed

    def recording(self, plan, inputs, targets, tangents):
        timed.append((tangents[0].shape[0], len(inputs)))
        return original(self, plan, inputs, targets, tangents)

    monkeypatch.setattr(cw.curvature.CurvatureOperator, "_timed", recording)
    monkeypatch.setattr(cw.curvature.operators, "RETIME_WITHIN", math.inf)  # every candidate timed twice
    cw.loss_stats(model, LOSS, batches, num_probes=10)  # blocks of 11 vectors, the first batch of 7 samples
    per_matrix = [(1, 2), (1, 2)] + [(count, 7) for count in (11, 1)] * 2  # warm-ups, the two backends (no room for more)
    assert timed == per_matrix * 2  # for the Hessian, then the GGN; every later block follows its plan


def test_loss_stats_reports_every_batch_and_cancels_with_the_passes_done():
    model = mlp()
    batches, _, _ = classification_data(model)  # 4 batches: 3 passes of 4 events
    events = []
    statistics = cw.loss_stats(model, LOSS, batches, num_probes=2, progress=events.append)
    # step 0 once the inputs are checked, then one event per batch, all with the same total
    assert [(e.stage, e.step, e.total) for e in events] == [("loss_stats", step, 12) for step in range(0, 13)]
    gradient_keys = {"loss_mean", "loss_variance", "gradient_norm_sq", "gradient_variance", "weight_l2",
                     "weight_linf", "num_samples"}
    assert [set(e.partial) for e in events[:5]] == [set()] * 4 + [gradient_keys]
    assert set(events[8].partial) == gradient_keys | {key for key in statistics if key.startswith("hessian_")}
    assert events[-1].partial == statistics
    events, progress, cancel = cancel_after(6)
    with pytest.raises(cw.Cancelled) as stopped:
        cw.loss_stats(model, LOSS, batches, num_probes=2, progress=progress, cancel=cancel)
    assert stopped.value.step == 6 and stopped.value.stage == "loss_stats"
    assert stopped.value.result == {key: statistics[key] for key in gradient_keys}


@pytest.mark.parametrize("options, message", [
    ({"backend": "fast"}, r"backend must be one of \('auto', 'forward-mode', 'double-backward'\); got 'fast'"),
    ({"vector_chunk": 0}, r"vector_chunk must be an int >= 1; got 0"),
    ({"sample_chunk": -2}, r"sample_chunk must be an int >= 1; got -2"),
])
def test_loss_stats_rejects_bad_backend_and_chunks_before_any_work(options, message):
    model = mlp()
    batches, _, _ = classification_data(model)
    events = []
    with pytest.raises(ValueError, match=message):
        cw.loss_stats(model, LOSS, batches, curvature=["ggn", "hessian"], progress=events.append, **options)
    assert events == []

"""Hessian and GGN products against dense autograd references, in float64."""

import copy
import math
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import curvwidgets as cw
from curvature_cases import (
    assert_unchanged, classification_data, cnn, dense_ggn, dense_hessian, mlp, relu_mlp, snapshot,
)

CASES = {"mlp": lambda: mlp(), "cnn": lambda: cnn(), "cnn_bn": lambda: cnn(batch_norm=True)}
LOSS = nn.CrossEntropyLoss()


def all_names(model):
    return [name for name, _ in model.named_parameters()]


def random_block(dim, k, seed=0):
    return torch.randn(dim, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
@pytest.mark.parametrize("backend", ["auto", "forward", "double-backward"])
def test_products_match_dense_references(case, operator, backend):
    model = CASES[case]()
    batches, inputs, targets = classification_data(model)
    reference = (dense_hessian if operator is cw.Hessian else dense_ggn)(model, LOSS, inputs, targets, all_names(model))
    backend = operator.preferred_backend if backend == "forward" else backend
    op = operator(model, LOSS, batches, backend=backend)
    block = random_block(op.dim, 3)
    expected = reference @ block
    scale = expected.abs().max()
    torch.testing.assert_close(op @ block, expected, rtol=0, atol=1e-8 * scale)
    torch.testing.assert_close(op.matvec(block[:, 0]), expected[:, 0], rtol=0, atol=1e-8 * scale)
    assert op.backend == backend or backend == "auto" and op.backend in (operator.preferred_backend, "double-backward")
    assert op.fallback_reason is None


def test_auto_backend_keeps_the_faster_one(monkeypatch):
    model = mlp()
    batches, _, _ = classification_data(model)
    slow_forward = cw.Hessian._forward_mode

    def slower(*args, **kwargs):
        time.sleep(0.3)  # well above timing noise on a loaded machine
        return slow_forward(*args, **kwargs)

    monkeypatch.setattr(cw.Hessian, "_forward_mode", slower)
    op = cw.Hessian(model, LOSS, batches)
    assert op.backend is None
    op @ random_block(op.dim, 1)
    assert op.backend == "double-backward" and op.fallback_reason is None


def test_unknown_backend_is_rejected():
    model = mlp()
    batches, _, _ = classification_data(model)
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'forward-mode', 'double-backward'\)"):
        cw.GGN(model, LOSS, batches, backend="forward-over-reverse")


@pytest.mark.parametrize("params", ["2.*", ["0.weight", "2.bias"]])
@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
def test_products_over_a_parameter_subset(params, operator):
    model = mlp()
    batches, inputs, targets = classification_data(model)
    op = operator(model, LOSS, batches, params=params)
    names = list(op.layout.names)
    reference = (dense_hessian if operator is cw.Hessian else dense_ggn)(model, LOSS, inputs, targets, names)
    block = random_block(op.dim, 2)
    torch.testing.assert_close(op @ block, reference @ block, rtol=1e-8, atol=1e-12)


def test_submodule_and_tensor_selections_agree_with_patterns():
    model = mlp()
    batches, _, _ = classification_data(model)
    by_pattern = cw.Hessian(model, LOSS, batches, params="2.*")
    by_module = cw.Hessian(model, LOSS, batches, params=model[2])
    by_tensor = cw.Hessian(model, LOSS, batches, params=[model[2].bias, model[2].weight])
    assert by_pattern.layout == by_module.layout == by_tensor.layout
    assert by_pattern.layout.names == ("2.weight", "2.bias")


def test_linear_model_with_mse_has_hessian_equal_ggn_equal_closed_form():
    torch.manual_seed(3)
    model = nn.Linear(4, 2).double()
    inputs = torch.randn(30, 4, dtype=torch.float64)
    targets = torch.randn(30, 2, dtype=torch.float64)
    batches = [(inputs[:10], targets[:10]), (inputs[10:], targets[10:])]
    hessian = cw.Hessian(model, nn.MSELoss(), batches)
    ggn = cw.GGN(model, nn.MSELoss(), batches)
    # loss = mean over 30 x 2 entries of (W x + b - y)^2: per output row the Hessian in (w_row, b) is
    # 2 / (30 * 2) * sum_n [x_n; 1][x_n; 1]^T; weights are laid out row by row, then the biases.
    augmented = torch.cat([inputs, torch.ones(30, 1, dtype=torch.float64)], dim=1)
    per_output = 2.0 / 60 * augmented.T @ augmented
    closed = torch.zeros(10, 10, dtype=torch.float64)
    for row in range(2):
        index = [row * 4 + column for column in range(4)] + [8 + row]
        closed[np.ix_(index, index)] = per_output
    identity = torch.eye(10, dtype=torch.float64)
    torch.testing.assert_close(hessian @ identity, closed, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ggn @ identity, closed, rtol=1e-12, atol=1e-14)


def test_relu_network_hessian_and_ggn_diagonals_agree():
    # Piecewise linear: the second derivative of the network vanishes, so H = GGN exactly.
    model = relu_mlp()
    batches, _, _ = classification_data(model)
    identity = torch.eye(cw.Hessian(model, LOSS, batches).dim, dtype=torch.float64)
    hessian = cw.Hessian(model, LOSS, batches) @ identity
    ggn = cw.GGN(model, LOSS, batches) @ identity
    torch.testing.assert_close(torch.diagonal(hessian), torch.diagonal(ggn), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
def test_operators_are_symmetric_and_the_ggn_is_psd(operator):
    model = cnn(batch_norm=True)
    batches, _, _ = classification_data(model)
    op = operator(model, LOSS, batches)
    u, v = random_block(op.dim, 1, seed=1)[:, 0], random_block(op.dim, 1, seed=2)[:, 0]
    assert torch.dot(u, op @ v).item() == pytest.approx(torch.dot(v, op @ u).item(), rel=1e-10)
    if operator is cw.GGN:
        assert cw.lanczos(op, steps=15, seed=0).nodes().min() > -1e-12


@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
def test_four_batches_equal_one_concatenated_batch(operator):
    model = cnn()
    batches, inputs, targets = classification_data(model)
    block = random_block(operator(model, LOSS, batches).dim, 2)
    torch.testing.assert_close(operator(model, LOSS, batches) @ block, operator(model, LOSS, [(inputs, targets)]) @ block,
                               rtol=1e-10, atol=1e-14)


def test_sum_reduction_gives_the_curvature_of_the_sum_not_rescaled():
    model = mlp()
    batches, inputs, _ = classification_data(model)
    block = random_block(cw.Hessian(model, LOSS, batches).dim, 2)
    summed = cw.Hessian(model, nn.CrossEntropyLoss(reduction="sum"), batches) @ block
    torch.testing.assert_close(summed, len(inputs) * (cw.Hessian(model, LOSS, batches) @ block), rtol=1e-10,
                               atol=1e-14)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
def test_products_leave_the_model_bit_for_bit_unchanged(bn_mode, operator):
    model = cnn(batch_norm=True)
    model.train()
    model[2].eval()  # a mixed set of flags must come back as it was
    before = snapshot(model)
    batches, _, _ = classification_data(model)
    op = operator(model, LOSS, batches, bn_mode=bn_mode)
    op @ random_block(op.dim, 2)
    assert_unchanged(model, before)


@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
def test_train_mode_uses_batch_statistics(operator):
    model = cnn(batch_norm=True)
    batches, _, _ = classification_data(model, sizes=(20,))
    inputs, targets = batches[0]
    block = random_block(operator(model, LOSS, batches).dim, 1)
    train = operator(model, LOSS, batches, bn_mode="train")
    # Reference: a copy whose BatchNorm normalises with this batch's statistics.
    twin = cnn(batch_norm=True)
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        features = twin[0](inputs)
        twin[1].running_mean.copy_(features.mean((0, 2, 3)))
        twin[1].running_var.copy_(features.var((0, 2, 3), unbiased=False))
    # With batch statistics the normalisation also depends on the parameters through the mean and
    # variance, so compare against autograd on the train-mode function instead of the frozen twin.
    names = [name for name, _ in model.named_parameters()]
    model_copy = cnn(batch_norm=True)
    model_copy.load_state_dict(model.state_dict())
    model_copy.train()
    params = dict(model_copy.named_parameters())
    buffers = {name: b.clone() for name, b in model_copy.named_buffers()}
    shapes = [params[name].shape for name in names]

    def outputs_of(flat):
        pieces = torch.split(flat, [shape.numel() for shape in shapes])
        values = {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return torch.func.functional_call(model_copy, {**buffers, **values}, (inputs,))

    flat = torch.cat([params[name].detach().reshape(-1) for name in names])
    if operator is cw.Hessian:
        dense = torch.autograd.functional.hessian(lambda p: LOSS(outputs_of(p), targets), flat)
    else:
        outputs = outputs_of(flat)
        jacobian = torch.autograd.functional.jacobian(outputs_of, flat).reshape(outputs.numel(), -1)
        output_hessian = torch.autograd.functional.hessian(lambda o: LOSS(o.view_as(outputs), targets), outputs.detach().reshape(-1))
        dense = jacobian.T @ output_hessian @ jacobian
    torch.testing.assert_close(train @ block, dense @ block, rtol=1e-8, atol=1e-12)
    frozen = operator(twin, LOSS, batches, bn_mode="eval") @ block
    assert not torch.allclose(train @ block, frozen)  # the mean/variance path adds curvature
    assert train.backend is not None


def test_double_backward_fallback_is_chosen_and_exact(monkeypatch):
    model = mlp()
    batches, inputs, targets = classification_data(model)
    op = cw.Hessian(model, LOSS, batches)

    def unsupported(*args, **kwargs):
        raise RuntimeError("forward-mode AD is not implemented for this model")

    monkeypatch.setattr(cw.Hessian, "_forward_mode", unsupported)
    monkeypatch.setattr(cw.GGN, "_forward_mode", unsupported)
    block = random_block(op.dim, 2)
    torch.testing.assert_close(op @ block, dense_hessian(model, LOSS, inputs, targets, all_names(model)) @ block,
                               rtol=1e-10, atol=1e-14)
    assert op.backend == "double-backward" and "not implemented" in op.fallback_reason
    ggn = cw.GGN(model, LOSS, batches)
    torch.testing.assert_close(ggn @ block, dense_ggn(model, LOSS, inputs, targets, all_names(model)) @ block,
                               rtol=1e-10, atol=1e-14)
    assert ggn.backend == "double-backward"
    pinned = cw.Hessian(model, LOSS, batches, backend="forward-over-reverse")
    with pytest.raises(RuntimeError, match="not implemented"):
        pinned @ block


def test_forward_mode_that_fails_for_several_vectors_is_left_out_of_the_plan(monkeypatch):
    model = mlp()
    batches, inputs, targets = classification_data(model)
    forward = cw.Hessian._forward_mode

    def single_vector_only(self, function, primals, inputs, targets, tangents):
        if tangents[0].shape[0] > 1:
            raise RuntimeError("vmap over this model is not supported")
        return forward(self, function, primals, inputs, targets, tangents)

    monkeypatch.setattr(cw.Hessian, "_forward_mode", single_vector_only)
    op = cw.Hessian(model, LOSS, batches)
    block = random_block(op.dim, 3)
    torch.testing.assert_close(op @ block, dense_hessian(model, LOSS, inputs, targets, all_names(model)) @ block,
                               rtol=1e-10, atol=1e-14)
    assert "vmap" in op.fallback_reason
    assert sorted(op.plan.seconds) == ["double-backward x1", "double-backward x3", "forward-over-reverse x1"]


def test_forward_mode_that_fails_on_a_later_batch_turns_the_plan_to_double_backward(monkeypatch):
    model = mlp()
    batches, inputs, targets = classification_data(model)
    forward = cw.Hessian._forward_mode

    def first_batch_only(self, function, primals, inputs, targets, tangents):
        if len(inputs) == 5:  # the second batch
            raise RuntimeError("forward-mode AD is not implemented for this shape")
        return forward(self, function, primals, inputs, targets, tangents)

    original = cw.Hessian._timed

    def forward_looks_faster(self, plan, *args):
        product, samples, _ = original(self, plan, *args)
        return product, samples, 1.0 if plan.backend == "double-backward" else 0.1

    monkeypatch.setattr(cw.Hessian, "_forward_mode", first_batch_only)
    monkeypatch.setattr(cw.Hessian, "_timed", forward_looks_faster)
    op = cw.Hessian(model, LOSS, batches)
    block = random_block(op.dim, 3)
    torch.testing.assert_close(op @ block, dense_hessian(model, LOSS, inputs, targets, all_names(model)) @ block,
                               rtol=1e-10, atol=1e-14)
    assert op.plan.backend == "double-backward" and op.plan.chosen_by == "fallback" and op.plans[3] is op.plan
    assert "not implemented for this shape" in op.fallback_reason


def test_autograd_output_hessian_for_another_loss():
    model = mlp()
    batches, inputs, targets = classification_data(model)

    def smoothed_nll(outputs, labels):
        return nn.functional.cross_entropy(outputs, labels, label_smoothing=0.1)

    op = cw.GGN(model, smoothed_nll, batches)
    block = random_block(op.dim, 1)
    reference = dense_ggn(model, smoothed_nll, inputs, targets, all_names(model))
    torch.testing.assert_close(op @ block, reference @ block, rtol=1e-8, atol=1e-12)


def test_num_samples_takes_a_seeded_subset():
    model = mlp()
    batches, inputs, targets = classification_data(model)
    op = cw.Hessian(model, LOSS, batches, num_samples=9, seed=4)
    rows = op.data.selection
    assert rows.numel() == 9 and torch.equal(rows, cw.Hessian(model, LOSS, batches, num_samples=9, seed=4).data.selection)
    block = random_block(op.dim, 1)
    subset = cw.Hessian(model, LOSS, [(inputs[rows], targets[rows])])
    torch.testing.assert_close(op @ block, subset @ block, rtol=1e-10, atol=1e-14)


def split_like(inputs, targets, sizes=(7, 5, 8, 4)):
    return list(zip(inputs.split(list(sizes)), targets.split(list(sizes))))


def log_softmax_mlp():
    return nn.Sequential(*mlp(), nn.LogSoftmax(dim=1))


CLASS_WEIGHTS = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
COUNTING_LOSSES = {  # (model, loss with mean reduction, its keyword arguments)
    "ignore_index": (mlp, nn.CrossEntropyLoss, {"ignore_index": -1}),
    "class_weights": (mlp, nn.CrossEntropyLoss, {"weight": CLASS_WEIGHTS}),
    "both": (mlp, nn.CrossEntropyLoss, {"weight": CLASS_WEIGHTS, "ignore_index": -1}),
    "nll_both": (log_softmax_mlp, nn.NLLLoss, {"weight": CLASS_WEIGHTS, "ignore_index": -1}),
}


def counting_case(case):
    """Model, loss keyword arguments and data whose batches count different shares of their targets.

    Targets ``-1`` (batch 1 entirely, and three others) are ignored where the
    loss has ``ignore_index=-1``; without it every target is a class.
    """
    build, loss_class, options = COUNTING_LOSSES[case]
    model = build()
    _, inputs, targets = classification_data(model)
    if "ignore_index" in options:
        targets = targets.clone()
        targets[[0, 3, 7, 8, 9, 10, 11, 20]] = -1
    return model, loss_class, options, inputs, targets


@pytest.mark.parametrize("case, operator", [
    (case, operator) for case in COUNTING_LOSSES for operator in (cw.Hessian, cw.GGN)
    if (case, operator) != ("nll_both", cw.GGN)  # NLL is linear in the log-softmax outputs: that GGN is zero
])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_batches_are_weighted_by_what_the_loss_counts(case, operator, reduction):
    model, loss_class, options, inputs, targets = counting_case(case)
    dense = dense_hessian if operator is cw.Hessian else dense_ggn
    # one batch of every sample, the loss as given: the mean, or the sum not rescaled
    reference = dense(model, loss_class(reduction=reduction, **options), inputs, targets, all_names(model))
    op = operator(model, loss_class(reduction=reduction, **options), split_like(inputs, targets))
    block = random_block(op.dim, 2)
    expected = reference @ block
    torch.testing.assert_close(op @ block, expected, rtol=0, atol=1e-10 * expected.abs().max())


@pytest.mark.parametrize("shuffle_within_one_batch", [False, True])
def test_a_subset_of_data_in_a_changing_order_is_refused(shuffle_within_one_batch):
    model = mlp()
    _, inputs, targets = classification_data(model)
    batch_size = len(inputs) if shuffle_within_one_batch else 6
    shuffled = DataLoader(TensorDataset(inputs, targets), batch_size=batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    op = cw.Hessian(model, LOSS, shuffled, num_samples=9)
    with pytest.raises(ValueError, match="same batches in the same order on every pass when num_samples="):
        op @ random_block(op.dim, 1)
    fixed = cw.Hessian(model, LOSS, DataLoader(TensorDataset(inputs, targets), batch_size=batch_size), num_samples=9)
    vector = random_block(op.dim, 1)
    torch.testing.assert_close(fixed @ vector, fixed @ vector, rtol=1e-13, atol=0)  # the first: timed pieces


def test_batch_statistics_over_a_changing_order_are_refused():
    model = cnn(batch_norm=True)
    _, inputs, targets = classification_data(model)
    shuffled = DataLoader(TensorDataset(inputs, targets), batch_size=6, shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    op = cw.GGN(model, LOSS, shuffled, bn_mode="train")
    vector = random_block(op.dim, 1)
    op @ vector  # the first pass is the reference
    with pytest.raises(ValueError, match="bn_mode='train'"):
        op @ vector


class RandomlyFlipped:
    """Re-iterable batches whose images are flipped left-right at random, anew on every pass (an augmentation)."""

    def __init__(self, batches):
        self.batches, self.passes = batches, 0

    def __iter__(self):
        self.passes += 1
        generator = torch.Generator().manual_seed(self.passes)
        for inputs, targets in self.batches:
            flip = torch.rand(len(inputs), generator=generator) < 0.5
            yield torch.where(flip[:, None, None, None], inputs.flip(-1), inputs), targets


def test_data_that_changes_between_passes_is_refused_and_a_new_order_is_not():
    model = cnn()
    batches, inputs, targets = classification_data(model)
    op = cw.Hessian(model, LOSS, RandomlyFlipped(batches))
    vector = random_block(op.dim, 1)
    op @ vector
    with pytest.raises(ValueError, match="same samples on every pass.*random augmentation"):
        op @ vector
    # Without a subset or batch statistics a reshuffled order is the same mean: allowed, and exact.
    shuffled = cw.Hessian(model, LOSS, DataLoader(TensorDataset(inputs, targets), batch_size=5, shuffle=True,
                                                  generator=torch.Generator().manual_seed(0)))
    expected = dense_hessian(model, LOSS, inputs, targets, all_names(model)) @ vector
    for _ in range(3):
        torch.testing.assert_close(shuffled @ vector, expected, rtol=0, atol=1e-10 * expected.abs().max())


def test_lanczos_on_the_hessian_matches_the_dense_spectrum():
    model = cnn(batch_norm=True)
    batches, inputs, targets = classification_data(model)
    op = cw.Hessian(model, LOSS, batches)
    eigenvalues = torch.linalg.eigvalsh(dense_hessian(model, LOSS, inputs, targets, all_names(model)))
    result = cw.lanczos(op, steps=op.dim, seed=0)
    np.testing.assert_allclose(result.nodes()[[0, -1]], eigenvalues[[0, -1]].numpy(), atol=1e-9)
    assert result.orthogonality < 1e-12


def test_float32_dtype_casts_copies_not_the_model():
    model = mlp()
    batches, _, _ = classification_data(model)
    op = cw.Hessian(model, LOSS, batches, dtype=torch.float32)
    result = op @ torch.ones(op.dim, dtype=torch.float32)
    assert result.dtype == torch.float32 and next(model.parameters()).dtype == torch.float64
    reference = cw.Hessian(model, LOSS, batches) @ torch.ones(op.dim, dtype=torch.float64)
    torch.testing.assert_close(result.double(), reference, rtol=1e-4, atol=1e-5)


# ---- bad input ------------------------------------------------------------------------------------


def test_bad_vectors():
    model = mlp()
    op = cw.Hessian(model, LOSS, classification_data(model)[0])
    with pytest.raises(ValueError, match=rf"shape \({op.dim},\); got \(3,\)"):
        op.matvec(torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype torch.float64; got torch.float32"):
        op.matvec(torch.ones(op.dim))
    with pytest.raises(ValueError, match="device cpu; got meta"):
        op.matvec(torch.ones(op.dim, dtype=torch.float64, device="meta"))
    with pytest.raises(TypeError, match="torch.Tensor"):
        op.matvec(np.ones(op.dim))


def test_bad_models_losses_data_and_params():
    model = mlp()
    batches = classification_data(model)[0]
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        cw.Hessian(model, nn.CrossEntropyLoss(reduction="none"), batches) @ torch.ones(cw.Hessian(model, LOSS, batches).dim, dtype=torch.float64)
    with pytest.raises(ValueError, match="data is empty"):
        cw.Hessian(model, LOSS, [])
    with pytest.raises(TypeError, match="re-iterable"):
        cw.Hessian(model, LOSS, (batch for batch in batches))
    frozen = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        cw.GGN(frozen, LOSS, batches)
    with pytest.raises(ValueError, match="'conv.*' matches no trainable parameter"):
        cw.Hessian(model, LOSS, batches, params="conv.*")
    with pytest.raises(ValueError, match="not trainable parameters of model"):
        cw.Hessian(model, LOSS, batches, params=[torch.ones(3)])
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        cw.Hessian(model, LOSS, batches, bn_mode="frozen")
    with pytest.raises(ValueError, match=r"num_samples must be an int in \[1, 24\]"):
        cw.Hessian(model, LOSS, batches, num_samples=100)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        cw.Hessian(lambda x: x, LOSS, batches)


def test_ggn_with_a_loss_whose_output_hessian_cannot_be_formed():
    model = mlp()
    batches = classification_data(model)[0]

    def argmax_loss(outputs, labels):
        return (outputs.argmax(1) != labels).double().mean()

    op = cw.GGN(model, argmax_loss, batches)
    with pytest.raises(ValueError, match="Hessian of loss_fn with respect to the network outputs"):
        op @ torch.ones(op.dim, dtype=torch.float64)


# ---- blocks of vectors and passes of samples (issue 11) ------------------------------------------

def pooled_cnn() -> nn.Module:
    """float32 CNN with eval-mode BatchNorm (non-trivial statistics) and max pooling; P = 234."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    with torch.no_grad():
        for norm in (model[1], model[5]):
            norm.running_mean.uniform_(-0.3, 0.3)
            norm.running_var.uniform_(0.5, 1.5)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def pooled_case():
    model = pooled_cnn()
    generator = torch.Generator().manual_seed(4)
    inputs = torch.randn(12, 2, 8, 8, generator=generator)
    targets = torch.randint(0, 3, (12,), generator=generator)
    batches = [(inputs[:7], targets[:7]), (inputs[7:], targets[7:])]
    double = copy.deepcopy(model).double()
    references = {operator: dense(double, LOSS, inputs.double(), targets, all_names(model))
                  for operator, dense in ((cw.Hessian, dense_hessian), (cw.GGN, dense_ggn))}
    return model, batches, references


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("sample_chunk", [None, 3])
@pytest.mark.parametrize("backend", ["forward", "double-backward"])
@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
def test_block_products_equal_single_products_to_float32_rounding(pooled_case, operator, backend, sample_chunk, k):
    model, batches, references = pooled_case
    backend = operator.preferred_backend if backend == "forward" else backend
    op = operator(model, LOSS, batches, backend=backend, sample_chunk=sample_chunk)
    block = random_block(op.dim, k, seed=k).float()
    products = op @ block
    singles = torch.stack([op.matvec(column) for column in block.T], dim=1)
    exact = references[operator] @ block.double()
    rounding = 1e-6 * exact.abs().max()  # about 8 float32 epsilons of the largest entry
    torch.testing.assert_close(products.double(), singles.double(), rtol=0, atol=rounding)
    torch.testing.assert_close(products.double(), exact, rtol=0, atol=2 * rounding)


def forward_sizes(model, product):
    """The batch sizes of the model's forward passes while ``product()`` runs."""
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        product()
    finally:
        hook.remove()
    return sizes


@pytest.mark.parametrize("operator", [cw.Hessian, cw.GGN])
def test_auto_sample_chunk_splits_batches_into_passes_that_fit_the_cpu_budget(monkeypatch, operator):
    model = mlp()  # float64; the largest tensor of a forward pass: 6 hidden units, 48 bytes a sample
    batches, inputs, targets = classification_data(model)  # batches of 7, 5, 8 and 4 samples
    monkeypatch.setattr(cw.curvature.operators, "CPU_PASS_BYTES", 48 * 3 * 2)  # 3 vectors of 2 samples
    monkeypatch.setattr(cw.curvature.operators, "PASS_BYTES_GROWTH", 1)  # not more for the k x P products
    plan = dict(backend=operator.preferred_backend, vector_chunk=3)  # pinned: no timing passes
    op = operator(model, LOSS, batches, **plan)
    block = random_block(op.dim, 3)
    # the 1- and 2-sample probe, then one forward pass per pass carrying the 3 tangents
    assert forward_sizes(model, lambda: op @ block) == [1, 2] + [2, 2, 2, 1, 2, 2, 1, 2, 2, 2, 2, 2, 2]
    whole = operator(model, LOSS, batches, **plan, sample_chunk=None)
    assert forward_sizes(model, lambda: whole @ block) == [7, 5, 8, 4]
    torch.testing.assert_close(op @ block, whole @ block, rtol=0, atol=1e-13 * (whole @ block).abs().max())
    looped = operator(model, LOSS, batches, backend="double-backward", vector_chunk=3)  # 6 samples a pass
    assert forward_sizes(model, lambda: looped @ block) == [1, 2, 6, 1, 5, 6, 2, 4]


@pytest.mark.parametrize("growth, sizes", [(1, [2, 2, 2, 1, 2, 2, 1, 2, 2, 2, 2, 2, 2]),
                                            (2, [4, 3, 4, 1, 4, 4, 4]), (8, [7, 5, 8, 4])])
def test_the_pass_budget_grows_to_the_products_each_pass_adds(monkeypatch, growth, sizes):
    model = mlp()  # P = 57 float64 parameters: 3 vectors' products are 3 x 57 x 8 = 1368 bytes a pass
    batches, _, _ = classification_data(model)  # batches of 7, 5, 8 and 4 samples
    monkeypatch.setattr(cw.curvature.operators, "CPU_PASS_BYTES", 48 * 3 * 2)  # 288 bytes: 2 samples of 3 vectors
    monkeypatch.setattr(cw.curvature.operators, "PASS_BYTES_GROWTH", growth)
    op = cw.Hessian(model, LOSS, batches, backend="forward-over-reverse", vector_chunk=3)
    assert op.dim == 57
    # the budget: 288 bytes grown towards 1368, at most growth x 288: 288, 576 or 1368 bytes, 2, 4 or 9 samples
    assert forward_sizes(model, lambda: op @ random_block(op.dim, 3)) == [1, 2] + sizes


@pytest.mark.parametrize("case", ["bn_train", "unknown_loss"])
def test_auto_sample_chunk_keeps_whole_batches_where_splitting_could_change_the_curvature(monkeypatch, case):
    model = cnn(batch_norm=True) if case == "bn_train" else mlp()
    batches, _, _ = classification_data(model)
    monkeypatch.setattr(cw.curvature.operators, "CPU_PASS_BYTES", 1)
    loss = LOSS if case == "bn_train" else (lambda outputs, labels: nn.functional.cross_entropy(outputs, labels))
    op = cw.GGN(model, loss, batches, bn_mode="train" if case == "bn_train" else "eval", backend="double-backward",
                vector_chunk=2)
    assert forward_sizes(model, lambda: op @ random_block(op.dim, 2)) == [7, 5, 8, 4]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_an_int_sample_chunk_weights_passes_by_what_the_loss_counts(reduction):
    model = mlp()
    batches, inputs, targets = classification_data(model)
    targets = targets.clone()
    targets[7:10] = -1  # the second batch's first pass of 3 counts no target
    batches = split_like(inputs, targets)
    loss = nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64), ignore_index=-1,
                               reduction=reduction)
    for operator in (cw.Hessian, cw.GGN):
        whole = operator(model, loss, batches, sample_chunk=None, backend="double-backward", vector_chunk=2)
        split = operator(model, loss, batches, sample_chunk=3, backend="double-backward", vector_chunk=2)
        block = random_block(whole.dim, 2)
        assert forward_sizes(model, lambda: split @ block) == [3, 3, 1, 2, 3, 3, 2, 3, 1]  # (7), (5), (8), (4)
        torch.testing.assert_close(split @ block, whole @ block, rtol=0, atol=1e-13 * (whole @ block).abs().max())


@pytest.mark.parametrize("value, message", [
    (0, r"sample_chunk must be an int >= 1; got 0"),
    (2.5, r"sample_chunk must be an int >= 1; got 2.5"),
    ("all", r"sample_chunk must be 'auto', None or an int >= 1; got 'all'"),
])
def test_bad_sample_chunk(value, message):
    model = mlp()
    batches, _, _ = classification_data(model)
    with pytest.raises(ValueError, match=message):
        cw.Hessian(model, LOSS, batches, sample_chunk=value)


def test_an_int_sample_chunk_is_refused_with_batch_statistics():
    model = cnn(batch_norm=True)
    batches, _, _ = classification_data(model)
    with pytest.raises(ValueError, match=r"sample_chunk must be 'auto' or None with bn_mode='train'"):
        cw.GGN(model, LOSS, batches, bn_mode="train", sample_chunk=4)


def test_the_plan_is_timed_on_slices_of_the_first_batch_and_kept_for_its_width(monkeypatch):
    model = mlp()
    batches, inputs, targets = classification_data(model)  # batches of 7, 5, 8 and 4 samples
    timed = []
    original = cw.Hessian._timed

    def recording(self, plan, part_inputs, part_targets, tangents):
        first_sample = next(i for i in range(len(inputs)) if torch.equal(inputs[i], part_inputs[0]))
        timed.append((plan.backend, tangents[0].shape[0], first_sample, len(part_inputs)))
        return original(self, plan, part_inputs, part_targets, tangents)

    monkeypatch.setattr(cw.Hessian, "_timed", recording)
    monkeypatch.setattr(cw.curvature.operators, "TRIAL_SAMPLES", 3)
    monkeypatch.setattr(cw.curvature.operators, "RETIME_WITHIN", math.inf)  # every candidate timed twice
    op = cw.Hessian(model, LOSS, batches)
    block = random_block(op.dim, 5)
    first = op @ block
    forward, double = "forward-over-reverse", "double-backward"
    # a warm-up of each backend on 2 samples, then each candidate on 3 samples of the first batch: the block on
    # samples 0-2, one vector on 3-5, the block again on 0-2 (no room left: thrown away), one vector on 3-5; then
    # again those that find room
    assert timed == [(forward, 1, 0, 2), (double, 1, 0, 2), (forward, 5, 0, 3), (forward, 1, 3, 3),
                     (double, 5, 0, 3), (double, 1, 3, 3), (forward, 1, 3, 3), (double, 1, 3, 3)]
    plan = op.plan
    assert op.plans == {5: plan} and plan.width == 5 and plan.chosen_by == "timing" and op.backend == plan.backend
    candidates = [(backend, count) for backend in (forward, double) for count in (5, 1)]
    assert (plan.backend, plan.vectors_per_pass) in candidates
    assert sorted(plan.seconds) == sorted(f"{backend} x{count}" for backend, count in candidates)
    assert plan.seconds[plan.label] == min(plan.seconds.values()) or plan.label == "forward-over-reverse x5"
    exact = dense_hessian(model, LOSS, inputs, targets, all_names(model)) @ block
    torch.testing.assert_close(first, exact, rtol=1e-10, atol=1e-14)  # the timed pieces are part of it
    again = op @ block
    assert len(timed) == 8  # kept: no more timing
    torch.testing.assert_close(again, first, rtol=1e-12, atol=1e-15)
    pinned = cw.Hessian(model, LOSS, batches, backend=plan.backend, vector_chunk=plan.vectors_per_pass)
    assert torch.equal(again, pinned @ block) and pinned.plan.chosen_by == "pinned" and len(timed) == 8
    op.matvec(block[:, 0])  # another width: its own plan, two candidates on slices 0-2 and 3-5, no room for more
    assert timed[8:] == [(forward, 1, 0, 2), (double, 1, 0, 2), (forward, 1, 0, 3), (double, 1, 3, 3)]
    assert sorted(op.plans) == [1, 5] and 0 < op.plans[5].cost


@pytest.mark.parametrize("options, kept", [({}, True), ({"sample_chunk": None}, False), ({"bn_mode": "train"}, False)])
def test_the_products_made_while_timing_are_part_of_the_first_product_where_samples_may_be_split(
        monkeypatch, options, kept):
    model = mlp()
    batches, _, _ = classification_data(model)  # 24 samples
    made = []  # (vectors, samples) of every product made
    original = cw.Hessian._batch_product

    def counting(self, part_inputs, part_targets, tangents, plan):
        made.append(tangents[0].shape[0] * len(part_inputs))
        return original(self, part_inputs, part_targets, tangents, plan)

    monkeypatch.setattr(cw.Hessian, "_batch_product", counting)
    monkeypatch.setattr(cw.curvature.operators, "TRIAL_SAMPLES", 3)
    monkeypatch.setattr(cw.curvature.operators, "RETIME_WITHIN", math.inf)  # every candidate timed twice
    op = cw.Hessian(model, LOSS, batches, **options)
    op @ random_block(op.dim, 5)
    needed, warm_ups = 5 * 24, 2 * 2
    # kept: only the block on samples 0-2 a second time (no room left) is extra; else every trial of the first round
    extra = 5 * 3 if kept else 3 * (5 + 1 + 5 + 1)
    assert sum(made) == needed + warm_ups + extra


def test_the_samples_per_pass_are_timed_on_the_rest_of_the_first_batch(monkeypatch):
    model = mlp()
    batches, inputs, targets = classification_data(model, sizes=(24, 8))
    probe = cw.Hessian(model, LOSS, batches)
    sample_bytes = probe._bytes_per_sample(inputs[:2])
    budget = 2 * 3 * sample_bytes  # passes of 2 samples for 3 vectors in one pass
    monkeypatch.setattr(cw.curvature.operators, "CPU_PASS_BYTES", budget)
    monkeypatch.setattr(cw.curvature.operators, "PASS_BYTES_GROWTH", 1)
    monkeypatch.setattr(cw.curvature.operators, "TRIAL_SAMPLES", 2)
    original, passes = cw.Hessian._timed, []

    def half_the_budget_looks_faster(self, plan, part_inputs, *args):
        product, samples, _ = original(self, plan, part_inputs, *args)
        rate = 0.5 if plan.pass_bytes == budget // 2 else 1.0
        return product, samples, rate * samples * args[-1][0].shape[0]

    def recording(self, part_inputs, part_targets, vectors, pass_budget=None):
        for part in original_passes(self, part_inputs, part_targets, vectors, pass_budget):
            passes.append(len(part[1]))
            yield part

    original_passes = cw.Hessian._passes
    monkeypatch.setattr(cw.Hessian, "_timed", half_the_budget_looks_faster)
    monkeypatch.setattr(cw.Hessian, "_passes", recording)
    op = cw.Hessian(model, LOSS, batches, backend="forward-over-reverse")
    block = random_block(op.dim, 3)
    first = op @ block
    # one pass of each budget after the trial slices: 2 samples, then 1; the kept plan has the faster
    assert op.plan.pass_seconds.keys() == {budget, budget // 2} and op.plan.pass_bytes == budget // 2
    assert op.plan.to_meta()["pass_bytes"] == budget // 2
    exact = dense_hessian(model, LOSS, inputs, targets, all_names(model)) @ block
    torch.testing.assert_close(first, exact, rtol=1e-10, atol=1e-14)
    passes.clear()
    torch.testing.assert_close(op @ block, first, rtol=1e-12, atol=1e-15)
    assert passes == [1] * 32  # 24 + 8 samples in passes of 1


def test_a_plan_timed_on_slices_whose_targets_are_all_ignored_takes_the_default(monkeypatch):
    model = mlp()
    batches, inputs, targets = classification_data(model, sizes=(12, 5))
    targets = targets.clone()
    targets[:9] = -1  # the first three trial slices of 3 samples count nothing
    batches = [(inputs[:12], targets[:12]), (inputs[12:], targets[12:])]
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    monkeypatch.setattr(cw.curvature.operators, "TRIAL_SAMPLES", 3)
    op = cw.Hessian(model, loss_fn, batches)
    block = random_block(op.dim, 2)
    kept = targets != -1
    exact = dense_hessian(model, loss_fn, inputs[kept], targets[kept], all_names(model)) @ block
    torch.testing.assert_close(op @ block, exact, rtol=1e-10, atol=1e-14)
    # the first round's four trials (slices 0-2) count no sample; the second times the block on the fourth slice
    assert op.plan.label == "forward-over-reverse x2" and sorted(op.plan.seconds) == ["forward-over-reverse x2"]


def test_a_timed_plan_agrees_with_every_forced_plan_to_rounding():
    model = mlp().float()
    batches, inputs, targets = classification_data(model)
    block = random_block(sum(p.numel() for p in model.parameters()), 6).float()
    exact = dense_hessian(model.double(), LOSS, inputs.double(), targets, all_names(model)) @ block.double()
    model.float()
    for backend in ("forward-over-reverse", "double-backward"):
        for count in (1, 2, 4, 6):
            forced = cw.Hessian(model, LOSS, [(x.float(), y) for x, y in batches], backend=backend,
                                vector_chunk=count) @ block
            torch.testing.assert_close(forced.double(), exact, rtol=0, atol=1e-5 * exact.abs().max())

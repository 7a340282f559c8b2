"""The exact GGN diagonal (``ggn_diagonal``) and the Monte Carlo one (``mc_ggn_diagonal``) against dense references.

Everything in float64. The references are ``diag(J^T H_L J)`` built from the
full Jacobian and the dense output Hessian (``curvature_cases.dense_ggn``) of
the whole data as one batch, and, for conventions the dense loss of one batch
does not spell (``reduction="sum"``, batch statistics), ``exact_diagonal`` of
the same operator: products with the unit vectors, the operator's own matrix.
Sequence models return their classes on axis 1 (``nn.CrossEntropyLoss``) or
last (``cw.SequenceCrossEntropyLoss``, as a language model such as
``TinyTransformer`` on ``tinytext`` does).
"""

import functools
import math
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvature_cases import _functional, assert_unchanged, classification_data, cnn, dense_ggn, mlp, snapshot
from curvwidgets.curvature import exact_diagonal, ggn_diagonal, mc_ggn_diagonal
from curvwidgets.curvature.output_hessian import counted_weight, output_hessian_factor

TOL = 1e-12  # relative to the largest entry of the reference
SIZES = (7, 5, 8, 4)  # unequal batches; batch 1 (samples 7 to 11) is wholly ignored where targets may be
IGNORED = [0, 3, 7, 8, 9, 10, 11, 20]
CLASS_WEIGHTS = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)


def names(model):
    return [name for name, _ in model.named_parameters()]


def sequence_model() -> nn.Module:
    """Outputs ``(n, 3, 5)``: 3 classes (axis 1, as cross-entropy reads them) at 5 positions."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv1d(4, 3, 1)).double()


def generator(seed):
    return torch.Generator().manual_seed(seed)


def class_indices(shape, ignored=False):
    labels = torch.randint(0, 3, shape, generator=generator(11))
    if ignored:
        labels[IGNORED] = -1
    return labels


def class_probabilities(shape):
    return torch.softmax(2 * torch.randn(shape, generator=generator(12), dtype=torch.float64), dim=1)


class ClassesMoved(nn.Module):
    """``model``'s outputs with their class axis moved: ``last=True`` from 1 to the last axis, else from last to 1."""

    def __init__(self, model: nn.Module, last: bool = True):
        super().__init__()
        self.model, self.last = model, last

    def forward(self, inputs):
        outputs = self.model(inputs)
        return outputs.movedim(1, -1) if self.last else outputs.movedim(-1, 1)


def token_labels(ignore_index=None):
    """Class indices ``(24, 5)``; with ``ignore_index`` the samples ``IGNORED`` and four single positions ignored."""
    labels = class_indices((24, 5))
    if ignore_index is not None:
        labels[IGNORED] = ignore_index
        labels[[1, 2, 13, 22], [0, 4, 2, 1]] = ignore_index
    return labels


def sequence_loss(reduction, **options):
    """``cw.SequenceCrossEntropyLoss(**options)``: the mean over counted tokens, its only reduction."""
    if reduction != "mean":
        raise ValueError(f"SequenceCrossEntropyLoss takes the mean only; asked for {reduction!r}")
    return cw.SequenceCrossEntropyLoss(**options)


def token_case(name):
    """``(model, loss(reduction), inputs, targets)``: the classes last, outputs ``(24, 5, 3)``, sequence cross-entropy.

    ``tok_ce`` counts every token; ``tok_ce_ignore`` ignores targets -100 (the
    default ``ignore_index``; batch 1 wholly); ``tok_ce_pad`` ignores class 0.
    """
    options, labels = {"tok_ce": ({}, token_labels()), "tok_ce_ignore": ({}, token_labels(-100)),
                       "tok_ce_pad": ({"ignore_index": 0}, token_labels())}[name]
    inputs = torch.randn((24, 2, 5), generator=generator(10), dtype=torch.float64)
    return ClassesMoved(sequence_model()), functools.partial(sequence_loss, **options), inputs, labels


def case(name):
    """``(model, loss(reduction), inputs, targets)`` of a named case; 24 samples."""
    if name.startswith("tok_"):
        return token_case(name)
    sequence = name.startswith("seq_")
    model = sequence_model() if sequence else mlp()
    inputs = torch.randn((24, 2, 5) if sequence else (24, 5), generator=generator(10), dtype=torch.float64)
    outputs = (24, 3, 5) if sequence else (24, 3)
    positions = outputs[:1] + outputs[2:]
    kind = name.removeprefix("seq_")
    if kind == "ce":
        return model, lambda r: nn.CrossEntropyLoss(reduction=r), inputs, class_indices(positions)
    if kind == "ce_weights_ignore":
        return (model, lambda r: nn.CrossEntropyLoss(weight=CLASS_WEIGHTS, ignore_index=-1, reduction=r), inputs,
                class_indices(positions, ignored=True))
    if kind == "ce_smoothing":
        return model, lambda r: nn.CrossEntropyLoss(label_smoothing=0.1, reduction=r), inputs, class_indices(positions)
    if kind == "ce_all":
        return (model, lambda r: nn.CrossEntropyLoss(weight=CLASS_WEIGHTS, ignore_index=-1, label_smoothing=0.2,
                                                     reduction=r), inputs, class_indices(positions, ignored=True))
    if kind == "ce_probabilities":
        return (model, lambda r: nn.CrossEntropyLoss(weight=CLASS_WEIGHTS, label_smoothing=0.1, reduction=r), inputs,
                class_probabilities(outputs))
    if kind == "mse":
        return (model, lambda r: nn.MSELoss(reduction=r), inputs,
                torch.randn(outputs, generator=generator(13), dtype=torch.float64))
    if kind == "bce":
        weight = torch.tensor([[0.5], [1.0], [2.0]] if sequence else [0.5, 1.0, 2.0], dtype=torch.float64)
        pos_weight = torch.linspace(0.5, 3.0, outputs[-1], dtype=torch.float64)
        soft = torch.rand(outputs, generator=generator(14), dtype=torch.float64)  # soft labels exercise pos_weight
        return (model, lambda r: nn.BCEWithLogitsLoss(weight=weight, pos_weight=pos_weight, reduction=r), inputs,
                soft)
    raise KeyError(name)


SINGLE = ["ce", "ce_weights_ignore", "ce_smoothing", "ce_all", "ce_probabilities", "mse", "bce"]
CASES = SINGLE + [f"seq_{name}" for name in SINGLE]  # every loss with reduction "mean" and "sum"
TOKEN_CASES = ["tok_ce", "tok_ce_ignore", "tok_ce_pad"]  # SequenceCrossEntropyLoss: the mean only
#: (case, reduction) of every case
REDUCED_CASES = [(name, reduction) for name in CASES for reduction in ("mean", "sum")] + \
    [(name, "mean") for name in TOKEN_CASES]


def output_shape(name):
    """The outputs of a case's model, ``(24, ...)``."""
    return {"seq": (24, 3, 5), "tok": (24, 5, 3)}.get(name[:3], (24, 3))


def split(inputs, targets, sizes=SIZES):
    return list(zip(inputs.split(list(sizes)), targets.split(list(sizes))))


def assert_matches(estimate, reference, tol=TOL):
    scale = reference.abs().max()
    assert scale > 0
    error = (estimate - reference).abs().max() / scale
    assert error <= tol, f"relative error {error:.3e} > {tol:.0e}"


def dense_diagonal(model, loss_fn, inputs, targets, selected=None):
    return torch.diagonal(dense_ggn(model, loss_fn, inputs, targets, selected or names(model)))


@functools.lru_cache(maxsize=None)
def reference(name):
    """The dense GGN diagonal of a case's mean loss over all its samples as one batch (computed once per case)."""
    model, loss, inputs, targets = case(name)
    return dense_diagonal(model, loss("mean"), inputs, targets)


# ---- the closed-form factors of the output Hessian ------------------------------------------------------------

@pytest.mark.parametrize("name, reduction", REDUCED_CASES)
def test_factor_columns_reproduce_the_weighted_output_hessian(name, reduction):
    """``S_n S_n^T`` is the sample's block of ``W_b H_L``; the blocks between samples are zero."""
    _, loss, _, targets = case(name)
    loss_fn = loss(reduction)
    shape = output_shape(name)
    outputs = torch.randn(shape, generator=generator(20), dtype=torch.float64)
    factor = output_hessian_factor(loss_fn, outputs, targets)
    per_sample = math.prod(shape[1:])
    assert factor.rank == per_sample
    weight = counted_weight(loss_fn, targets) if reduction == "mean" else 1.0
    dense = weight * torch.autograd.functional.hessian(lambda flat: loss_fn(flat.view(shape), targets),
                                                      outputs.reshape(-1))
    columns = factor.columns(0, factor.rank).reshape(factor.rank, 24, per_sample)  # (C, n, O)
    blocks = torch.einsum("cni,cnj->nij", columns, columns)
    assert_matches(torch.block_diag(*blocks), dense)
    # columns in pieces are the same columns
    half = factor.rank // 2
    torch.testing.assert_close(torch.cat([factor.columns(0, half), factor.columns(half, factor.rank)]),
                               factor.columns(0, factor.rank), rtol=0, atol=0)


# ---- the exact diagonal ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CASES + TOKEN_CASES)
def test_ggn_diagonal_is_the_dense_diagonal(name):
    model, loss, inputs, targets = case(name)
    op = cw.GGN(model, loss("mean"), split(inputs, targets))
    assert_matches(ggn_diagonal(op), reference(name))


@pytest.mark.parametrize("name", CASES)
def test_ggn_diagonal_of_a_summed_loss_follows_the_operators_scale(name):
    """With ``reduction="sum"`` the diagonal is the dense one times the scale the operator gives a summed loss.

    That scale (``v^T G_sum v / v^T G_mean v`` for any ``v``) is the operator's
    convention, read from two of its products rather than assumed here.
    """
    model, loss, inputs, targets = case(name)
    summed, mean = (cw.GGN(model, loss(reduction), split(inputs, targets)) for reduction in ("sum", "mean"))
    probe = torch.randn(summed.dim, generator=generator(30), dtype=torch.float64)
    scale = (probe @ (summed @ probe)) / (probe @ (mean @ probe))
    assert_matches(ggn_diagonal(summed), scale * reference(name))


def test_ggn_diagonal_of_a_cnn_with_batchnorm_in_eval_mode():
    model = cnn(batch_norm=True)
    batches, inputs, targets = classification_data(model, sizes=SIZES)
    loss_fn = nn.CrossEntropyLoss()
    assert_matches(ggn_diagonal(cw.GGN(model, loss_fn, batches)), dense_diagonal(model, loss_fn, inputs, targets))


def dense_batch_statistics_diagonal(model, loss_fn, batches):
    """``(1/W) sum_b W_b diag(J_b^T H_b J_b)``, BatchNorm normalising each batch with its own statistics."""
    selected = names(model)
    params = dict(model.named_parameters())
    shapes = [params[name].shape for name in selected]
    flat = torch.cat([params[name].detach().reshape(-1) for name in selected])
    total, weight = torch.zeros_like(flat), 0.0
    flags = [module.training for module in model.modules()]
    model.train()
    try:
        for inputs, targets in batches:
            buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}

            def outputs_of(vector):
                values = dict(zip(selected, (piece.view(shape) for piece, shape in
                                             zip(vector.split([s.numel() for s in shapes]), shapes))))
                return torch.func.functional_call(model, {**buffers, **values}, (inputs,))

            outputs = outputs_of(flat).detach()
            jacobian = torch.autograd.functional.jacobian(outputs_of, flat).reshape(outputs.numel(), -1)
            hessian = torch.autograd.functional.hessian(lambda o: loss_fn(o.view_as(outputs), targets),
                                                        outputs.reshape(-1))
            batch_weight = counted_weight(loss_fn, targets)
            total += batch_weight * torch.diagonal(jacobian.T @ hessian @ jacobian)
            weight += batch_weight
    finally:
        for module, flag in zip(model.modules(), flags):
            module.training = flag
    return total / weight


def test_ggn_diagonal_with_batch_statistics_leaves_the_model_unchanged():
    model = cnn(batch_norm=True)
    batches, _, _ = classification_data(model, sizes=SIZES)
    loss_fn = nn.CrossEntropyLoss(weight=CLASS_WEIGHTS)
    model.eval()
    before = snapshot(model)
    op = cw.GGN(model, loss_fn, batches, bn_mode="train")
    diagonal = ggn_diagonal(op, chunk_size=5)
    assert_unchanged(model, before)
    reference = dense_batch_statistics_diagonal(model, loss_fn, batches)
    assert_matches(diagonal, reference)
    assert_matches(diagonal, exact_diagonal(op))
    eval_mode = ggn_diagonal(cw.GGN(model, loss_fn, batches))
    assert (diagonal - eval_mode).abs().max() > 1e-3 * reference.abs().max()  # batch statistics change it


def test_ggn_diagonal_over_selected_parameters_and_a_subset():
    model, loss, inputs, targets = case("ce_weights_ignore")
    op = cw.GGN(model, loss("mean"), split(inputs, targets), params="2.*", num_samples=15, seed=4)
    rows = op.data.selection
    reference = dense_diagonal(model, loss("mean"), inputs[rows], targets[rows], ["2.weight", "2.bias"])
    diagonal = ggn_diagonal(op)
    assert diagonal.shape == (op.dim,) == (21,)
    assert_matches(diagonal, reference)


def test_ggn_diagonal_in_float32_follows_the_operators_dtype():
    model, loss, inputs, targets = case("seq_ce_smoothing")  # no float64 class weights: the loss takes float32
    batches = split(inputs, targets)
    single = ggn_diagonal(cw.GGN(model, loss("mean"), batches, dtype=torch.float32))
    assert single.dtype == torch.float32 and next(model.parameters()).dtype == torch.float64
    double = ggn_diagonal(cw.GGN(model, loss("mean"), batches))
    torch.testing.assert_close(single.double(), double, rtol=1e-5, atol=1e-6 * double.abs().max().item())


@pytest.mark.parametrize("name", ["seq_ce_weights_ignore", "tok_ce_ignore"])
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 1000])
def test_chunk_size_does_not_change_the_diagonal(chunk_size, name):
    model, loss, inputs, targets = case(name)  # 15 columns per sample
    op = cw.GGN(model, loss("mean"), split(inputs, targets))
    assert_matches(ggn_diagonal(op, chunk_size=chunk_size), reference(name))


def cancel_after(steps):
    events, cancel = [], threading.Event()

    def progress(event):
        events.append(event)
        if len(events) == steps:
            cancel.set()

    return events, progress, cancel


def test_ggn_diagonal_reports_each_batch_and_cancels_with_the_batches_done():
    model, loss, inputs, targets = case("ce_weights_ignore")
    batches = split(inputs, targets)
    op = cw.GGN(model, loss("mean"), batches)
    events, progress, _ = cancel_after(0)
    final = ggn_diagonal(op, progress=progress)
    assert [(event.stage, event.step, event.total) for event in events] == [("ggn_diagonal", step, 4)
                                                                             for step in (1, 2, 3, 4)]
    torch.testing.assert_close(events[-1].partial, final, rtol=0, atol=0)
    events, progress, cancel = cancel_after(2)
    with pytest.raises(cw.Cancelled) as stopped:
        ggn_diagonal(op, progress=progress, cancel=cancel)
    assert stopped.value.step == 2 and len(events) == 2
    # batch 1 is wholly ignored: the first two batches count only batch 0's samples
    assert_matches(stopped.value.result, dense_diagonal(model, loss("mean"), *batches[0]))


# ---- sequence cross-entropy, the classes last -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["tok_ce_ignore", "tok_ce_pad"])
def test_sequence_cross_entropy_is_cross_entropy_with_the_classes_on_axis_1(name):
    """``SequenceCrossEntropyLoss`` of ``(n, T, C)`` logits: the diagonal of ``CrossEntropyLoss`` of ``(n, C, T)``."""
    model, loss, inputs, targets = token_case(name)
    batches = split(inputs, targets)
    last = ggn_diagonal(cw.GGN(model, loss("mean"), batches))
    first = ggn_diagonal(cw.GGN(sequence_model(), nn.CrossEntropyLoss(ignore_index=loss("mean").ignore_index), batches))
    assert_matches(last, first)


def batch_norm_token_model() -> nn.Module:
    """Outputs ``(n, 5, 3)``, the classes last, through BatchNorm with non-trivial running statistics."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.Tanh(), nn.Conv1d(4, 3, 1)).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.3, 0.3)
        model[1].running_var.uniform_(0.5, 1.5)
    return ClassesMoved(model)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_ggn_diagonal_of_sequence_cross_entropy_with_batch_norm(bn_mode):
    """Per-sample pullbacks (running statistics) and pullbacks through the batch (its statistics), ignored tokens."""
    model = batch_norm_token_model()
    _, loss, inputs, targets = token_case("tok_ce_ignore")
    batches = split(inputs, targets)
    if bn_mode == "eval":
        reference = dense_diagonal(model, loss("mean"), inputs, targets)
    else:
        reference = dense_batch_statistics_diagonal(model, loss("mean"), batches)
    model.eval()
    before = snapshot(model)
    assert_matches(ggn_diagonal(cw.GGN(model, loss("mean"), batches, bn_mode=bn_mode)), reference)
    assert_unchanged(model, before)


# ---- the Monte Carlo diagonal ---------------------------------------------------------------------------------

MC_CASES = [(name, reduction) for name in ["ce", "ce_weights_ignore", "mse", "bce", "seq_ce_weights_ignore", "seq_mse",
                                            "seq_bce"] for reduction in ("mean", "sum")] + [("tok_ce_ignore", "mean")]


def assert_monte_carlo_mean_is_the_exact_diagonal(op, exact, runs=100, num_mc=4):
    """Independent estimates (seeds 0..R-1) average to the exact diagonal within 5 of their standard errors.

    Each estimate is a mean of i.i.d. terms, so the mean of ``R = 100``
    estimates is about normal around its expectation with standard error
    ``s / sqrt(R)`` (``s`` the entries' sample standard deviation): an entry
    beyond 5 of them has probability below 1e-5 (Student t, 99 degrees of
    freedom), and these draws are seeded.
    """
    estimates = torch.stack([mc_ggn_diagonal(op, num_mc=num_mc, seed=seed, chunk_size=256) for seed in range(runs)])
    mean, error = estimates.mean(0), estimates.std(0) / math.sqrt(runs)
    assert (error > 0).all()  # every entry is random: the bound is not vacuous ...
    assert error.max() < 0.05 * exact.abs().max()  # ... and tight
    assert ((mean - exact).abs() <= 5 * error).all(), ((mean - exact).abs() / error).max()


@pytest.mark.parametrize("name, reduction", MC_CASES)
def test_monte_carlo_mean_is_within_five_standard_errors_of_the_exact_diagonal(name, reduction):
    model, loss, inputs, targets = case(name)
    op = cw.GGN(model, loss(reduction), split(inputs, targets))
    assert_monte_carlo_mean_is_the_exact_diagonal(op, ggn_diagonal(op))


def test_monte_carlo_draws_are_seeded_and_independent_of_the_chunks():
    model, loss, inputs, targets = case("seq_bce")
    op = cw.GGN(model, loss("mean"), split(inputs, targets))
    first = mc_ggn_diagonal(op, num_mc=3, seed=5, chunk_size=2)
    torch.testing.assert_close(first, mc_ggn_diagonal(op, num_mc=3, seed=5, chunk_size=64), rtol=1e-13, atol=0)
    assert not torch.allclose(first, mc_ggn_diagonal(op, num_mc=3, seed=6))


# ---- a language model: TinyTransformer on tinytext ------------------------------------------------------------

TEXT_MODEL = {"num_classes": 28, "d_model": 8, "n_layers": 1, "n_heads": 2, "context": 6}  # tinytext: 28 characters
#: Every parameter whose diagonal is not 0: not the embeddings of the characters that tinytext's first windows lack,
#: nor the query/key/value bias, whose key part the softmax over keys does not see (0 up to rounding, ~1e-36).
RANDOM_ENTRIES = ["positions.*", "blocks.0.norm*", "blocks.0.attention.qkv.weight", "blocks.0.attention.out.*",
                  "blocks.0.mlp.*", "norm.*", "head.*"]


@pytest.fixture
def one_thread():
    """A model this small costs less than the synchronisation of several threads (on a shared CPU, far less)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def language_model() -> nn.Module:
    torch.manual_seed(5)
    return cw.models.create("TinyTransformer", **TEXT_MODEL).double()


def text_data():
    """tinytext's first 7 windows of 6 characters, in batches of 3, 3 and 1 (a data set's evaluation loader)."""
    return cw.data.load("tinytext", num_samples=7, num_test=2, context=6, batch_size=3).evaluation_loader("train")


def prompted_text():
    """:func:`text_data` as batches whose targets at the first two positions (an unscored prompt) and in the last
    batch (wholly) are -100, the default ``ignore_index``."""
    batches = [(inputs, targets.clone()) for inputs, targets in text_data()]
    for _, targets in batches:
        targets[:, :2] = -100
    batches[-1][1][:] = -100
    return batches


def func_dense_diagonal(model, loss_fn, batches, selected=None):
    """``diag(J^T H_L J)`` of every batch as one: the dense GGN of ``torch.func`` Jacobian and output Hessian."""
    inputs, targets = (torch.cat(parts) for parts in zip(*batches))
    outputs_of, flat = _functional(model, selected or names(model), inputs)
    outputs = outputs_of(flat).detach()
    jacobian = torch.func.jacrev(outputs_of)(flat).reshape(outputs.numel(), -1)
    hessian = torch.func.hessian(lambda values: loss_fn(values.view_as(outputs), targets))(outputs.reshape(-1))
    return torch.diagonal(jacobian.T @ hessian @ jacobian)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("prompted", [False, True])
def test_ggn_diagonal_of_a_language_model_is_the_dense_diagonal(prompted):
    model, loss_fn = language_model(), cw.SequenceCrossEntropyLoss()
    data = prompted_text() if prompted else text_data()
    op = cw.GGN(model, loss_fn, data)
    scored = 24 if prompted else 42  # 6 windows of 4 scored tokens, or 7 of 6
    assert counted_weight(loss_fn, torch.cat([targets for _, targets in data])) == scored
    assert_matches(ggn_diagonal(op), func_dense_diagonal(model, loss_fn, data))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ggn_diagonal_of_a_language_model_with_the_classes_on_axis_1(reduction):
    """``nn.CrossEntropyLoss`` of ``(b, C, T)`` logits: class weights, ``ignore_index`` (-100) and label smoothing."""
    model = ClassesMoved(language_model(), last=False)
    loss_fn = nn.CrossEntropyLoss(weight=torch.linspace(0.5, 2.0, 28, dtype=torch.float64), label_smoothing=0.1,
                                  reduction=reduction)
    data = prompted_text()
    assert_matches(ggn_diagonal(cw.GGN(model, loss_fn, data)), func_dense_diagonal(model, loss_fn, data))


@pytest.mark.usefixtures("one_thread")
def test_monte_carlo_diagonal_of_a_language_model_averages_to_the_exact_one():
    model, loss_fn, data = language_model(), cw.SequenceCrossEntropyLoss(), prompted_text()
    op = cw.GGN(model, loss_fn, data, params=RANDOM_ENTRIES)
    exact = ggn_diagonal(op)
    assert_matches(exact, func_dense_diagonal(model, loss_fn, data, list(op.layout.names)))
    assert_monte_carlo_mean_is_the_exact_diagonal(op, exact, num_mc=8)


# ---- bad input ------------------------------------------------------------------------------------------------

def mlp_case(loss_fn, targets=None):
    model = mlp()
    batches, _, _ = classification_data(model, sizes=SIZES)
    if targets is not None:
        batches = split(torch.cat([batch[0] for batch in batches]), targets)
    return cw.GGN(model, loss_fn, batches)


def plain_cross_entropy(outputs, labels):
    return nn.functional.cross_entropy(outputs, labels)


BAD = {
    "ggn_diagonal of a Hessian": (lambda: ggn_diagonal(cw.Hessian(mlp(), nn.CrossEntropyLoss(),
                                                                  classification_data(mlp())[0])),
                                  TypeError, r"^ggn must be a curvwidgets GGN operator; got Hessian"),
    "ggn_diagonal of an array": (lambda: ggn_diagonal(np.eye(3)), TypeError,
                                 r"^ggn must be a curvwidgets GGN operator; got ndarray"),
    "ggn_diagonal of a plain callable": (lambda: ggn_diagonal(mlp_case(plain_cross_entropy)), ValueError,
                                         r"^loss_fn must be nn.CrossEntropyLoss, cw.SequenceCrossEntropyLoss, "
                                         r"nn.MSELoss or nn.BCEWithLogitsLoss with reduction 'mean' or 'sum' .*; "
                                         r"got a function"),
    "ggn_diagonal of a Huber loss": (lambda: ggn_diagonal(mlp_case(nn.HuberLoss())), ValueError,
                                     r"^loss_fn must be .*; got HuberLoss\(reduction='mean'\)"),
    "ggn_diagonal of NLL": (lambda: ggn_diagonal(mlp_case(nn.NLLLoss())), ValueError,
                            r"^loss_fn must be .*; got NLLLoss\(reduction='mean'\)"),
    "ggn_diagonal chunk_size 0": (lambda: ggn_diagonal(mlp_case(nn.CrossEntropyLoss()), chunk_size=0), ValueError,
                                  r"^chunk_size must be an int >= 1; got 0"),
    "ggn_diagonal progress": (lambda: ggn_diagonal(mlp_case(nn.CrossEntropyLoss()), progress="yes"), TypeError,
                              r"^progress must be None or a callable"),
    "ggn_diagonal cancel": (lambda: ggn_diagonal(mlp_case(nn.CrossEntropyLoss()), cancel=True), TypeError,
                            r"^cancel must be None or an object with an is_set\(\) method"),
    "ggn_diagonal labels out of range": (lambda: ggn_diagonal(mlp_case(nn.CrossEntropyLoss(), torch.full((24,), 7))),
                                         ValueError, r"^data: the model or loss_fn failed on a batch"),
    "ggn_diagonal every target ignored": (
        lambda: ggn_diagonal(mlp_case(nn.CrossEntropyLoss(ignore_index=-1), torch.full((24,), -1))), ValueError,
        r"^loss_fn counts no target of data"),
    "ggn_diagonal MSE targets broadcast": (lambda: ggn_diagonal(mlp_case(nn.MSELoss(), torch.zeros(24, 1))),
                                           ValueError, r"^data must yield targets of the outputs' shape \(7, 3\) for "
                                                       r"the factored output Hessian of MSELoss; got \(7, 1\)"),
    "ggn_diagonal sequence targets of another shape": (
        lambda: ggn_diagonal(mlp_case(cw.SequenceCrossEntropyLoss(), torch.zeros(24, 2, dtype=torch.int64))),
        ValueError, r"SequenceCrossEntropyLoss needs logits \(B, T, V\) and targets \(B, T\); got \(7, 3\) and "
                    r"\(7, 2\)"),
    "ggn_diagonal sequence targets out of range": (
        lambda: ggn_diagonal(mlp_case(cw.SequenceCrossEntropyLoss(), torch.full((24,), 7))), ValueError,
        r"^data: the model or loss_fn failed on a batch"),
    "mc_ggn_diagonal every sequence target ignored": (
        lambda: mc_ggn_diagonal(mlp_case(cw.SequenceCrossEntropyLoss(), torch.full((24,), -100))), ValueError,
        r"^loss_fn counts no target of data: every target is its ignore_index \(-100\)"),
    "sequence factor of probability targets": (
        lambda: output_hessian_factor(cw.SequenceCrossEntropyLoss(), torch.zeros(4, 5, 3), torch.zeros(4, 5, 3)),
        ValueError, r"^data must yield class-index targets of shape \(4, 5\) for logits of shape \(4, 5, 3\) \(the "
                    r"factored output Hessian of SequenceCrossEntropyLoss\); got torch.float32 of shape \(4, 5, 3\)"),
    "sequence loss ignore_index": (lambda: cw.SequenceCrossEntropyLoss(ignore_index=1.5), ValueError,
                                   r"^ignore_index must be an int; got 1.5"),
    "mc_ggn_diagonal of a plain callable": (lambda: mc_ggn_diagonal(mlp_case(plain_cross_entropy)), ValueError,
                                            r"^loss_fn must be .*; got a function .*: mc_ggn_diagonal samples the "
                                            r"output Hessian of these losses only; for another loss use "
                                            r"hutchinson_diagonal\(ggn, num_samples\)"),
    "mc_ggn_diagonal of reduction none": (
        lambda: mc_ggn_diagonal(mlp_case(nn.CrossEntropyLoss(reduction="none"))), ValueError,
        r"got CrossEntropyLoss\(reduction='none'\)"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_refused_with_a_clear_error(name):
    call, error, message = BAD[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MSELoss warns of the broadcast before it is refused
        with pytest.raises(error, match=message):
            call()

"""Batches of any structure: inputs as a tuple or mapping of tensors, outputs with ``.logits`` or ``["logits"]``.

References, float64: the dense autograd Hessian and ``J^T H_L J`` of the loss
over all samples as one batch, the model called the way it is written
(``model(*inputs)``, ``model(**inputs)``), and the loss itself at moved weights.
"""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.curvature import ggn_diagonal
from curvwidgets.curvature.batches import StructuredInputs, as_inputs, concatenate, logits_of

TOL = 1e-12


@dataclass
class Output:
    """What a Hugging Face model returns: an object whose ``logits`` the loss takes."""

    logits: torch.Tensor
    hidden: torch.Tensor


class KeywordModel(nn.Module):
    """Called as ``model(features=..., mask=...)``, returning an :class:`Output` (``.logits``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(5, 6), nn.Linear(6, 3)

    def forward(self, features, mask):
        hidden = torch.tanh(self.first(features)) * mask[:, None]
        return Output(logits=self.second(hidden), hidden=hidden)


class PositionalModel(nn.Module):
    """Called as ``model(left, right)``, returning a mapping with ``"logits"``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.left, self.right = nn.Linear(3, 4), nn.Linear(2, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, left, right):
        return {"logits": self.head(torch.tanh(self.left(left) + self.right(right))), "extra": left.sum()}


class TokenModel(nn.Module):
    """A sequence model written as Hugging Face ones are: ``model(input_ids=, attention_mask=)`` -> ``.logits``."""

    def __init__(self, vocabulary: int = 5):
        super().__init__()
        torch.manual_seed(2)
        self.embed, self.mix, self.head = nn.Embedding(vocabulary, 4), nn.Linear(4, 4), nn.Linear(4, vocabulary)

    def forward(self, input_ids, attention_mask):
        hidden = self.embed(input_ids) * attention_mask[..., None]
        hidden = torch.tanh(self.mix(hidden) + hidden.cumsum(1) / 4)  # each position sees the ones before it
        return Output(logits=self.head(hidden), hidden=hidden)


def generator(seed):
    return torch.Generator().manual_seed(seed)


def keyword_case():
    features = torch.randn(17, 5, generator=generator(3), dtype=torch.float64)
    mask = (torch.rand(17, generator=generator(4)) > 0.2).double()
    targets = torch.randint(0, 3, (17,), generator=generator(5))
    return KeywordModel().double(), {"features": features, "mask": mask}, targets, nn.CrossEntropyLoss


def positional_case():
    left = torch.randn(17, 3, generator=generator(6), dtype=torch.float64)
    right = torch.randn(17, 2, generator=generator(7), dtype=torch.float64)
    targets = torch.randn(17, 3, generator=generator(8), dtype=torch.float64)
    return PositionalModel().double(), (left, right), targets, nn.MSELoss


def token_case():
    ids = torch.randint(0, 5, (17, 6), generator=generator(9))
    mask = torch.ones(17, 6, dtype=torch.float64)
    mask[3, 4:] = 0
    targets = torch.randint(0, 5, (17, 6), generator=generator(10))
    targets[3, 4:] = -100  # padding is not scored
    return TokenModel().double(), {"input_ids": ids, "attention_mask": mask}, targets, cw.SequenceCrossEntropyLoss


CASES = {"keyword": keyword_case, "positional": positional_case, "tokens": token_case}
SIZES = [5, 4, 8]


def batches(inputs, targets, sizes=SIZES):
    """The samples cut into batches of unequal sizes, the inputs kept in their structure."""
    out, start = [], 0
    for size in sizes:
        rows = slice(start, start + size)
        part = {k: v[rows] for k, v in inputs.items()} if isinstance(inputs, dict) else tuple(v[rows] for v in inputs)
        out.append((part, targets[rows]))
        start += size
    return out


def call(model, inputs):
    return model(**inputs) if isinstance(inputs, dict) else model(*inputs)


def flat_function(model, inputs):
    """The logits as a function of the flat parameter vector, and that vector."""
    names = [name for name, _ in model.named_parameters()]
    params = list(model.parameters())

    def outputs_of(flat):
        values = [piece.view_as(p) for piece, p in zip(torch.split(flat, [p.numel() for p in params]), params)]
        state = dict(zip(names, values))
        arguments = inputs if isinstance(inputs, dict) else {}
        positional = () if isinstance(inputs, dict) else inputs
        return logits_of(torch.func.functional_call(model, state, positional, arguments))

    return outputs_of, torch.cat([p.detach().reshape(-1) for p in params])


def dense_references(model, inputs, targets, loss_fn):
    outputs_of, flat = flat_function(model, inputs)
    hessian = torch.autograd.functional.hessian(lambda p: loss_fn(outputs_of(p), targets), flat)
    outputs = outputs_of(flat).detach()
    jacobian = torch.autograd.functional.jacobian(outputs_of, flat).reshape(outputs.numel(), -1)
    output_hessian = torch.autograd.functional.hessian(lambda o: loss_fn(o.view_as(outputs), targets),
                                                       outputs.reshape(-1))
    return hessian, jacobian.T @ output_hessian @ jacobian


def assert_close(estimate, reference, tol=TOL):
    error = (estimate - reference).abs().max() / reference.abs().max()
    assert error <= tol, f"relative error {error:.3e} > {tol:.0e}"


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", list(CASES))
def test_hessian_and_ggn_of_structured_batches_equal_the_dense_ones(name, reduction):
    model, inputs, targets, loss_class = CASES[name]()
    loss_fn = loss_class(reduction=reduction) if loss_class is not cw.SequenceCrossEntropyLoss else loss_class()
    hessian, ggn = dense_references(model, inputs, targets, loss_fn)
    data = batches(inputs, targets)
    block = torch.randn(hessian.shape[0], 3, generator=generator(11), dtype=torch.float64)
    for backend in ("auto", "double-backward"):
        assert_close(cw.Hessian(model, loss_fn, data, backend=backend) @ block, hessian @ block)
        assert_close(cw.GGN(model, loss_fn, data, backend=backend) @ block, ggn @ block)
    # passes of 2 samples: structured inputs are cut like tensors
    assert_close(cw.Hessian(model, loss_fn, data, sample_chunk=2) @ block, hessian @ block)
    assert_close(ggn_diagonal(cw.GGN(model, loss_fn, data)), torch.diagonal(ggn))


@pytest.mark.parametrize("name", list(CASES))
def test_loss_stats_and_landscapes_read_structured_batches(name):
    model, inputs, targets, loss_class = CASES[name]()
    loss_fn = loss_class()
    data = batches(inputs, targets)
    outputs_of, flat = flat_function(model, inputs)
    statistics = cw.loss_stats(model, loss_fn, data, curvature="ggn", num_probes=2)
    assert statistics["loss_mean"] == pytest.approx(loss_fn(outputs_of(flat), targets).item(), rel=1e-12)
    direction = cw.random_directions(model, 1, seed=2)[0]
    for samples in (None, 3):  # pieces of 3 samples join and cut the structured batches
        walk = cw.loss_landscape(model, data, [direction], dist=0.5, n_points=3, loss_fn=loss_fn,
                                 samples_per_pass=samples)
        for index, t in enumerate(np.linspace(-0.5, 0.5, 3)):
            expected = loss_fn(outputs_of(flat + t * direction.vector), targets).item()
            assert walk["train_loss"][0, index] == pytest.approx(expected, rel=1e-12)


def test_a_subset_and_changed_data_are_seen_through_the_structure():
    model, inputs, targets, loss_class = keyword_case()
    data = batches(inputs, targets)
    subset = cw.Hessian(model, loss_class(), data, num_samples=6, seed=1)
    rows = torch.randperm(17, generator=torch.Generator().manual_seed(1))[:6].sort().values
    hessian, _ = dense_references(model, {k: v[rows] for k, v in inputs.items()}, targets[rows], loss_class())
    block = torch.randn(subset.dim, 2, generator=generator(12), dtype=torch.float64)
    assert_close(subset @ block, hessian @ block)
    changing = cw.Hessian(model, loss_class(), data)
    changing @ block
    data[1][0]["mask"][0] = 1 - data[1][0]["mask"][0]  # one mask entry differs on the next pass
    with pytest.raises(ValueError, match="data must yield the same samples on every pass"):
        changing @ block


class Normalised(nn.Module):
    """A BatchNorm network; called with a tensor, or (as :class:`Keyworded`) with ``features=``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.net = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x):
        return self.net(x)


class Keyworded(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, features):
        return Output(logits=self.inner(features), hidden=features)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_batch_statistics_and_running_statistics_work_through_the_structure(bn_mode):
    """The same network with BatchNorm, as a tensor model and a keyword model: the same products, bit for bit."""
    inner = Normalised().double()
    features = torch.randn(17, 5, generator=generator(14), dtype=torch.float64)
    targets = torch.randint(0, 3, (17,), generator=generator(15))
    plain = batches((features,), targets)
    keyword = [({"features": part[0]}, t) for part, t in plain]
    plain = [(part[0], t) for part, t in plain]
    block = torch.randn(cw.Hessian(inner, nn.CrossEntropyLoss(), plain).dim, 2, generator=generator(16),
                        dtype=torch.float64)
    for kind in (cw.Hessian, cw.GGN):
        expected = kind(inner, nn.CrossEntropyLoss(), plain, bn_mode=bn_mode, backend="double-backward") @ block
        got = kind(Keyworded(inner), nn.CrossEntropyLoss(), keyword, bn_mode=bn_mode, backend="double-backward") @ block
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_floating_inputs_are_cast_to_the_operators_dtype_and_token_ids_are_not():
    model, inputs, targets, loss_class = token_case()
    narrow = [({"input_ids": part["input_ids"], "attention_mask": part["attention_mask"].float()}, t)
              for part, t in batches(inputs, targets)]
    block = torch.randn(cw.Hessian(model, loss_class(), narrow).dim, 1, generator=generator(13), dtype=torch.float64)
    assert_close(cw.Hessian(model, loss_class(), narrow) @ block,
                 cw.Hessian(model, loss_class(), batches(inputs, targets)) @ block)


def test_the_structure_slices_splits_joins_and_moves_like_a_tensor():
    parts = {"a": torch.arange(6.0).reshape(3, 2), "b": torch.arange(3)}
    inputs = as_inputs(parts)
    assert isinstance(inputs, StructuredInputs) and len(inputs) == 3
    assert inputs[1:].parts["b"].tolist() == [1, 2] and inputs[torch.tensor([2, 0])].parts["a"][0].tolist() == [4, 5]
    assert [len(piece) for piece in inputs.split(2)] == [2, 1]
    joined = concatenate(inputs.split(2))
    assert all(torch.equal(joined.parts[k], parts[k]) for k in parts)
    cast = inputs.to("cpu", torch.float64)
    assert cast.parts["a"].dtype == torch.float64 and cast.parts["b"].dtype == torch.int64
    assert as_inputs(parts["a"]) is parts["a"]  # a tensor is left as it is


@pytest.mark.parametrize("batch, error, message", [
    (({"x": [1, 2]}, torch.zeros(2)), TypeError, r"inputs given as a dict must hold tensors only; got 'x': list"),
    ((("a", torch.zeros(2)), torch.zeros(2)), TypeError, r"must hold tensors only; got 0: str"),
    (({"x": torch.zeros(3), "m": torch.zeros(2)}, torch.zeros(3)), ValueError,
     r"the tensors of the inputs must have as many samples"),
    (({"x": torch.zeros(3)}, [0, 1, 2]), TypeError, r"data must yield targets as tensors"),
    ({"x": torch.zeros(3), "labels": torch.zeros(3)}, TypeError, r"data must yield \(inputs, targets\) pairs; got a "
     r"mapping with keys \['labels', 'x'\]"),
])
def test_batches_the_adapter_cannot_read_name_data_and_what_was_found(batch, error, message):
    model = KeywordModel().double()
    with pytest.raises(error, match=message):
        cw.Hessian(model, nn.CrossEntropyLoss(), [batch])


def test_a_model_output_without_logits_names_the_model():
    class Hidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(5, 3)

        def forward(self, features):
            return {"hidden": self.linear(features)}

    data = [({"features": torch.randn(4, 5)}, torch.tensor([0, 1, 2, 0]))]
    op = cw.Hessian(Hidden(), nn.CrossEntropyLoss(), data)
    with pytest.raises(TypeError, match=r"model must return a tensor of outputs, a mapping with a 'logits' tensor "
                                        r"or an object with a \.logits tensor .*got a mapping with keys \['hidden'\]"):
        op @ torch.zeros(op.dim, 1)
    with pytest.raises(TypeError, match=r"model must return .*got a mapping with keys \['hidden'\]"):
        cw.loss_landscape(Hidden(), data, cw.random_directions(Hidden(), 1), n_points=3)


def test_a_loss_that_returns_no_scalar_names_loss_fn():
    model, inputs, targets, _ = keyword_case()
    op = cw.Hessian(model, nn.CrossEntropyLoss(reduction="none"), batches(inputs, targets))
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor"):
        op @ torch.zeros(op.dim, 1, dtype=torch.float64)

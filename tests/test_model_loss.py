"""A model that computes its own loss from the batch: ``loss_fn=cw.ModelLoss()``.

References, float64: the dense autograd Hessian of the model's own loss on
all samples as one batch (the token mean over every counted label, or the
sum), and the same network evaluated through an ordinary ``loss_fn`` on
``(inputs, targets)`` batches.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import curvwidgets as cw
from curvwidgets.curvature.batches import no_targets

TOL = 1e-12
IGNORED = -100


class CausalModel(nn.Module):
    """A Hugging Face-style language model: ``model(input_ids=, labels=)`` returns ``.loss`` and ``.logits``.

    The loss is the mean (or sum) cross-entropy over the labels that are not
    ``-100``, as such models compute it.
    """

    def __init__(self, vocabulary: int = 5, width: int = 4, reduction: str = "mean"):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(vocabulary, width), nn.Linear(width, vocabulary)
        self.reduction = reduction

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.embed(input_ids)).cumsum(dim=1)  # each position sees the ones before it
        return self.head(hidden)

    def forward(self, input_ids, labels):
        logits = self.logits(input_ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORED,
                               reduction=self.reduction)
        return SimpleNamespace(loss=loss, logits=logits)


class PairModel(nn.Module):
    """Called as ``model(x, y)`` and returning the scalar loss itself."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.first, self.second = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x, y):
        return F.mse_loss(self.second(torch.tanh(self.first(x))), y)


def token_batches(sizes=(3, 5, 2), length: int = 4, seed: int = 0):
    """Dict batches of token ids and labels, some labels ignored (so batches count different numbers of tokens)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for size in sizes:
        ids = torch.randint(0, 5, (size, length), generator=generator)
        labels = torch.randint(0, 5, (size, length), generator=generator)
        labels[torch.rand(size, length, generator=generator) < 0.3] = IGNORED
        batches.append({"input_ids": ids, "labels": labels})
    return batches


def counted_tokens(batch) -> torch.Tensor:
    return (batch["labels"] != IGNORED).sum()


def dense_hessian(model: nn.Module, loss_of_state) -> torch.Tensor:
    """The autograd Hessian of ``loss_of_state(state)`` in every parameter of ``model``, float64 ``(P, P)``."""
    named = dict(model.named_parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in named.values()])

    def loss_of(vector):
        state, start = {}, 0
        for name, parameter in named.items():
            state[name] = vector[start : start + parameter.numel()].view_as(parameter)
            start += parameter.numel()
        return loss_of_state(state)

    return torch.autograd.functional.hessian(loss_of, flat)


def dense(operator) -> torch.Tensor:
    return operator @ torch.eye(operator.dim, dtype=torch.float64)


def one_batch(batches):
    return {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_hessian_of_the_models_own_loss_over_all_batches_as_one(reduction):
    model, batches = CausalModel(reduction=reduction).double(), token_batches()
    loss_fn = cw.ModelLoss(reduction=reduction, count=counted_tokens)
    every = one_batch(batches)
    reference = dense_hessian(model, lambda state: torch.func.functional_call(model, state, (), every).loss)
    operator = cw.Hessian(model, loss_fn, batches, backend="double-backward")
    assert torch.allclose(dense(operator), reference, rtol=0, atol=TOL * reference.abs().max())
    forward = cw.Hessian(model, loss_fn, batches, backend="forward-over-reverse")
    assert torch.allclose(dense(forward), reference, rtol=0, atol=TOL * reference.abs().max())


def test_the_default_count_weights_batches_by_samples():
    """Without ``count`` a batch counts its samples: with no ignored label and equal lengths that is exact."""
    model, batches = CausalModel().double(), token_batches()
    for batch in batches:
        batch["labels"] = batch["labels"].clamp(min=0)
    every = one_batch(batches)
    reference = dense_hessian(model, lambda state: torch.func.functional_call(model, state, (), every).loss)
    assert torch.allclose(dense(cw.Hessian(model, cw.ModelLoss(), batches)), reference, rtol=0,
                          atol=TOL * reference.abs().max())


def test_a_tuple_batch_is_spread_over_the_models_arguments_and_a_tensor_output_is_the_loss():
    model = PairModel().double()
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(n, 3, generator=generator, dtype=torch.float64),
                torch.randn(n, 2, generator=generator, dtype=torch.float64)) for n in (4, 6)]
    x, y = (torch.cat(column) for column in zip(*batches))
    reference = dense_hessian(model, lambda state: torch.func.functional_call(model, state, (x, y)))
    assert torch.allclose(dense(cw.Hessian(model, cw.ModelLoss(), batches)), reference, rtol=0,
                          atol=TOL * reference.abs().max())


def test_it_equals_the_same_loss_given_as_loss_fn_on_inputs_and_targets():
    """The model's own loss and ``loss_fn`` on its logits are one curvature, also on a seeded subset."""
    model, batches = CausalModel().double(), token_batches()
    loss_fn = cw.ModelLoss(count=counted_tokens)
    pairs = [({"input_ids": batch["input_ids"]}, batch["labels"]) for batch in batches]
    logits_model = LogitsOnly(model)
    sequence_loss = nn.CrossEntropyLoss(ignore_index=IGNORED)
    for num_samples in (None, 6):
        own = dense(cw.Hessian(model, loss_fn, batches, num_samples=num_samples, seed=3))
        given = dense(cw.Hessian(logits_model, sequence_loss, pairs, num_samples=num_samples, seed=3))
        assert torch.allclose(own, given, rtol=0, atol=TOL * given.abs().max())


class LogitsOnly(nn.Module):
    """The network of a :class:`CausalModel` without its loss: ``model(input_ids=)`` -> logits ``(B, V, T)``.

    The classes on axis 1, as ``nn.CrossEntropyLoss`` reads them (and counts its ``ignore_index``).
    """

    def __init__(self, model: CausalModel):
        super().__init__()
        self.embed, self.head = model.embed, model.head

    def forward(self, input_ids):
        return CausalModel.logits(self, input_ids).transpose(1, 2)


def test_loss_stats_of_a_model_loss_describe_the_hessian_by_default():
    model, batches = CausalModel().double(), token_batches()
    loss_fn = cw.ModelLoss(count=counted_tokens)
    stats = cw.loss_stats(model, loss_fn, batches, num_probes=3)
    assert not any(key.startswith("ggn") for key in stats)
    every = one_batch(batches)
    with torch.no_grad():
        assert stats["loss_mean"] == pytest.approx(model(**every).loss.item(), rel=TOL)
    weights = torch.tensor([float(counted_tokens(batch)) for batch in batches], dtype=torch.float64)
    with torch.no_grad():
        losses = torch.tensor([model(**batch).loss.item() for batch in batches], dtype=torch.float64)
    mean = (weights * losses).sum() / weights.sum()
    assert stats["loss_variance"] == pytest.approx(((weights * (losses - mean) ** 2).sum() / weights.sum()).item(),
                                                   rel=1e-9)
    assert stats["num_samples"] == sum(len(batch["labels"]) for batch in batches)


def test_a_landscape_of_the_models_own_loss_equals_the_loss_fn_path_and_has_no_accuracy():
    model, batches = CausalModel().double(), token_batches()
    pairs = [({"input_ids": batch["input_ids"]}, batch["labels"]) for batch in batches]
    logits_model = LogitsOnly(model)
    directions = cw.random_directions(model, 2, seed=4)
    own = cw.loss_landscape(model, batches, directions, dist=0.5, n_points=5,
                            loss_fn=cw.ModelLoss(count=counted_tokens))
    given = cw.loss_landscape(logits_model, pairs, directions, dist=0.5, n_points=5,
                              loss_fn=nn.CrossEntropyLoss(ignore_index=IGNORED))
    np.testing.assert_allclose(own.values["train_loss"], given.values["train_loss"], rtol=TOL, atol=0)
    assert np.isnan(own.values["train_accuracy"]).all()


def test_the_ggn_of_a_model_loss_is_refused_naming_loss_fn():
    model, batches = CausalModel().double(), token_batches()
    with pytest.raises(ValueError, match=r"loss_fn: the GGN needs the loss as a function of the model's outputs"):
        cw.GGN(model, cw.ModelLoss(), batches)
    with pytest.raises(ValueError, match=r"loss_fn: the GGN needs"):
        cw.loss_stats(model, cw.ModelLoss(), batches, curvature="ggn")


def test_bad_input_names_what_was_found():
    model, batches = CausalModel().double(), token_batches()
    with pytest.raises(TypeError, match=r"data must yield \(inputs, targets\) pairs; got a mapping with keys "
                                        r"\['input_ids', 'labels'\].*loss_fn=cw.ModelLoss\(\)"):
        cw.Hessian(model, nn.CrossEntropyLoss(), batches)
    operator = cw.Hessian(LogitsOnly(model), cw.ModelLoss(), [{"input_ids": batches[0]["input_ids"]}])
    with pytest.raises(TypeError, match=r"model must return its scalar loss for loss_fn=ModelLoss\(.*shape \(\d+, 5, 4\)"):
        operator @ torch.zeros(operator.dim, dtype=torch.float64)
    named = cw.Hessian(model, cw.ModelLoss(loss="total"), batches)
    with pytest.raises(TypeError, match=r"'total' of the SimpleNamespace it returned is NoneType"):
        named @ torch.zeros(named.dim, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"data: inputs must be a tensor, a tuple of tensors or a mapping"):
        cw.Hessian(model, cw.ModelLoss(), [3.0])
    with pytest.raises(ValueError, match=r"reduction must be 'mean' or 'sum'; got 'none'"):
        cw.ModelLoss(reduction="none")
    with pytest.raises(TypeError, match=r"count must be None or callable"):
        cw.ModelLoss(count=3)
    with pytest.raises(TypeError, match=r"loss must be the name of the loss"):
        cw.ModelLoss(loss=3)


def test_no_targets_slice_join_and_move_as_targets_do():
    targets = no_targets(5)
    assert targets.shape == (5, 0) and len(targets[1:3]) == 2 and len(torch.cat([targets, targets])) == 10

"""``cw.train`` on batches of any structure: mapping and tuple inputs, outputs with ``.logits``, ``cw.ModelLoss``.

Each run is checked against something computed without the training loop: a
hand-written loop over the same batches (weights to 1e-12 in float64), a
direct evaluation (test loss and accuracy), or the same model trained through
the plain-tensor path on its inputs packed into one tensor.
"""

import copy
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import curvwidgets as cw
from curvwidgets.curvature.batches import StructuredInputs
from curvwidgets.training.batches import BatchReader, update_batch_norm

VOCAB, WIDTH, CLASSES, LENGTH = 11, 6, 3, 5
TRAIN_SIZES, TEST_SIZES = (5, 7, 4), (6, 3)  # batches of different sizes: the mean loss must weight them
IGNORED = -100  # labels the cross-entropy (and the ModelLoss count) leave out
SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
EXACT = dict(rtol=0.0, atol=1e-12)


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Output:
    """What a Hugging Face model returns: ``.logits``, and ``.loss`` when given labels."""

    logits: torch.Tensor
    loss: Optional[torch.Tensor] = None


class Classifier(nn.Module):
    """A Hugging Face-style sequence classifier: ``forward(input_ids, attention_mask, labels=None) -> Output``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.norm = nn.BatchNorm1d(WIDTH)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: Optional[torch.Tensor] = None) -> Output:
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        logits = self.head(torch.tanh(self.norm(pooled)))
        return Output(logits, None if labels is None else F.cross_entropy(logits, labels, ignore_index=IGNORED))


class SummingClassifier(Classifier):
    """``Classifier`` whose loss is the sum over the counted labels, not their mean."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: Optional[torch.Tensor] = None) -> Output:
        output = super().forward(input_ids, attention_mask, labels)
        return Output(output.logits, output.loss * (labels != IGNORED).sum())


class TwoInputs(nn.Module):
    """A model of two tensors, ``forward(x1, x2)``, returning a mapping with ``"logits"``."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(4, CLASSES), nn.Linear(2, CLASSES)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict:
        return {"logits": self.first(x1) + torch.tanh(self.second(x2))}


class Packed(nn.Module):
    """``Classifier`` on one tensor ``(b, T, 2)`` of token ids and mask: the plain-tensor path, same parameters."""

    def __init__(self, inner: Classifier):
        super().__init__()
        self.inner = inner

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.inner(input_ids=packed[..., 0], attention_mask=packed[..., 1]).logits


def fresh(cls: type) -> nn.Module:
    torch.manual_seed(0)
    return cls().double()


def tokens(size: int, generator: torch.Generator) -> dict:
    """``input_ids`` and an ``attention_mask`` that masks some of the last two positions."""
    mask = torch.ones(size, LENGTH, dtype=torch.int64)
    mask[:, 3:] = torch.randint(0, 2, (size, 2), generator=generator)
    return {"input_ids": torch.randint(0, VOCAB, (size, LENGTH), generator=generator), "attention_mask": mask}


def labels(size: int, generator: torch.Generator) -> torch.Tensor:
    """Class labels, a few of them ignored (never all of a batch)."""
    drawn = torch.randint(0, CLASSES, (size,), generator=generator)
    drawn[1::3] = IGNORED
    return drawn


def dict_batches(sizes, seed: int) -> list:
    """``({"input_ids", "attention_mask"}, labels)`` batches; labels without ignored entries."""
    generator = torch.Generator().manual_seed(seed)
    return [(tokens(size, generator), torch.randint(0, CLASSES, (size,), generator=generator)) for size in sizes]


def labelled_batches(sizes, seed: int) -> list:
    """``{"input_ids", "attention_mask", "labels"}`` batches: the inputs alone, the labels among them."""
    generator = torch.Generator().manual_seed(seed)
    return [{**tokens(size, generator), "labels": labels(size, generator)} for size in sizes]


def tuple_batches(sizes, seed: int) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [((torch.randn(size, 4, generator=generator, dtype=torch.float64),
              torch.randn(size, 2, generator=generator, dtype=torch.float64)),
             torch.randint(0, CLASSES, (size,), generator=generator)) for size in sizes]


def packed(batches: list, model_loss: bool) -> list:
    """The same batches for :class:`Packed`: ``(ids and mask stacked, labels)``."""
    split = [(batch, batch["labels"]) if model_loss else batch for batch in batches]
    return [(torch.stack([inputs["input_ids"], inputs["attention_mask"]], -1), targets) for inputs, targets in split]


def call(model: nn.Module, inputs):
    return model(**inputs) if isinstance(inputs, dict) else model(*inputs)


def logits_of(outputs) -> torch.Tensor:
    return outputs["logits"] if isinstance(outputs, dict) else outputs.logits


def by_hand(model: nn.Module, batches: list, epochs: int, step: Callable) -> List[float]:
    """SGD (``SGD`` options) over ``batches`` for ``epochs``; ``step(model, batch) -> (loss, weight)``.

    Returns each epoch's mean loss, the batch losses weighted by ``weight``.
    """
    optimizer = torch.optim.SGD(model.parameters(), **SGD)
    means = []
    for _ in range(epochs):
        total, weights = 0.0, 0.0
        for batch in batches:
            optimizer.zero_grad()
            loss, weight = step(model, batch)
            loss.backward()
            optimizer.step()
            total, weights = total + float(loss.detach()) * weight, weights + weight
        means.append(total / weights)
    return means


def trained(model: nn.Module, data: tuple, epochs: int = 2, **options) -> cw.TrainingHistory:
    options = {"optimizer_kwargs": SGD, **options} if "optimizer" not in options else options
    return cw.train(model, data, epochs=epochs, schedule="constant", **options)


def assert_same_weights(model: nn.Module, reference: nn.Module, **tolerance) -> None:
    for (name, value), expected in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(value, expected, **(tolerance or EXACT), msg=name)


@torch.no_grad()
def direct_test_figures(model: nn.Module, batches: list) -> tuple:
    """Test loss, top-1 and top-5 accuracy of ``model`` (eval mode) over every test sample as one batch."""
    model.eval()
    logits = torch.cat([logits_of(call(model, inputs)) for inputs, _ in batches])
    targets = torch.cat([targets for _, targets in batches])
    model.train()
    return (float(F.cross_entropy(logits, targets)), float((logits.argmax(1) == targets).double().mean()),
            float((logits.topk(min(5, CLASSES), 1).indices == targets[:, None]).any(1).double().mean()))


@pytest.mark.parametrize("cls, batches", [(Classifier, dict_batches), (TwoInputs, tuple_batches)],
                         ids=["mapping inputs, object output", "tuple inputs, mapping output"])
def test_structured_inputs_train_as_a_hand_written_loop(cls, batches):
    model, train, test = fresh(cls), batches(TRAIN_SIZES, 0), batches(TEST_SIZES, 1)
    reference = copy.deepcopy(model)
    history = trained(model, (train, test))
    means = by_hand(reference, train, 2,
                    lambda m, batch: (F.cross_entropy(logits_of(call(m, batch[0])), batch[1]), len(batch[1])))
    assert_same_weights(model, reference)
    np.testing.assert_allclose(history["train_loss"], means, **EXACT)
    loss, top1, top5 = direct_test_figures(model, test)
    row = history.rows[-1]
    np.testing.assert_allclose([row["test_loss"], row["test_top1"], row["test_top5"]], [loss, top1, top5], **EXACT)
    assert 0 <= row["train_top1"] <= 1


def counted(batch: dict) -> torch.Tensor:
    """The labels the model's cross-entropy counts: what its mean divides by."""
    return (batch["labels"] != IGNORED).sum()


def test_model_loss_trains_as_a_hand_written_loop_with_count_weighted_means_and_no_accuracy(tmp_path):
    model, train, test = fresh(Classifier), labelled_batches(TRAIN_SIZES, 0), labelled_batches(TEST_SIZES, 1)
    reference = copy.deepcopy(model)
    history = trained(model, (train, test), loss_fn=cw.ModelLoss(count=counted), out_dir=tmp_path)
    means = by_hand(reference, train, 2, lambda m, batch: (m(**batch).loss, int(counted(batch))))
    assert_same_weights(model, reference)
    np.testing.assert_allclose(history["train_loss"], means, **EXACT)
    with torch.no_grad():  # the count-weighted mean over batches is the mean over every counted label
        model.eval()
        logits = torch.cat([model(**{k: v for k, v in batch.items() if k != "labels"}).logits for batch in test])
        expected = F.cross_entropy(logits, torch.cat([batch["labels"] for batch in test]), ignore_index=IGNORED)
    assert history.rows[-1]["test_loss"] == pytest.approx(float(expected), rel=1e-12)
    for column in ("train_top1", "test_top1", "test_top5"):
        assert np.isnan(history[column]).all(), column
    # NaN accuracy survives the history file, the plot and the training widget's curves
    saved = cw.TrainingHistory.load(tmp_path / "history.json")
    assert np.isnan(saved["test_top1"]).all() and saved["train_loss"] == pytest.approx(history["train_loss"])
    _draws_without_accuracy(history)


def _draws_without_accuracy(history: cw.TrainingHistory) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close(cw.plot_training(history))
    from curvwidgets.widgets import TrainingWidget

    widget = TrainingWidget(out_dir="")
    widget._draw_history(history)
    assert len(widget.train_loss_line.y) == len(history) and len(widget.test_accuracy_line.y) == 0


def test_model_loss_means_weigh_samples_by_default_and_take_a_summed_loss_once():
    """``evaluate`` (as ``train`` reads its test batches): samples weigh batches without ``count``; a summed loss
    (``reduction="sum"``) is added as it is and divided by the counts."""
    model, test = fresh(Classifier), labelled_batches(TEST_SIZES, 1)
    model.eval()
    with torch.no_grad():
        losses = [float(model(**batch).loss) for batch in test]
    sizes, counts = [len(batch["labels"]) for batch in test], [int(counted(batch)) for batch in test]
    mean = cw.training.evaluate(model, cw.ModelLoss(), test, torch.device("cpu"))
    assert mean["loss"] == pytest.approx(np.dot(losses, sizes) / sum(sizes), rel=1e-12)
    assert np.isnan(mean["top1"]) and np.isnan(mean["top5"])
    total = cw.training.evaluate(fresh(SummingClassifier).eval(), cw.ModelLoss(reduction="sum"), test,
                                 torch.device("cpu"))
    assert total["loss"] == pytest.approx(np.dot(losses, counts) / sum(sizes), rel=1e-12)


CASES = {"KFAC": {"optimizer": "KFAC"},
         "LanczosSFN": {"optimizer": "LanczosSFN", "optimizer_kwargs": {"lanczos_steps": 2, "backend": "double-backward"}},
         "SWA": {"optimizer_kwargs": SGD, "swa_start": 1, "swa_lr": 0.01}}


@pytest.mark.parametrize("model_loss", [False, True], ids=["logits", "ModelLoss"])
@pytest.mark.parametrize("case", CASES)
def test_curvature_optimisers_and_swa_take_structured_inputs_as_packed_tensors(case, model_loss):
    """K-FAC, saddle-free Newton and SWA's BatchNorm update: the mapping inputs train as the plain-tensor path does."""
    make = labelled_batches if model_loss else dict_batches
    train, test = make(TRAIN_SIZES[:2], 0), make(TEST_SIZES[:1], 1)
    model = fresh(Classifier)
    reference = Packed(copy.deepcopy(model))
    structured = {"loss_fn": cw.ModelLoss(count=counted)} if model_loss else {}
    trained(model, (train, test), **structured, **CASES[case])
    trained(reference, (packed(train, model_loss), packed(test, model_loss)),
            loss_fn=nn.CrossEntropyLoss(ignore_index=IGNORED), **CASES[case])
    assert_same_weights(model, reference.inner, rtol=1e-9, atol=1e-10)


def test_swa_batch_norm_update_reads_mapping_inputs_as_torch_reads_tensors():
    model, batches = fresh(Classifier), dict_batches(TRAIN_SIZES, 0)
    expected = Packed(copy.deepcopy(model))
    update_batch_norm(model, batches, BatchReader(nn.CrossEntropyLoss(), torch.device("cpu")))
    torch.optim.swa_utils.update_bn([inputs for inputs, _ in packed(batches, False)], expected)
    assert_same_weights(model, expected.inner)
    assert model.norm.num_batches_tracked == len(batches) and model.norm.momentum == 0.1


def test_lanczos_ggn_refuses_a_model_loss_naming_the_optimizer(tmp_path):
    data = (labelled_batches(TRAIN_SIZES, 0), labelled_batches(TEST_SIZES, 1))
    with pytest.raises(ValueError, match=r"optimizer LanczosGGN needs the loss as a function of the model's outputs"):
        cw.train(fresh(Classifier), data, epochs=1, optimizer="LanczosGGN", loss_fn=cw.ModelLoss(), out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


class Batches:
    """A re-iterable that is not a list (a loader: only read while training), yielding ``items``."""

    def __init__(self, items: list):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def _no_loss(**batch) -> Output:
    return Output(torch.zeros(len(batch["labels"]), CLASSES, requires_grad=True))


BAD = {
    "a mapping without ModelLoss": (lambda: (labelled_batches(TRAIN_SIZES, 0), labelled_batches(TEST_SIZES, 1)), {},
                                    TypeError, r"data \(the training batches\) must yield \(inputs, targets\) pairs; "
                                               r"got a mapping with keys \['attention_mask', 'input_ids', 'labels'\]"
                                               r".*loss_fn=cw\.ModelLoss\(\)"),
    "a string among the inputs": (lambda: ([(("text",), torch.zeros(1).long())], dict_batches(TEST_SIZES, 1)), {},
                                  TypeError, r"data \(the training batches\): inputs given as a tuple must hold "
                                             r"tensors only; got 0: str"),
    "a bad test batch in a loader": (
        lambda: (dict_batches(TRAIN_SIZES, 0), Batches(dict_batches(TEST_SIZES, 1)[:1] + [{"input_ids": 1}])), {},
        TypeError, r"data must yield \(inputs, targets\) pairs; got a mapping with keys \['input_ids'\]"),
    "inputs and targets of other lengths": (
        lambda: (Batches([(tokens(4, torch.Generator()), torch.zeros(3).long())]), dict_batches(TEST_SIZES, 1)), {},
        ValueError, r"data \(the training batches\) must yield inputs and targets with as many samples"),
    "ModelLoss on a model without a loss": (
        lambda: (labelled_batches(TRAIN_SIZES, 0), labelled_batches(TEST_SIZES, 1)), {"loss_fn": cw.ModelLoss()},
        TypeError, r"model must return its scalar loss for loss_fn=ModelLoss\(.*'loss' of the Output it returned is "
                   r"NoneType"),
}


@pytest.mark.parametrize("case", BAD)
def test_unreadable_batches_and_a_missing_loss_are_clear_errors(case, tmp_path):
    data, options, error, pattern = BAD[case]
    model = fresh(Classifier)
    if "without a loss" in case:
        model.forward = _no_loss
    with pytest.raises(error, match=pattern):
        cw.train(model, data(), epochs=1, out_dir=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_set_batch_takes_structured_inputs():
    optimizer = cw.optim.create("LanczosSFN", fresh(Classifier), loss_fn=nn.CrossEntropyLoss())
    inputs, targets = dict_batches((4,), 0)[0]
    with pytest.raises(ValueError, match=r"same number of samples; got \{'input_ids': \(4, 5\)"):
        optimizer.set_batch(inputs, targets[:-1])
    with pytest.raises(TypeError, match=r"set_batch needs tensors .*got \(str, Tensor\)"):
        optimizer.set_batch("text", targets)
    optimizer.set_batch(inputs, targets)
    kept, _ = optimizer._take_batch()
    assert isinstance(kept, StructuredInputs) and len(kept) == 4


class _Scaled(nn.Module):
    """Logits = inputs times one weight (1 at the start): a model whose predictions are known."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, inputs):
        return inputs * self.weight


def test_accuracy_scores_every_target_but_the_ignored_ones():
    """Per token over the targets the loss counts: (b, C, T) logits, 30% of the tokens ignored."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 7, 4, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 7, (6, 4), generator=generator)
    ignored = torch.rand(6, 4, generator=generator) < 0.3
    targets[ignored] = -100
    scored = ~ignored
    top1 = float((logits.argmax(1) == targets)[scored].double().mean())
    top5 = float((logits.topk(5, dim=1).indices == targets[:, None]).any(1)[scored].double().mean())
    assert 0 < top1 < top5 < 1 and ignored.any()
    loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
    batches = [(logits[:4], targets[:4]), (logits[4:], targets[4:])]
    result = cw.training.evaluate(_Scaled().double(), loss_fn, batches, torch.device("cpu"))
    assert result["top1"] == pytest.approx(top1, rel=1e-12) and result["top5"] == pytest.approx(top5, rel=1e-12)
    # training at a rate too small to change a prediction scores the same way
    history = cw.train(_Scaled().double(), (batches, batches), epochs=1, loss_fn=loss_fn, optimizer="SGD",
                       optimizer_kwargs={"lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0}, seed=0)
    assert history["train_top1"][0] == pytest.approx(top1, rel=1e-12)
    assert history["test_top1"][0] == pytest.approx(top1, rel=1e-12)

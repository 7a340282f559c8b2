"""The paper's workflow on ``tinytext``: the loss follows the data set, from the CLI to the landscape.

One TinyTransformer is trained for one epoch through the command line
(``curvwidgets train``, hence ``train_network`` and ``cw.train`` with the
data set's default loss); its spectrum, loss statistics and landscape are
computed by the paper's functions without a ``loss_fn`` and compared with the
core run directly with :class:`~curvwidgets.SequenceCrossEntropyLoss`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.cli import main

STEPS, SAMPLES, SEED = 5, 100, 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A checkpoint folder of TinyTransformer after one AdamW epoch on tinytext, trained by the CLI."""
    folder = tmp_path_factory.mktemp("tinytext")
    assert main(["train", "--out", str(folder), "--model", "TinyTransformer", "--data", "tinytext", "--epochs", "1",
                 "--optimizer", "AdamW", "--lr", "3e-3", "--schedule", "constant", "--batch-size", "200"]) == 0
    return folder


@pytest.fixture(scope="module")
def trained(run):
    return cw.load_trained(run)


def _mean_loss(model: nn.Module, loader) -> float:
    """The mean token cross-entropy of ``model`` over every window of ``loader``, computed here."""
    with torch.no_grad():
        losses = [(cw.SequenceCrossEntropyLoss()(model.eval()(inputs), targets), targets.numel())
                  for inputs, targets in loader]
    return float(sum(loss * count for loss, count in losses) / sum(count for _, count in losses))


def test_default_loss_names_the_data_set():
    assert isinstance(cw.data.default_loss("tinytext"), cw.SequenceCrossEntropyLoss)
    assert isinstance(cw.data.default_loss(cw.data.load("digits")), nn.CrossEntropyLoss)
    assert isinstance(cw.data.default_loss([(torch.zeros(1, 2), torch.zeros(1))]), nn.CrossEntropyLoss)
    with pytest.raises(ValueError, match="unknown data set 'text'; valid names: .*tinytext"):
        cw.data.default_loss("text")


def test_cli_training_uses_the_token_loss(trained):
    history = trained.history
    assert trained.config["architecture"]["options"] == {"context": 32}
    assert np.isclose(history["test_loss"][-1], _mean_loss(trained.model, trained.data.evaluation_loader("test")),
                      rtol=1e-5)
    assert history["test_loss"][-1] < np.log(trained.data.num_classes)  # it learnt something in one epoch


def test_named_transformer_gets_the_data_context():
    text = cw.data.load("tinytext", context=64, num_samples=32, num_test=8, batch_size=16)
    history = cw.train("TinyTransformer", text, epochs=1, optimizer="AdamW", schedule="constant")
    assert history.model.context == 64
    assert history.config["architecture"]["options"] == {"context": 64}
    assert np.isfinite(history["train_loss"]).all()


def test_spectrum_matches_lanczos_on_the_hessian(run, trained, tmp_path):
    spectrum = cw.compute_eigenspectrum(checkpoint_path=run, save_spectrum_path=tmp_path / "spectrum",
                                        lanczos_iters=STEPS, num_samples=SAMPLES, seed=SEED, save_eigvec=True)
    hessian = cw.Hessian(trained.model, cw.SequenceCrossEntropyLoss(), trained.data.evaluation_loader("train"),
                         bn_mode="train", num_samples=SAMPLES, seed=SEED)
    reference = cw.lanczos(hessian, STEPS, seed=SEED)
    saved = cw.Spectrum.load(tmp_path / "spectrum.npz")
    assert np.isclose(saved.ritz_values.max(), float(reference.ritz_values.max()), rtol=1e-4)
    assert np.allclose(np.sort(spectrum.ritz_values.ravel()), np.sort(saved.ritz_values.ravel()))

    landscape = cw.build_loss_landscape(checkpoint_path=run, spectrum_path=tmp_path / "spectrum.npz",
                                        save_path=tmp_path / "landscape", n_points=3, largest=1, smallest=0)
    stored = cw.Landscape.load(tmp_path / "landscape.npz")
    centre = _mean_loss(trained.model, trained.data.evaluation_loader("train"))
    assert stored.offsets[1] == 0
    assert np.isclose(stored.values["train_loss"][0, 1], centre, rtol=1e-5)
    assert np.allclose(stored.values["train_loss"], landscape.values["train_loss"])


def test_loss_stats_use_the_token_loss(run, trained):
    options = {"curvature": ("ggn",), "num_probes": 2, "num_samples": SAMPLES, "seed": SEED}
    statistics = cw.compute_loss_stats(checkpoint_path=run, **options)
    reference = cw.loss_stats(trained.model, cw.SequenceCrossEntropyLoss(), trained.data.evaluation_loader("train", 128),
                              bn_mode="eval", **options)
    assert statistics.keys() == reference.keys()
    assert np.allclose([statistics[key] for key in reference], list(reference.values()), rtol=1e-5)

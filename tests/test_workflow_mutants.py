"""The workflow layer against the seeded bugs that the other tests let through (issue 17's mutation run).

References: a training run not resumed, compared bit for bit with one
resumed from its checkpoints; the core's ``loss_landscape`` on the
checkpoint's model, which ``build_loss_landscape`` must equal (offsets,
labels and Ritz values exactly, losses to float32 rounding: the points per
pass are timed, so the two may sum in another order);
the DGKS test written out (``||w_after|| <= ||w_before|| / sqrt(2)``, with
``||w_before||^2 = ||w_after||^2 + ||c||^2``) on a residual built by hand and
on the norms a real run measured; closed-form status lines and notes.
"""

import importlib
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.landscape import eigen_directions, loss_landscape
from curvwidgets.progress import ProgressEvent
from curvwidgets.results import Fingerprint
from curvwidgets.training.data import TensorLoader
from curvwidgets.widgets import TaskRunner
from curvwidgets.widgets.runner import status_text

LANCZOS_MODULE = importlib.import_module("curvwidgets.linalg.lanczos")


# ---- resume: bit for bit against the run not resumed ----------------------------------------------------------

class TinyNet(nn.Module):
    """BatchNorm, dropout and momentum: every piece of state a resume must bring back."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Dropout(0.25), nn.Linear(4, 3))

    def forward(self, x):
        return self.body(x)


def tiny_net(seed: int = 7) -> nn.Module:
    torch.manual_seed(seed)
    return TinyNet()


def tiny_data():
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (24, 3, 6, 6), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (24,), generator=generator)
    common = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), seed=4)
    return (TensorLoader(images, labels, 8, shuffle=True, augment=True, **common),
            TensorLoader(images[:12], labels[:12], 6, shuffle=False, augment=False, **common))


SWA = dict(epochs=4, swa_start=2, swa_lr=0.01, optimizer_kwargs={"lr": 0.05, "momentum": 0.9}, seed=3)
TIMED = ("seconds", "images_per_second", "peak_memory_bytes")  # the columns that measure the machine


def same_figures(rows):
    return [{key: value for key, value in row.items() if key not in TIMED} for row in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A whole SWA run with a checkpoint per epoch, and the same run stopped after its third epoch."""
    folder = tmp_path_factory.mktemp("resume")
    whole_model = tiny_net()
    whole = cw.train(whole_model, tiny_data(), out_dir=folder / "whole", save_every=1, **SWA)
    stop = threading.Event()
    with pytest.raises(cw.Cancelled):
        cw.train(tiny_net(), tiny_data(), out_dir=folder / "stopped", save_every=1, cancel=stop,
                 progress=lambda event: event.step == 3 and stop.set(), **SWA)
    return {"whole": whole, "whole_model": whole_model, "folder": folder}


def test_a_run_resumed_inside_swa_equals_the_run_not_resumed(runs):
    """Resumed after epoch 3 of 4 (one epoch averaged): SWA average, momentum, random state and file list restored."""
    stopped = runs["folder"] / "stopped"
    model = tiny_net(seed=99)  # other initial weights: everything must come from the checkpoint
    resumed = cw.train(model, tiny_data(), out_dir=stopped, save_every=1, resume=stopped / "checkpoint-00003.pt",
                       **SWA)
    whole = runs["whole"]
    for (name, a), b in zip(runs["whole_model"].state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.final == whole.final and resumed.final["swa_epochs_averaged"] == 2.0
    assert same_figures(resumed.rows) == same_figures(whole.rows)
    assert resumed.checkpoints == [str(stopped / f"checkpoint-0000{epoch}.pt") for epoch in (1, 2, 3, 4)]
    assert [Path(path).name for path in whole.checkpoints] == [Path(path).name for path in resumed.checkpoints]
    saved = cw.TrainingHistory.load(stopped / "history.json")
    assert saved.checkpoints == resumed.checkpoints and saved.final == whole.final


def test_a_finished_run_resumed_keeps_its_final_figures_and_does_no_more_work(runs):
    """The last checkpoint holds ``final``: a resume with nothing left to do must not run the SWA finish again."""
    events = []
    model = tiny_net(seed=99)
    resumed = cw.train(model, tiny_data(), resume=runs["folder"] / "whole", progress=events.append, **SWA)
    assert events == []
    assert resumed.checkpoints[-1] == str(runs["folder"] / "whole" / "checkpoint-00004.pt")  # the latest, not the first
    assert resumed.final == runs["whole"].final and set(resumed.final) == {"swa_test_loss", "swa_test_top1",
                                                                           "swa_test_top5", "swa_epochs_averaged"}
    assert same_figures(resumed.rows) == same_figures(runs["whole"].rows)
    for (name, a), b in zip(runs["whole_model"].state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


# ---- the paper's build_loss_landscape against the core -----------------------------------------------------------

@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """A one-epoch MLP on the embedded digits and a 3-step Hessian spectrum with its eigenvectors."""
    folder = tmp_path_factory.mktemp("paper")
    cw.train_network(folder / "run", dataset="digits", model="MLP", epochs=1, batch_size=256, device="cpu")
    checkpoint = folder / "run" / "checkpoint-00001.pt"
    cw.compute_eigenspectrum(checkpoint_path=checkpoint, save_spectrum_path=folder / "spectrum.npz",
                             save_eigvec=True, lanczos_iters=3, num_samples=64, batch_size=2048, device="cpu")
    return {"checkpoint": checkpoint, "spectrum": folder / "spectrum.npz"}


def core_landscape(paper, picks, **options):
    """What the core computes on the checkpoint's model and data along the spectrum's picked eigenvectors."""
    trained = cw.load_trained(paper["checkpoint"], "cpu", batch_size=2048)
    directions = eigen_directions(cw.Spectrum.load(paper["spectrum"]), **picks)
    if options.get("plane"):
        directions = directions[:2]
    return loss_landscape(trained.model, trained.data, directions, points_per_pass=1, **options)


def assert_same_landscape(made, reference):
    """Equal to float32 rounding; an accuracy may differ by one test sample (1/360) where rounding breaks a tie."""
    assert made.kind == reference.kind and made.labels == reference.labels
    assert made.offsets.tobytes() == reference.offsets.tobytes()
    assert made.curvatures.tobytes() == reference.curvatures.tobytes()
    assert sorted(made.values) == sorted(reference.values)
    for name, values in reference.values.items():
        if name.endswith("_loss"):
            np.testing.assert_allclose(made[name], values, rtol=1e-6, atol=0, err_msg=name)
        else:
            np.testing.assert_allclose(made[name], values, rtol=0, atol=1.01 / 360, err_msg=name)


def test_build_loss_landscape_walks_the_dist_it_is_given(paper):
    made = cw.build_loss_landscape(checkpoint_path=paper["checkpoint"], spectrum_path=paper["spectrum"], dist=0.5,
                                   n_points=3, largest=1, smallest=0, batch_size=2048, device="cpu")
    np.testing.assert_array_equal(made.offsets, [-0.5, 0.0, 0.5])
    assert made.meta["dist"] == 0.5
    assert_same_landscape(made, core_landscape(paper, {"largest": 1, "smallest": 0}, dist=0.5, n_points=3))


def test_a_plane_of_the_paper_is_that_of_the_first_two_directions_picked(paper):
    """largest=2, smallest=1 picks three eigenvectors: the plane spans the two largest, not the last two."""
    picks = {"largest": 2, "smallest": 1}
    made = cw.build_loss_landscape(checkpoint_path=paper["checkpoint"], spectrum_path=paper["spectrum"], plane=True,
                                   dist=0.5, n_points=3, batch_size=2048, device="cpu", **picks)
    ritz = np.sort(cw.Spectrum.load(paper["spectrum"]).ritz_values[0])
    np.testing.assert_array_equal(made.curvatures, ritz[::-1][:2])
    assert made.labels[0].startswith("largest 1") and made.labels[1].startswith("largest 2")
    assert_same_landscape(made, core_landscape(paper, picks, dist=0.5, n_points=3, plane=True))


# ---- results: the readers' and makers' checks ------------------------------------------------------------------

def test_the_note_of_a_diverging_plane_gives_each_axis_its_own_range():
    """Not finite at (a, b) = (1, 0) and (1, 1) of the offsets [-1, 0, 1]: a in [1, 1], b in [0, 1]."""
    loss = np.ones((3, 3))
    loss[2, 1], loss[2, 2] = np.inf, np.nan
    plane = cw.Landscape(np.linspace(-1.0, 1.0, 3), ("a", "b"), np.full(2, np.nan), "plane", {"train_loss": loss})
    assert np.argwhere(plane.not_finite).tolist() == [[2, 1], [2, 2]]
    assert plane.not_finite_note() == ("the loss is NaN or infinite at 2 of 9 points computed (the model diverges "
                                       "there): a in [1, 1], b in [0, 1]")


DIGEST = "0123456789abcdef" * 4


@pytest.mark.parametrize("weights", [DIGEST + "0", DIGEST + "\n", " " + DIGEST, DIGEST.upper()])
def test_a_fingerprint_is_exactly_64_lower_case_hex_digits(weights):
    assert Fingerprint(DIGEST, DIGEST).to_meta() == {"weights": DIGEST, "selection": DIGEST}
    with pytest.raises(ValueError, match="weights must be a SHA-256 digest of 64 lower-case hex digits"):
        Fingerprint(weights, DIGEST)


def test_a_fingerprint_entry_with_another_key_is_refused_where_the_result_is_made():
    entry = {"weights": DIGEST, "selection": DIGEST}
    assert Fingerprint.from_meta({Fingerprint.META_KEY: entry}) == Fingerprint(DIGEST, DIGEST)
    with pytest.raises(ValueError, match=r"must be a dict with the keys 'weights' and 'selection'; got"):
        Fingerprint.from_meta({Fingerprint.META_KEY: {**entry, "model": "MLP"}})
    with pytest.raises(ValueError, match=r"must be a dict with the keys 'weights' and 'selection'"):
        cw.Landscape(np.linspace(-1.0, 1.0, 3), ("a",), np.full(1, np.nan), "line", {"train_loss": np.ones((1, 3))},
                     {Fingerprint.META_KEY: {**entry, "model": "MLP"}})


def test_a_history_with_an_epoch_twice_is_refused():
    content = cw.TrainingHistory(rows=[{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.1}]).to_dict()
    assert cw.TrainingHistory.from_dict(content).rows == content["rows"]
    content["rows"][1]["epoch"] = 1
    with pytest.raises(ValueError, match=r"epochs must be increasing whole numbers >= 1; got \[1, 1\]"):
        cw.TrainingHistory.from_dict(content)


def test_the_selection_digest_tells_apart_parameters_of_the_same_names_and_other_shapes():
    """MLPs with hidden layers of 4 and 5 units name their parameters alike; only the shapes differ."""
    torch.manual_seed(0)
    four, other_four, five = (cw.models.MLP(3, input_shape=(5,), hidden=(width,)) for width in (4, 4, 5))
    assert [name for name, _ in four.named_parameters()] == [name for name, _ in five.named_parameters()]
    assert cw.fingerprint(four).selection == cw.fingerprint(other_four).selection
    assert cw.fingerprint(four).weights != cw.fingerprint(other_four).weights
    assert cw.fingerprint(four).selection != cw.fingerprint(five).selection


# ---- the widgets' runner ---------------------------------------------------------------------------------------

def test_status_text_of_an_eta_over_an_hour():
    """One step in 75 s, 100 left: 7500 s = 2 h 05 min."""
    assert status_text(ProgressEvent("train", 1, 101), elapsed=75.0) == "train 1/101 · 0.013 steps/s · ETA 2 h 05 min"


def test_each_stage_counts_its_rate_from_its_own_first_event():
    """Stage "data" takes 40 s; "train" then does 2 steps in 10 s: 0.2 steps/s, not 2 steps over 50 s."""
    runner = TaskRunner(min_interval=0.0)
    clock = [0.0]

    def task(progress, cancel):
        progress(ProgressEvent("data", 0, 4))
        clock[0] += 40.0
        progress(ProgressEvent("data", 4, 4))
        progress(ProgressEvent("train", 0, 6))
        clock[0] += 10.0
        progress(ProgressEvent("train", 2, 6))
        return "ok"

    statuses = []
    with mock.patch("curvwidgets.widgets.runner.time.perf_counter", lambda: clock[0]):
        runner.start(task, on_progress=lambda event: statuses.append(runner.status.value), block=True)
    assert statuses == ["data 0/4", "data 4/4 · 0.1 steps/s · ETA 0 s", "train 0/6",
                        "train 2/6 · 0.2 steps/s · ETA 20 s"]


# ---- Lanczos: the DGKS test -------------------------------------------------------------------------------------

def residual_after_the_recurrence(removed: float, kept: float):
    """Step 1 of a run in R^3, basis e_0, e_1: the recurrence leaves ``removed`` along e_0, ``kept`` along e_2."""
    basis = torch.eye(3, dtype=torch.float64)[:2]
    recurrence = torch.tensor([0.5, 0.0], dtype=torch.float64)  # beta_0 = 0.5
    product = torch.tensor([0.5 + removed, 2.0, kept], dtype=torch.float64)  # A v_1: alpha_1 = 2
    return product, basis, recurrence, torch.zeros(3, dtype=torch.float64)


@pytest.mark.parametrize(("removed", "kept", "repeated"), [
    (0.7, 0.6, True),     # ||w_after|| / ||w_before|| = 0.6 / 0.922 = 0.65 <= 0.707: repeat
    (0.8, 0.6, True),     # 0.6: repeat
    (0.5, 0.8, False),    # 0.85: one pass is enough
    (0.0, 1.0, False),    # nothing removed
])
def test_the_dgks_test_compares_the_norm_after_the_pass_with_the_norm_before(removed, kept, repeated):
    product, basis, recurrence, out = residual_after_the_recurrence(removed, kept)
    values, repeats = LANCZOS_MODULE._next_residuals(product[None], [basis], [recurrence], [out], "dgks")
    assert repeats == [repeated]
    assert values[0][0] == pytest.approx(2.0, abs=1e-15) and values[0][1] == pytest.approx(kept, abs=1e-15)
    np.testing.assert_allclose(product.numpy(), [0.0, 0.0, kept], atol=1e-15)


def test_a_run_repeats_its_pass_exactly_where_the_dgks_test_says(monkeypatch):
    """Spike 3e6 over a bulk in [0, 1], float32 (measured: a second pass on 11 of 100 steps, 5 of them in the band).

    The norms each step measured decide its second pass; some steps have
    ``||w_after|| / ||w_before||`` in ``(1/sqrt(3), 1/sqrt(2)]``, where the
    test ``||w_after|| <= ||c|| / sqrt(2)`` would wrongly make one pass.
    """
    measured = []
    first_pass = LANCZOS_MODULE._recurrence_then_pass

    def recording(*arguments):
        norms = first_pass(*arguments)
        measured.append(norms[1:].tolist())
        return norms

    monkeypatch.setattr(LANCZOS_MODULE, "_recurrence_then_pass", recording)
    eigenvalues = np.concatenate([np.random.default_rng(0).uniform(0.0, 1.0, 99), [3e6]])
    matrix = cw.synthetic.with_spectrum(eigenvalues, seed=1).astype(np.float32)
    result = cw.lanczos(matrix, steps=100, seed=0, breakdown_tol=0.0)
    removed, after = np.array(measured).T
    before = np.hypot(after, removed)  # ||w_before||, by Pythagoras
    repeat = after <= 2 ** -0.5 * before
    assert np.sum(repeat & (after > 2 ** -0.5 * removed)) >= 1  # steps where the wrong test makes one pass
    np.testing.assert_array_equal(result.gram_schmidt_passes[0], np.where(repeat, 2, 1))

"""Results know which weights they belong to: fingerprints, and eigenvectors refused on other weights.

The fingerprint is a SHA-256 digest, so the references are: equal weights give
equal digests (whatever the dtype, device or copy), and a change of one bit of
one parameter or buffer, or of the parameter selection, gives another. Every
layer that walks along a spectrum's eigenvectors (``loss_landscape``, the
paper's ``build_loss_landscape``, the command line, the landscape widget and
the dashboard) refuses those of other weights before any work, and takes them
with the explicit override, along exactly the same vectors.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets import cli
from curvwidgets.curvature.fingerprint import check_same_weights
from curvwidgets.results import Fingerprint
from curvwidgets.widgets import LandscapeWidget


def model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).eval()


def batches():
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(12, 4, generator=generator), torch.randint(0, 3, (12,), generator=generator))
            for _ in range(2)]


@pytest.fixture(scope="module")
def spectrum():
    return cw.spectrum(model(), batches(), steps=6, seed=0, save_vectors=True, backend="double-backward")


# ---- the fingerprint ------------------------------------------------------------------------------------------

def test_equal_weights_have_equal_fingerprints_whatever_the_copy_or_dtype():
    reference = cw.fingerprint(model())
    assert cw.fingerprint(model()) == reference
    assert cw.fingerprint(copy.deepcopy(model())) == reference
    assert cw.fingerprint(model().double()) == reference  # float32 values are exact in float64
    assert len(reference.weights) == len(reference.selection) == 64


@pytest.mark.parametrize("change", ["weight", "bias", "running_var", "num_batches_tracked"])
def test_one_changed_entry_of_a_parameter_or_buffer_changes_the_weights_digest(change):
    reference, changed = cw.fingerprint(model()), model()
    tensor = {"weight": changed[0].weight, "bias": changed[3].bias, "running_var": changed[1].running_var,
              "num_batches_tracked": changed[1].num_batches_tracked}[change]
    with torch.no_grad():  # the next float up, or one more batch counted
        flat = tensor.view(-1)
        flat[-1] = torch.nextafter(flat[-1], torch.tensor(np.inf)) if flat.is_floating_point() else flat[-1] + 1
    after = cw.fingerprint(changed)
    assert after.weights != reference.weights and after.selection == reference.selection


def test_the_selection_digest_depends_on_the_parameters_selected_only():
    every, first = cw.fingerprint(model()), cw.fingerprint(model(), "0.*")
    assert first.weights == every.weights and first.selection != every.selection
    assert cw.fingerprint(model(seed=1), "0.*").selection == first.selection
    same = model()
    assert cw.fingerprint(same, [same[0].weight, same[0].bias]) == first  # the selection by tensors


def test_a_spectrum_records_the_fingerprint_of_its_model_and_keeps_it_on_disk(spectrum, tmp_path):
    assert spectrum.fingerprint == cw.fingerprint(model())
    assert spectrum.meta["weights_fingerprint"] == cw.fingerprint(model()).to_meta()
    loaded = cw.Spectrum.load(spectrum.save(tmp_path / "spectrum"))
    assert loaded.fingerprint == spectrum.fingerprint
    assert loaded.truncate(3).fingerprint == spectrum.fingerprint
    # a user's meta cannot pass another fingerprint off as the model's
    forged = cw.spectrum(model(), batches(), steps=2, meta={"weights_fingerprint": cw.fingerprint(model(1)).to_meta()})
    assert forged.fingerprint == cw.fingerprint(model())


@pytest.mark.parametrize("entry, message", [
    ({"weights": "0" * 64}, r"must be a dict with the keys 'weights' and 'selection'"),
    ("0" * 64, r"must be a dict with the keys"),
    ({"weights": "0" * 63, "selection": "0" * 64}, r"weights must be a SHA-256 digest of 64 lower-case hex digits"),
    ({"weights": "0" * 64, "selection": 7}, r"selection must be a SHA-256 digest"),
])
def test_a_malformed_fingerprint_in_meta_is_refused_where_the_result_is_made(spectrum, entry, message):
    with pytest.raises(ValueError, match=message):
        cw.Spectrum(spectrum.lanczos, None, {"weights_fingerprint": entry})


def test_the_message_says_which_part_differs():
    ours, theirs = cw.fingerprint(model()), cw.fingerprint(model(1))
    check_same_weights(None, ours, "x", "the model's", "allow=True")  # nothing recorded: nothing to check
    check_same_weights(ours, ours, "x", "the model's", "allow=True")
    with pytest.raises(cw.OtherWeightsError, match=r"^x was computed on other weights than the model's .*: it "
                                                   r"records weights [0-9a-f]{12}…, .*Pass allow=True to use it"):
        check_same_weights(theirs, ours, "x", "the model's", "allow=True")
    with pytest.raises(cw.OtherWeightsError, match=r"another selection of parameters"):
        check_same_weights(cw.fingerprint(model(), "3.*"), ours, "x", "the model's", "allow=True")
    assert isinstance(cw.OtherWeightsError("x"), ValueError)


# ---- loss_landscape ---------------------------------------------------------------------------------------------

def test_eigenvectors_of_other_weights_are_refused_and_taken_with_the_override(spectrum):
    directions = cw.eigen_directions(spectrum, largest=1, smallest=1)
    assert all(direction.fingerprint == spectrum.fingerprint for direction in directions)
    other = model(seed=1)
    events = []
    with pytest.raises(cw.OtherWeightsError, match=r"the eigenvector direction 'largest 1 \(theta = .*\)' was "
                                                   r"computed on other weights than the model's"):
        cw.loss_landscape(other, batches(), directions, n_points=3, progress=events.append)
    assert events == []  # refused before any work
    taken = cw.loss_landscape(other, batches(), directions, n_points=3, allow_other_weights=True, points_per_pass=1)
    plain = cw.loss_landscape(other, batches(), [d.vector for d in directions], n_points=3, points_per_pass=1)
    for name in plain.values:  # the override walks along exactly the same vectors
        np.testing.assert_array_equal(taken[name], plain[name])
    assert taken.meta["directions_of_other_weights"] == [d.label for d in directions]
    assert taken.meta["weights_fingerprint"] == cw.fingerprint(other).to_meta()


def test_eigenvectors_of_the_same_weights_pass_and_the_landscape_records_them(spectrum):
    directions = cw.eigen_directions(spectrum, largest=1, smallest=0)
    result = cw.loss_landscape(model(), batches(), directions, n_points=3)
    assert Fingerprint.from_meta(result.meta) == spectrum.fingerprint
    assert "directions_of_other_weights" not in result.meta


def test_a_model_changed_in_place_after_its_spectrum_is_caught(spectrum):
    trained_further = model()
    with torch.no_grad():
        trained_further[3].bias.add_(1e-3)
    with pytest.raises(cw.OtherWeightsError, match=r"other weights"):
        cw.loss_landscape(trained_further, batches(), cw.eigen_directions(spectrum, largest=1, smallest=0), n_points=3)


def test_a_spectrum_over_a_parameter_selection_is_walked_with_that_selection_only():
    selected = cw.spectrum(model(), batches(), steps=4, params="3.*", save_vectors=True, backend="double-backward")
    direction = cw.eigen_directions(selected, largest=1, smallest=0)
    cw.loss_landscape(model(), batches(), direction, n_points=3, params="3.*")
    # the same number of entries over another selection of the same size: refused, not walked
    with pytest.raises(cw.OtherWeightsError, match=r"another selection of parameters"):
        cw.loss_landscape(model(), batches(), [cw.Direction(direction[0].vector[:15], "l1", 1.0,
                                                            direction[0].fingerprint)], n_points=3, params="3.weight")


def test_a_direction_without_a_fingerprint_is_not_checked(spectrum):
    bare = [cw.Direction(d.vector, d.label, d.curvature) for d in cw.eigen_directions(spectrum, 1, 0)]
    assert cw.loss_landscape(model(seed=1), batches(), bare, n_points=3).done.all()


def test_a_fingerprint_of_the_wrong_type_and_a_non_bool_override_are_refused(spectrum):
    vector = cw.eigen_directions(spectrum, 1, 0)[0].vector
    with pytest.raises(TypeError, match=r"fingerprint must be a curvwidgets Fingerprint or None; got str"):
        cw.loss_landscape(model(), batches(), [cw.Direction(vector, "v", 1.0, "abc")], n_points=3)
    with pytest.raises(ValueError, match=r"allow_other_weights must be True or False; got 'yes'"):
        cw.loss_landscape(model(), batches(), [vector], n_points=3, allow_other_weights="yes")


# ---- the paper's API and the command line ------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two checkpoints of one MLP run and a spectrum with eigenvectors of the first."""
    folder = tmp_path_factory.mktemp("run")
    cw.train_network(folder / "run", dataset="digits", model="MLP", epochs=2, batch_size=256, save_freq=1,
                     device="cpu")
    first, second = folder / "run" / "checkpoint-00001.pt", folder / "run" / "checkpoint-00002.pt"
    cw.compute_eigenspectrum(checkpoint_path=first, save_spectrum_path=folder / "spectrum.npz", save_eigvec=True,
                             lanczos_iters=3, num_samples=64, batch_size=2048, device="cpu")
    return {"first": first, "second": second, "spectrum": folder / "spectrum.npz", "folder": folder}


def test_the_api_refuses_a_spectrum_of_another_checkpoint_before_any_work(run, tmp_path):
    events = []
    with pytest.raises(cw.OtherWeightsError, match=r"spectrum_path '.*spectrum\.npz' was computed on other weights "
                                                   r"than those of '.*checkpoint-00002\.pt'.*Pass "
                                                   r"allow_other_weights=True"):
        cw.build_loss_landscape(spectrum_path=run["spectrum"], checkpoint_path=run["second"], n_points=3,
                                save_path=tmp_path / "landscape.npz", batch_size=2048, device="cpu",
                                progress=events.append)
    assert events == [] and list(tmp_path.iterdir()) == []
    same = cw.build_loss_landscape(spectrum_path=run["spectrum"], checkpoint_path=run["first"], n_points=3,
                                   largest=1, smallest=0, batch_size=2048, device="cpu")
    other = cw.build_loss_landscape(spectrum_path=run["spectrum"], checkpoint_path=run["second"], n_points=3,
                                    largest=1, smallest=0, batch_size=2048, device="cpu", allow_other_weights=True)
    assert other.meta["directions_of_other_weights"] == list(other.labels) and other.labels == same.labels
    assert other["train_loss"][0, 1] != same["train_loss"][0, 1]  # t = 0: the two checkpoints' own losses


def test_the_command_line_refuses_in_its_own_words_and_takes_the_flag(run, tmp_path, capsys):
    arguments = ["landscape", "--checkpoint", str(run["second"]), "--spectrum", str(run["spectrum"]),
                 "--points", "3", "--largest", "1", "--smallest", "0"]
    assert cli.main([*arguments, "--out", str(tmp_path / "refused.npz")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "computed on other weights" in error
    assert "Pass --allow-other-weights to use it anyway" in error and "allow_other_weights=True" not in error
    assert not (tmp_path / "refused.npz").exists()
    assert cli.main([*arguments, "--out", str(tmp_path / "taken.npz"), "--allow-other-weights"]) == 0
    [label] = cw.Landscape.load(tmp_path / "taken.npz").meta["directions_of_other_weights"]
    assert label.startswith("largest 1 (theta = ")


# ---- the widgets --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("allow", [False, True])
def test_the_landscape_widget_shows_the_refusal_and_takes_the_override(spectrum, allow):
    widget = LandscapeWidget(model(seed=1), batches(), spectrum=spectrum, n_points=3, allow_other_weights=allow)
    assert widget.run() and widget.runner.join(timeout=60)
    if allow:
        assert widget.runner.outcome == "done" and widget.result.meta["directions_of_other_weights"]
    else:
        assert widget.runner.outcome == "failed" and isinstance(widget.runner.error, cw.OtherWeightsError)
        assert "allow_other_weights=True" in widget.runner.error_message.value
    with pytest.raises(ValueError, match=r"allow_other_weights must be True or False; got 1"):
        LandscapeWidget(model(), batches(), allow_other_weights=1)


def test_the_dashboard_refuses_a_spectrum_of_another_checkpoint(run):
    from curvwidgets.widgets import Dashboard

    dashboard = Dashboard(out_dir=str(run["first"].parent), device="cpu", n_points=3)
    landscape = dashboard.landscape
    landscape.spectrum = cw.Spectrum.load(run["spectrum"])
    for checkpoint, outcome in (("second", "failed"), ("first", "done")):
        landscape.checkpoint.value = str(run[checkpoint])
        assert landscape.run() and landscape.runner.join(timeout=60)
        assert landscape.runner.outcome == outcome
    landscape.checkpoint.value = str(run["second"])
    assert landscape.run() and landscape.runner.join(timeout=60)
    assert "computed on other weights than the model" in landscape.runner.error_message.value

"""Dashboard: the tabs share one run; the checkpoint slider scrubs spectra computed once, then cached."""

import dataclasses
import time

import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets.widgets import Dashboard, LandscapeWidget, TrainingWidget
from curvwidgets.widgets._landscape_task import stem_directions
from curvwidgets.widgets._sizes import sizes_for
from curvwidgets.widgets.dashboard import checkpoint_label

EPOCHS, STEPS = 2, 4
SPECTRUM = dict(matrix="hessian", steps=STEPS, num_vectors=1, num_samples=48)
BACKEND = "double-backward"  # pinned: "auto" picks by timing, and the two differ by float32 rounding


@pytest.fixture(scope="module")
def dataset():
    return cw.data.load("synthetic", num_samples=96, num_test=32, num_classes=3, batch_size=32, device="cpu")


def make_dashboard(data, folder, **options):
    dashboard = Dashboard(data, model="MLP", epochs=EPOCHS, out_dir=str(folder), device="cpu", n_points=5,
                          dist=0.5, spectrum_options={"backend": BACKEND}, **SPECTRUM, **options)
    for widget in (dashboard.training, dashboard.spectrum, dashboard.landscape):
        widget.runner.min_interval = 0.0
    return dashboard


def reference_spectrum(path):
    """The spectrum computed directly, on the checkpoint's model and data as cw.load_trained rebuilds them."""
    trained = cw.load_trained(path, device="cpu")
    return cw.spectrum(trained.model, trained.data, steps=STEPS, num_vectors=1, num_samples=48, seed=0,
                       save_vectors=True, backend=BACKEND)


def settle(dashboard, timeout=120):
    """Wait until no spectrum runs and none is queued (a finished run may start the next: join is False then)."""
    deadline = time.monotonic() + timeout
    while dashboard.spectrum.runner.running or dashboard._queue:
        assert time.monotonic() < deadline, "the dashboard's spectra did not settle"
        dashboard.spectrum.runner.join(timeout=timeout)


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    dashboard = make_dashboard(dataset, tmp_path_factory.mktemp("dashboard") / "run")
    assert dashboard.run(block=True)
    return dashboard


def test_the_tabs_hold_the_three_widgets(finished):
    assert [type(pane) for pane in finished.panes[::2]] == [TrainingWidget, LandscapeWidget]
    assert finished.spectrum in finished.panes[1].children
    assert tuple(finished.tabs.titles) == ("Train", "Spectrum", "Landscape")


def test_only_the_tab_shown_holds_its_pane(finished):
    """A figure drawn in a hidden tab is laid out at zero size in the browser."""
    try:
        for shown in (1, 2, 0):
            finished.tabs.selected_index = shown
            assert [holder.children for holder in finished.tabs.children] == [
                (pane,) if index == shown else () for index, pane in enumerate(finished.panes)]
    finally:
        finished.tabs.selected_index = 0


def test_the_slider_lists_every_checkpoint_written(finished):
    paths = finished.training.checkpoints
    assert len(paths) == EPOCHS and finished.checkpoints == tuple(paths)
    assert [label for label, _ in finished.checkpoint_slider.options] == ["epoch 1", "epoch 2"]
    assert checkpoint_label("a/b/checkpoint-00012.pt") == "epoch 12" and checkpoint_label("x/model.pt") == "model.pt"


def test_a_blocking_run_caches_every_checkpoints_spectrum_exactly(finished, dataset):
    assert len(finished.cache) == EPOCHS
    for path in finished.checkpoints:
        cached = finished.cache[dataclasses.replace(finished.spectrum.settings, checkpoint=path)]
        reference = reference_spectrum(path)
        np.testing.assert_allclose(cached.ritz_values, reference.ritz_values, rtol=1e-12, atol=0)
        assert cached.ritz_vectors is not None  # kept for the landscape
    assert finished.cache_status.value == f"{EPOCHS}/{EPOCHS} spectra cached"


def test_the_landscape_walks_the_last_checkpoint_along_its_spectrums_eigenvectors(finished, dataset):
    last = finished.checkpoints[-1]
    spectrum = finished.cache[dataclasses.replace(finished.spectrum.settings, checkpoint=last)]
    assert finished.landscape.spectrum is spectrum and finished.landscape.checkpoint.value == last
    landscape = finished.landscape.result
    assert isinstance(landscape, cw.Landscape) and landscape.done.all()
    trained = cw.load_trained(last, device="cpu")
    directions = cw.eigen_directions(spectrum, largest=1, smallest=1)
    direct = cw.loss_landscape(trained.model, trained.data, directions, dist=0.5, n_points=5)
    np.testing.assert_array_equal(landscape.curvatures, direct.curvatures)  # the same two eigenvectors
    np.testing.assert_allclose(landscape["train_loss"], direct["train_loss"], rtol=1e-6)


def test_scrubbing_back_shows_the_cached_spectrum_without_computing(finished, monkeypatch):
    first, last = finished.checkpoints
    started = []
    monkeypatch.setattr(finished.spectrum, "run", lambda block=False: started.append(block))
    finished.checkpoint_slider.value = first
    key = dataclasses.replace(finished.spectrum.settings, checkpoint=first)
    assert finished.spectrum.result is finished.cache[key] and started == []
    np.testing.assert_array_equal(finished.spectrum.stem_heads.x, finished.cache[key].stem()[0])
    assert finished.landscape.checkpoint.value == first
    finished.checkpoint_slider.value = last
    assert finished.spectrum.result is finished.cache[dataclasses.replace(key, checkpoint=last)] and started == []


def test_the_eigenvalue_axis_spans_every_cached_spectrum_and_stays_while_scrubbing(finished):
    spectra = [finished.cache[dataclasses.replace(finished.spectrum.settings, checkpoint=path)]
               for path in finished.checkpoints]
    values = np.concatenate([spectrum.ritz_values.ravel() for spectrum in spectra])
    low, high = finished.spectrum.eigenvalue_range
    span = values.max() - values.min()
    np.testing.assert_allclose([low, high], [values.min() - 0.05 * span, values.max() + 0.05 * span], rtol=1e-12)
    for path in (*finished.checkpoints, finished.checkpoints[0], finished.checkpoints[-1]):
        finished.checkpoint_slider.value = path
        assert finished.spectrum.eigenvalue_range == (low, high)


def test_the_slider_is_the_spectrum_tabs_only_checkpoint_control(finished):
    assert finished.spectrum.checkpoint.layout.display == "none"
    assert finished.landscape.checkpoint.layout.display != "none"  # one per tab


def test_run_right_after_training_computes_the_checkpoint_the_slider_shows(dataset, tmp_path):
    dashboard = make_dashboard(dataset, tmp_path / "run")
    assert dashboard.training.run(block=True)
    last = dashboard.checkpoints[-1]
    assert dashboard.checkpoint_slider.value == last and dashboard.spectrum.checkpoint.value == last
    dashboard.spectrum.runner.button.click()  # the Spectrum tab's Run, before any slider move
    settle(dashboard)
    assert dashboard.spectrum.runner.outcome == "done", dashboard.spectrum.runner.error_message.value
    key = dataclasses.replace(dashboard.spectrum.settings, checkpoint=last)
    assert dashboard.spectrum.result is dashboard.cache[key]


def test_other_controls_make_a_new_cache_entry_computed_in_the_worker(finished, dataset):
    first = finished.checkpoints[0]
    finished.spectrum.steps.value = STEPS - 1
    try:
        assert finished.show_checkpoint(first)
        settle(finished)
        key = dataclasses.replace(finished.spectrum.settings, checkpoint=first)
        assert key in finished.cache and finished.spectrum.result is finished.cache[key]
        assert finished.spectrum.result.steps == STEPS - 1
        assert finished.cache_status.value == f"1/{EPOCHS} spectra cached"  # at the controls shown now
    finally:
        finished.spectrum.steps.value = STEPS


def test_a_move_while_computing_cancels_and_the_latest_pick_is_shown(dataset, tmp_path):
    dashboard = make_dashboard(dataset, tmp_path / "run")
    assert dashboard.training.run(block=True)
    first, last = dashboard.checkpoints
    assert dashboard.checkpoint_slider.value == last and not dashboard.cache  # follows training, computes nothing
    dashboard.checkpoint_slider.value = first  # starts computing in the worker
    assert dashboard.spectrum.runner.running
    dashboard.checkpoint_slider.value = last  # cancels it; the last one follows
    settle(dashboard)
    assert dashboard.spectrum.checkpoint.value == last
    last_key = dataclasses.replace(dashboard.spectrum.settings, checkpoint=last)
    assert dashboard.spectrum.result is dashboard.cache[last_key]
    np.testing.assert_allclose(dashboard.cache[last_key].ritz_values, reference_spectrum(last).ritz_values,
                               rtol=1e-12, atol=0)
    first_key = dataclasses.replace(last_key, checkpoint=first)
    assert first_key not in dashboard.cache or dashboard.cache[first_key].steps == STEPS  # never a partial one

    dashboard.compute_all()  # the rest, one after the other, in the worker
    settle(dashboard)
    assert set(dashboard.cache) == {first_key, last_key}
    assert dashboard.cache_status.value == f"{EPOCHS}/{EPOCHS} spectra cached"


def test_both_tabs_read_a_checkpoint_through_one_source_and_get_their_own_model(finished, monkeypatch):
    import torch

    assert finished.spectrum.source is finished.landscape.source
    last = finished.checkpoints[-1]
    model, data, meta = finished.spectrum.source(last)
    reads = []
    monkeypatch.setattr(cw.training, "load_trained", lambda *args, **kwargs: reads.append(args))
    again, same_data, _ = finished.landscape.source(last)  # kept: not read again
    assert reads == [] and again is not model and same_data is data
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        next(again.parameters()).add_(1.0)  # one tab's copy never changes the other's
    assert not torch.equal(next(again.parameters()), next(model.parameters()))


def test_a_pick_during_all_checkpoints_waits_for_the_run_going(dataset, tmp_path):
    dashboard = make_dashboard(dataset, tmp_path / "run")
    assert dashboard.training.run(block=True)
    first, last = dashboard.checkpoints
    dashboard.compute_all()  # first, then last, in the worker
    assert dashboard.spectrum.runner.running and dashboard._queue == [last]
    dashboard.checkpoint_slider.value = first  # the one computing: nothing changes
    dashboard.checkpoint_slider.value = last  # waits (a queued run is not cancelled), then is shown
    settle(dashboard)
    key = dataclasses.replace(dashboard.spectrum.settings, checkpoint=first)
    assert set(dashboard.cache) == {key, dataclasses.replace(key, checkpoint=last)}
    assert dashboard.spectrum.checkpoint.value == last and dashboard.checkpoint_slider.value == last
    assert dashboard.spectrum.result is dashboard.cache[dataclasses.replace(key, checkpoint=last)]


def sizes_shown(dashboard):
    """The Spectrum tab's samples and the Landscape tab's points."""
    return dashboard.spectrum.num_samples.value, dashboard.landscape.n_points.value


def test_the_spectrum_and_landscape_sizes_follow_the_data_set_picked_unless_given(tmp_path):
    text = sizes_for("tinytext")
    dashboard = Dashboard(out_dir=str(tmp_path / "a"), device="cpu")
    assert sizes_shown(dashboard) == (0, 21)
    dashboard.training.dataset_name.value = "tinytext"
    assert sizes_shown(dashboard) == (text.num_samples, text.n_points) == (64, 11)
    dashboard.training.dataset_name.value = "digits"
    assert sizes_shown(dashboard) == (0, 21)

    fixed = Dashboard(model="TinyTransformer", dataset="tinytext", num_samples=32, out_dir=str(tmp_path / "b"))
    assert sizes_shown(fixed) == (32, 11)
    fixed.training.dataset_name.value = "synthetic"
    assert sizes_shown(fixed) == (32, 21)  # the samples given stay; the points follow
    given = Dashboard(cw.data.load("tinytext", num_samples=32, num_test=8), out_dir=str(tmp_path / "c"))
    assert sizes_shown(given) == (64, 11)


def test_the_transformer_trains_on_tinytext_then_its_spectrum_and_landscape_take_the_data_sets_loss(tmp_path):
    dashboard = Dashboard(model="TinyTransformer", dataset="tinytext", optimizer="AdamW", epochs=1, steps=STEPS,
                          dist=0.5, n_points=5, out_dir=str(tmp_path / "run"), device="cpu",
                          spectrum_options={"backend": BACKEND})
    assert dashboard.run(block=True)
    for widget in (dashboard.training, dashboard.spectrum, dashboard.landscape):
        assert widget.runner.outcome == "done", widget.runner.error_message.value
    last = dashboard.checkpoints[-1]
    spectrum = dashboard.cache[dataclasses.replace(dashboard.spectrum.settings, checkpoint=last)]
    assert spectrum.meta["num_samples"] == sizes_for("tinytext").num_samples
    trained = cw.load_trained(last, device="cpu")
    assert (trained.data.train.dataset_size, trained.data.test.dataset_size) == (400, 100)
    reference = cw.spectrum(trained.model, trained.data, steps=STEPS, num_samples=64, seed=0, save_vectors=True,
                            backend=BACKEND)
    np.testing.assert_allclose(spectrum.ritz_values, reference.ritz_values, rtol=1e-10, atol=0)

    landscape = dashboard.landscape.result
    directions = stem_directions(spectrum, [0, STEPS - 1])
    direct = cw.loss_landscape(trained.model, trained.data, directions, dist=0.5, n_points=5)
    for metric in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(landscape[metric], direct[metric], rtol=1e-6)
    with torch.no_grad():  # at t = 0: the mean cross-entropy over every token, and the accuracy per token
        logits, targets = trained.model(trained.data.test.images), trained.data.test.targets
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        accuracy = (logits.argmax(dim=-1) == targets).double().mean()
    np.testing.assert_allclose(landscape["test_loss"][:, 2], float(loss), rtol=1e-5)
    np.testing.assert_allclose(landscape["test_accuracy"][:, 2], float(accuracy), rtol=1e-6)


def test_a_run_measuring_the_curvature_draws_it_and_scrubs_the_same_checkpoints(finished, dataset, tmp_path):
    """The monitor changes no weight: each checkpoint's spectrum is the one of the run without it."""
    dashboard = make_dashboard(dataset, tmp_path / "run",
                               training_options={"monitor": cw.CurvatureMonitor(num_samples=32)})
    training = dashboard.training
    assert training.measure_curvature.value and training.curvature_samples.value == 32
    assert dashboard.run(block=True)
    history = training.result
    assert training.runner.outcome == "done" and dashboard.landscape.runner.outcome == "done"
    np.testing.assert_array_equal(training.sharpness_line.y, history["sharpness"])  # measured after every epoch
    np.testing.assert_array_equal(training.threshold_line.y, np.repeat(history["stability_threshold"], 2))
    assert len(dashboard.checkpoints) == EPOCHS and len(dashboard.cache) == EPOCHS
    for path, plain in zip(dashboard.checkpoints, finished.checkpoints):
        key = dataclasses.replace(dashboard.spectrum.settings, checkpoint=path)
        unmonitored = finished.cache[dataclasses.replace(key, checkpoint=plain)]
        np.testing.assert_array_equal(dashboard.cache[key].ritz_values, unmonitored.ritz_values)
    first = dashboard.checkpoints[0]
    dashboard.checkpoint_slider.value = first  # scrubbing back: the cached spectrum, at once
    assert dashboard.spectrum.result is dashboard.cache[dataclasses.replace(key, checkpoint=first)]
    assert dashboard.landscape.checkpoint.value == first

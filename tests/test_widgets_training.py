"""TrainingWidget and the loop's batch events: marks hold exactly the history and batch losses; Stop, resume; the
curvature monitor's controls and figures."""

import dataclasses
import re
import threading
from pathlib import Path

import bqplot
import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import curvwidgets as cw
from curvwidgets.training.checkpoint import load_checkpoint
from curvwidgets.training.loop import BatchLosses
from curvwidgets.widgets import TrainingWidget
from curvwidgets.widgets import _training_task as task_module
from curvwidgets.widgets import training as training_module
from curvwidgets.widgets._sizes import sizes_for
from curvwidgets.widgets._training_task import MonitorSettings
from curvwidgets.widgets.training import MEASUREMENT_INTERVALS, accuracy_title, batch_points, threshold_steps

EPOCHS, LR = 3, 0.05
SIZES = (32, 32, 32, 4)  # 100 training samples in batches of 32
TIMING = ("seconds", "images_per_second", "peak_memory_bytes", "curvature_seconds")  # differ between equal runs
EVERY, SUBSET = 2, 32  # the monitor's sliders: measured after epochs 2 and 3 (the last), on 32 samples
LINES = (("train_loss_line", "train_loss"), ("test_loss_line", "test_loss"), ("train_accuracy_line", "train_top1"),
         ("test_accuracy_line", "test_top1"))


@pytest.fixture(scope="module")
def dataset():
    return cw.data.load("synthetic", num_samples=100, num_test=32, num_classes=3, batch_size=32, device="cpu")


def make_widget(data, out_dir, **options):
    widget = TrainingWidget(data, lr=LR, epochs=EPOCHS, out_dir=str(out_dir), device="cpu", **options)
    widget.runner.min_interval = 0.0  # every event drawn, every batch loss sent
    return widget


def monitored_options(widget, every=EVERY, samples=SUBSET):
    """Tick the widget's measure curvature box and set its fields."""
    widget.measure_curvature.value = True
    widget.curvature_every.value, widget.curvature_samples.value = every, samples


def train_spy(calls):
    """cw.train, noting the keyword arguments of each call in ``calls``."""
    def spy(*args, **kwargs):
        calls.append(kwargs)
        return cw.train(*args, **kwargs)

    return spy


@pytest.fixture
def passed_to_train(monkeypatch):
    """The keyword arguments of every cw.train the widgets call (which still trains)."""
    calls = []
    monkeypatch.setattr(task_module, "train", train_spy(calls))
    return calls


def measured(history):
    """The history's rows without the timing columns."""
    return [{key: value for key, value in row.items() if key not in TIMING} for row in history.rows]


def weighted_mean(losses, sizes):
    """The epoch's mean loss from its batch means, summed in batch order as the loop sums them."""
    return sum(loss * size for loss, size in zip(losses, sizes)) / sum(sizes)


def checkpoint_files(folder, epochs):
    return [str(Path(folder) / f"checkpoint-{epoch:05d}.pt") for epoch in epochs]


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    """A widget after a blocking run, with every batch curve and checkpoint list it showed on the way."""
    widget = make_widget(dataset, tmp_path_factory.mktemp("finished") / "run")
    batch_draws, lists = [], []
    widget.batch_loss_line.observe(
        lambda change: batch_draws.append((np.array(widget.batch_loss_line.x), np.array(change["new"]))), "y")
    widget.observe(lambda change: lists.append(list(change["new"])), "checkpoints")
    assert widget.run(block=True)
    return widget, batch_draws, lists


def test_marks_hold_the_history_which_is_what_train_computes(finished, dataset):
    widget, _, _ = finished
    history = widget.result
    assert widget.runner.outcome == "done" and widget.runner.button.description == "Train"
    reference = cw.train("MLP", dataset, EPOCHS, optimizer_kwargs={"lr": LR}, device="cpu")
    # monitor off (the default): the rows are those of cw.train without a monitor, no curvature column among them
    assert len(history) == EPOCHS and measured(history) == measured(reference)
    assert not widget.measure_curvature.value and history.config["monitor"] is None
    assert not set(history.rows[0]) & set(cw.results.MONITOR_COLUMNS)
    assert widget.curvature_view.children == () and widget.sharpness_line.y.size == 0
    for name, column in LINES:
        np.testing.assert_array_equal(getattr(widget, name).x, np.arange(1, EPOCHS + 1))
        np.testing.assert_array_equal(getattr(widget, name).y, history[column])
    assert widget.model is history.model and widget.dataset is dataset
    for trained, expected in zip(widget.model.parameters(), reference.model.parameters()):
        torch.testing.assert_close(trained, expected, rtol=0, atol=0)


def test_axes_span_the_run_and_the_values_with_ticks_on_whole_epochs(finished):
    """Explicit ranges: a first epoch alone would give bqplot a one-value domain, drawn without ticks."""
    widget = finished[0]
    for figure, columns in ((widget.loss_figure, ("train_loss", "test_loss")),
                            (widget.accuracy_figure, ("train_top1", "test_top1"))):
        epoch_axis, value_axis = figure.axes
        assert (epoch_axis.scale.min, epoch_axis.scale.max) == (0.5, EPOCHS + 0.5)
        np.testing.assert_array_equal(epoch_axis.tick_values, np.arange(1, EPOCHS + 1))
        values = np.concatenate([widget.result[column] for column in columns])
        assert value_axis.scale.min < values.min() <= values.max() < value_axis.scale.max
    batch = widget.batch_loss_line
    assert (batch.scales["x"].min, batch.scales["x"].max) == (EPOCHS - 1, EPOCHS)
    assert batch.scales["y"].min < np.min(batch.y) <= np.max(batch.y) < batch.scales["y"].max


def test_the_checkpoints_trait_grows_with_the_files_written(finished):
    widget, _, lists = finished
    folder = widget.out_dir.value
    files = checkpoint_files(folder, range(1, EPOCHS + 1))
    assert lists == [files[:epoch] for epoch in range(1, EPOCHS + 1)]  # one change per epoch, in order
    assert widget.checkpoints == files == widget.result.checkpoints
    assert list(widget.checkpoint_list.options) == files
    assert sorted(str(path) for path in Path(folder).glob("checkpoint-*.pt")) == files
    assert widget.resume.value  # the folder holds a checkpoint now: the next Train continues it


def test_batch_marks_hold_every_batch_loss_at_its_fractional_epoch(finished):
    widget, batch_draws, _ = finished
    shown = [(int(np.ceil(x[-1])), y.size) for x, y in batch_draws if y.size]
    distinct = [point for i, point in enumerate(shown) if i == 0 or point != shown[i - 1]]
    assert distinct == [(epoch, n) for epoch in range(1, EPOCHS + 1) for n in range(1, len(SIZES) + 1)]
    for epoch in range(1, EPOCHS + 1):
        x, losses = next((x, y) for x, y in batch_draws if y.size == len(SIZES) and x[-1] == epoch)
        np.testing.assert_array_equal(x, epoch - 1 + np.arange(1, 5) / 4)
        assert weighted_mean(losses, SIZES) == widget.result.rows[epoch - 1]["train_loss"]
    np.testing.assert_array_equal(widget.batch_loss_line.y, losses)  # the last epoch's batches stay drawn


def test_train_sends_each_batch_loss_that_a_hand_written_epoch_computes(dataset):
    events = []
    history = cw.train("MLP", dataset, 1, optimizer_kwargs={"lr": LR}, device="cpu", progress=events.append,
                       batch_interval=0)
    torch.manual_seed(0)  # what train does before it builds a named model
    model = cw.models.create("MLP", num_classes=3, in_channels=3)
    sgd = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    dataset.train.set_epoch(0)
    losses = []
    for inputs, targets in dataset.train:
        sgd.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        sgd.step()
        losses.append(loss.item())
    batches = [event for event in events if event.stage == "batch"]
    assert [(event.step, event.total) for event in batches] == [(n, 4) for n in range(1, 5)]
    assert [event.partial for event in batches] == [BatchLosses(1, tuple(losses[:n]), SIZES[:n], 4)
                                                    for n in range(1, 5)]
    assert weighted_mean(losses, SIZES) == history.rows[0]["train_loss"]
    assert [event.stage for event in events] == ["batch"] * 4 + ["train"]


def test_batch_events_are_throttled_and_the_epoch_end_sends_the_rest(dataset):
    events = []
    cw.train("MLP", dataset, 2, optimizer_kwargs={"lr": LR}, device="cpu", progress=events.append,
             batch_interval=1e9)
    batches = [event.partial for event in events if event.stage == "batch"]
    assert [(batch.epoch, len(batch.losses), batch.sizes) for batch in batches] == [(1, 4, SIZES), (2, 4, SIZES)]
    with pytest.raises(ValueError, match="batch_interval must be a finite number >= 0"):
        cw.train("MLP", dataset, 1, device="cpu", batch_interval=-1)


def test_batch_points_spread_an_epoch_over_its_batches():
    x, y = batch_points(BatchLosses(epoch=2, losses=(3.0, 2.0), sizes=(8, 8), batches=4))
    np.testing.assert_array_equal(x, [1.25, 1.5])
    np.testing.assert_array_equal(y, [3.0, 2.0])
    x, _ = batch_points(BatchLosses(epoch=1, losses=(3.0, 2.0), sizes=(8, 8), batches=0))  # loader without length
    np.testing.assert_array_equal(x, [0.5, 1.0])
    assert [part.size for part in batch_points(None)] == [0, 0]


def test_stop_after_an_epoch_keeps_its_checkpoint_and_train_resumes_exactly(finished, dataset, tmp_path):
    uninterrupted = finished[0].result
    widget = make_widget(dataset, tmp_path / "run")

    def stop_after_the_first_epoch(change):
        if len(change["new"]) == 1:
            assert widget.stop()

    widget.observe(stop_after_the_first_epoch, "checkpoints")
    assert widget.run(block=True)
    widget.unobserve(stop_after_the_first_epoch, "checkpoints")
    first = checkpoint_files(tmp_path / "run", [1])
    assert widget.runner.outcome == "cancelled" and widget.runner.button.description == "Train"
    assert len(widget.result) == 1 and measured(widget.result) == measured(uninterrupted)[:1]
    assert widget.checkpoints == first and sorted(str(p) for p in (tmp_path / "run").glob("*.pt")) == first
    assert load_checkpoint(first[0])["epoch"] == 1
    np.testing.assert_array_equal(widget.train_loss_line.y, uninterrupted["train_loss"][:1])

    assert widget.resume.value  # ticked by the checkpoint on disk
    first_event = []
    show = widget._show_progress
    widget._show_progress = lambda event: (first_event or first_event.append(event), show(event))
    assert widget.run(block=True)
    assert widget.runner.outcome == "done"
    # the resumed run announces the epoch it starts from, so its rate and ETA count only its own epochs
    assert (first_event[0].stage, first_event[0].step, first_event[0].total) == ("train", 1, EPOCHS)
    assert measured(widget.result) == measured(uninterrupted)
    assert widget.checkpoints == checkpoint_files(tmp_path / "run", range(1, EPOCHS + 1))
    np.testing.assert_array_equal(widget.test_accuracy_line.y, uninterrupted["test_top1"])
    for resumed, expected in zip(widget.model.parameters(), uninterrupted.model.parameters()):
        torch.testing.assert_close(resumed, expected, rtol=0, atol=0)


def test_a_bad_learning_rate_appears_in_the_error_area(dataset, tmp_path):
    widget = make_widget(dataset, tmp_path / "run")
    widget.lr.value = -1.0
    assert widget.run()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "failed" and isinstance(widget.runner.error, ValueError)
    assert "lr must be a finite number &gt; 0" in widget.runner.error_message.value
    assert widget.runner.error_box.layout.display == ""
    assert widget.result is None and widget.train_loss_line.y.size == 0 and widget.checkpoints == []
    assert not list(tmp_path.rglob("*.pt"))


@pytest.mark.parametrize("out_dir, resume, message", [
    ("finished", False, "already holds the checkpoints of a run; tick 'resume'"),
    ("", True, "resume: set out_dir"),
])
def test_a_run_that_would_overwrite_or_cannot_resume_is_refused(finished, dataset, out_dir, resume, message):
    folder = Path(finished[0].out_dir.value)
    widget = make_widget(dataset, folder if out_dir else "")
    assert widget.resume.value == bool(out_dir)  # ticked exactly when out_dir holds a checkpoint
    widget.resume.value = resume
    written = {path: path.stat().st_mtime_ns for path in folder.iterdir()}
    with pytest.raises(ValueError, match=message):
        widget.run(block=True)
    assert message.replace("'", "&#x27;") in widget.runner.error_message.value
    assert {path: path.stat().st_mtime_ns for path in folder.iterdir()} == written


class GatedLoader:
    """A training loader that waits for the test to open the gate (and fails, never hangs, if it stays shut)."""

    def __init__(self, loader, gate: threading.Event):
        self.loader, self.gate = loader, gate

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # its images and sizes, which the monitor's subset is read from before epoch 1
        return getattr(self.loader, name)

    def set_epoch(self, epoch):
        self.loader.set_epoch(epoch)

    def __iter__(self):
        if not self.gate.wait(timeout=30):
            raise RuntimeError("the main thread was blocked")
        return iter(self.loader)


def test_a_second_train_while_running_is_refused_and_the_button_stops(dataset, tmp_path):
    gate = threading.Event()
    widget = make_widget(dataclasses.replace(dataset, train=GatedLoader(dataset.train, gate)), tmp_path / "run")
    monitored_options(widget)  # the subset is read before the first epoch: one the data can hold
    settings = widget._setting_controls()
    assert widget.run()  # returns at once: the worker waits at the gate
    assert widget.runner.running and widget.runner.button.description == "Stop"
    assert all(control.disabled for control in settings)  # read when the run started: not to be changed now
    assert not widget.run()
    widget.runner.button.click()
    assert widget.runner.button.description == "Stopping" and widget.runner.button.disabled
    gate.set()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "cancelled" and len(widget.result) == 0  # stopped at the first batch
    assert widget.runner.button.description == "Train" and not list(tmp_path.rglob("*.pt"))
    # editable again, but the data set given and the SWA rate without SWA
    assert [control.description for control in settings if control.disabled] == ["data", "SWA lr"]


def test_a_named_data_set_is_loaded_once_and_a_finished_run_resumes_with_nothing_to_do(dataset, tmp_path,
                                                                                       monkeypatch):
    loads = []

    def fake_load(name, device=None, seed=0):
        loads.append((name, str(device), seed))
        return dataset

    monkeypatch.setattr(training_module.datasets, "load", fake_load)
    widget = TrainingWidget(dataset="synthetic", lr=LR, epochs=1, out_dir=str(tmp_path / "run"), seed=0,
                            device="cpu")
    assert widget.dataset is None and not widget.resume.value
    widget.run(block=True)
    first = widget.result
    assert widget.resume.value
    widget.run(block=True)  # resumes from the checkpoint of the last epoch: no epoch left to train
    assert loads == [("synthetic", "cpu", 0)] and widget.dataset is dataset
    assert widget.runner.outcome == "done" and measured(widget.result) == measured(first)
    np.testing.assert_array_equal(widget.train_loss_line.y, first["train_loss"])


def test_controls_start_from_the_defaults_and_bad_arguments_are_named(dataset, tmp_path):
    widget = TrainingWidget(out_dir=str(tmp_path))
    assert (widget.model_name.value, widget.dataset_name.value, widget.optimizer_name.value) == ("MLP", "digits", "SGD")
    assert widget.lr.value == cw.optim.DEFAULTS["SGD"]["lr"] and not widget.dataset_name.disabled
    widget.optimizer_name.value = "Adam"
    assert widget.lr.value == cw.optim.DEFAULTS["Adam"]["lr"]
    assert widget.swa_lr.disabled and not widget.resume.value
    widget.swa_start.value = 2
    assert not widget.swa_lr.disabled
    assert widget.settings.options()["swa_start"] == 2 and widget.settings.options()["swa_lr"] == 0.01

    given = TrainingWidget(dataset, lr=0.2, optimizer="Adam", out_dir=str(tmp_path))
    assert given.dataset_name.options == ("synthetic",) and given.dataset_name.disabled and given.lr.value == 0.2
    assert given.dataset is dataset and given.model is None and given.result is None

    with pytest.raises(ValueError, match="model must be one of"):
        TrainingWidget(model="ResNet1000")
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainingWidget(schedule="exponential")
    with pytest.raises(TypeError, match="data must be a DataSet"):
        TrainingWidget([(torch.zeros(2, 3), torch.zeros(2))])


def test_the_transformer_trains_on_tinytext_at_the_widget_sizes_with_per_token_loss_and_accuracy(tmp_path):
    widget = TrainingWidget(model="TinyTransformer", dataset="tinytext", optimizer="AdamW", epochs=2,
                            out_dir=str(tmp_path / "run"), device="cpu")
    widget.runner.min_interval = 0.0
    assert widget.accuracy_figure.title == accuracy_title("tinytext") == "top-1 accuracy per token"
    assert widget.lr.value == cw.optim.DEFAULTS["AdamW"]["lr"]
    assert widget.run(block=True) and widget.runner.outcome == "done", widget.runner.error_message.value
    text = cw.data.load("tinytext", device="cpu", **sizes_for("tinytext").load)
    loaded = widget.dataset
    assert (loaded.train.dataset_size, loaded.test.dataset_size, len(loaded.train)) == (400, 100, 8)
    reference = cw.train("TinyTransformer", text, 2, optimizer="AdamW", device="cpu")
    assert measured(widget.result) == measured(reference)
    for name, column in LINES:
        np.testing.assert_array_equal(getattr(widget, name).y, widget.result[column])
    with torch.no_grad():  # the data set's loss, the mean over every token, and the accuracy per token
        logits, targets = widget.model.eval()(text.test.images), text.test.targets
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        accuracy = (logits.argmax(dim=-1) == targets).double().mean()
    assert widget.result.rows[-1]["test_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert widget.result.rows[-1]["test_top1"] == pytest.approx(float(accuracy), abs=1e-6)


@pytest.mark.parametrize("model, dataset, message", [
    ("MLP", "tinytext", "MLP reads images (B, C, H, W), but tinytext holds windows of token ids (B, T); pick the "
                        "model TinyTransformer for tinytext, or an image data set (CIFAR10, CIFAR100, digits, "
                        "synthetic) for MLP"),
    ("TinyTransformer", "digits", "TinyTransformer reads windows of token ids (B, T), but digits holds images "
                                  "(B, C, H, W); pick the data tinytext for TinyTransformer"),
])
def test_a_model_that_cannot_read_the_data_set_is_refused_in_the_widget_before_loading(model, dataset, message,
                                                                                       tmp_path, monkeypatch):
    loads = []
    monkeypatch.setattr(training_module.datasets, "load", lambda *args, **kwargs: loads.append(args))
    widget = TrainingWidget(model=model, dataset=dataset, out_dir=str(tmp_path / "run"), device="cpu")
    assert widget.run()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "failed" and isinstance(widget.runner.error, ValueError)
    assert message in widget.runner.error_message.value and widget.runner.error_box.layout.display == ""
    assert loads == [] and widget.result is None and not list(tmp_path.rglob("*.pt"))


def test_the_accuracy_title_follows_the_data_set_picked(tmp_path):
    widget = TrainingWidget(out_dir=str(tmp_path))
    assert widget.accuracy_figure.title == "top-1 accuracy"
    widget.dataset_name.value = "tinytext"
    assert widget.accuracy_figure.title == "top-1 accuracy per token"
    widget.dataset_name.value = "synthetic"
    assert widget.accuracy_figure.title == "top-1 accuracy"


@pytest.fixture(scope="module")
def monitored(dataset, tmp_path_factory):
    """A widget after a blocking run measuring the curvature, with what its curvature marks held at each draw."""
    widget = make_widget(dataset, tmp_path_factory.mktemp("monitored") / "run")
    monitored_options(widget)
    draws = []  # after each progress event drawn (during the run): the y of the three curvature lines
    show = widget._show_progress
    widget._show_progress = lambda event: (show(event), draws.append(
        tuple(np.array(getattr(widget, name).y) for name in ("sharpness_line", "threshold_line", "overlap_line"))))
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(task_module, "train", train_spy(calls))
        assert widget.run(block=True)
    return widget, draws, calls


def test_the_curvature_marks_hold_the_monitors_sharpness_and_two_over_each_epochs_rate(monitored):
    widget, _, _ = monitored
    history = widget.result
    assert widget.runner.outcome == "done", widget.runner.error_message.value
    measured_epochs = np.array([EVERY, EPOCHS], dtype=float)  # every 2nd epoch, and the last
    np.testing.assert_array_equal(widget.sharpness_line.x, measured_epochs)
    np.testing.assert_array_equal(widget.sharpness_line.y, history["sharpness"][[EVERY - 1, EPOCHS - 1]])
    np.testing.assert_array_equal(widget.overlap_line.x, measured_epochs)
    np.testing.assert_array_equal(widget.overlap_line.y, history["gradient_overlap"][[EVERY - 1, EPOCHS - 1]])
    assert np.isnan(history["sharpness"][0]) and (history["sharpness"][1:] > 0).all()
    # the threshold line: a step per epoch, centred on it, at the threshold of SGD's momentum and the epoch's rate
    lr, threshold = history["lr"], history["stability_threshold"]
    assert lr[-1] < lr[0]  # the linear schedule lowers the last epoch's rate: the step follows it
    np.testing.assert_allclose(threshold, stability_threshold_of(history), rtol=1e-12)
    np.testing.assert_array_equal(widget.threshold_line.x, [0.5, 1.5, 1.5, 2.5, 2.5, 3.5])
    np.testing.assert_array_equal(widget.threshold_line.y, np.repeat(threshold, 2))
    assert widget.threshold_line.line_style == "dashed" and widget.sharpness_line.marker == "circle"
    assert widget.curvature_view.children and f"top Hessian eigenvalue on {SUBSET} samples" in widget.curvature_legend.value


def stability_threshold_of(history):
    """(2 + 2 momentum) / lr - weight decay from the run's own optimiser settings (torch SGD's heavy ball)."""
    options = history.config["optimizer_kwargs"]
    return (2 + 2 * options["momentum"]) / history["lr"] - options["weight_decay"]


def test_the_threshold_steps_centre_each_epoch_and_leave_out_a_rate_of_zero():
    x, y = threshold_steps(np.array([1.0, 2.0, 3.0]), np.array([20.0, np.nan, 50.0]))
    np.testing.assert_array_equal(x, [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_array_equal(y, [20.0, 20.0, 50.0, 50.0])


def test_the_sharpness_axis_is_logarithmic_and_spans_sharpness_and_threshold(monitored):
    widget, _, _ = monitored
    epoch_axis, value_axis = widget.sharpness_figure.axes
    assert isinstance(value_axis.scale, bqplot.LogScale)
    assert (epoch_axis.scale.min, epoch_axis.scale.max) == (0.5, EPOCHS + 0.5)
    values = np.concatenate([widget.sharpness_line.y, widget.threshold_line.y])
    assert value_axis.scale.min < values.min() <= values.max() < value_axis.scale.max
    ticks = np.asarray(value_axis.tick_values)
    assert ticks.size >= 2 and (ticks >= value_axis.scale.min).all() and (ticks <= value_axis.scale.max).all()
    overlap_axis = widget.overlap_figure.axes[1]
    assert overlap_axis.scale.min < 0 and overlap_axis.scale.max > 1  # the fraction's whole range, always


def test_the_curvature_figures_draw_as_epochs_come_in(monitored):
    widget, draws, _ = monitored
    sizes = [tuple(part.size for part in draw) for draw in draws]
    distinct = [size for i, size in enumerate(sizes) if i == 0 or size != sizes[i - 1]]
    # before epoch 1 ends: nothing; then its step only; after epoch 2: the first measurement; after 3: the second
    assert distinct == [(0, 0, 0), (0, 2, 0), (1, 4, 1), (2, 6, 2)]
    history = widget.result
    during = next(draw for draw, size in zip(draws, sizes) if size == (1, 4, 1))
    np.testing.assert_array_equal(during[0], history["sharpness"][[EVERY - 1]])
    np.testing.assert_array_equal(during[1], np.repeat(history["stability_threshold"][:2], 2))


def test_the_controls_reach_the_monitor_passed_to_train_and_train_measures_the_same(monitored, dataset):
    widget, _, calls = monitored
    assert [call["monitor"] for call in calls] == [cw.CurvatureMonitor(every=EVERY, num_samples=SUBSET)]
    reference = cw.train("MLP", dataset, EPOCHS, optimizer_kwargs={"lr": LR}, device="cpu",
                         monitor=cw.CurvatureMonitor(every=EVERY, num_samples=SUBSET))
    np.testing.assert_equal(measured(widget.result), measured(reference))  # bit for bit (NaN: not measured)


def test_a_monitor_given_sets_the_controls_and_its_other_settings_reach_train(dataset, tmp_path, passed_to_train):
    given = cw.CurvatureMonitor(every=3, num_samples=None, matrix="ggn", tol=1e-3, seed=5)
    widget = make_widget(dataset, tmp_path / "run", monitor=given)
    widget.epochs.value = 1
    assert widget.measure_curvature.value and not widget.curvature_every.disabled
    assert (widget.curvature_every.value, widget.curvature_samples.value) == (3, 0)  # 0: all samples
    assert "top GGN eigenvalue on all samples" in widget.curvature_legend.value
    widget.curvature_every.value, widget.curvature_samples.value = 1, 16
    assert widget.run(block=True) and widget.runner.outcome == "done", widget.runner.error_message.value
    assert passed_to_train[0]["monitor"] == dataclasses.replace(given, every=1, num_samples=16)
    assert "top GGN eigenvalue on 16 samples" in widget.curvature_legend.value
    with pytest.raises(TypeError, match="monitor must be None or a cw.CurvatureMonitor"):
        TrainingWidget(monitor={"every": 1})


def test_the_curvature_view_follows_the_box_and_keeps_a_measured_history(monitored, dataset, tmp_path):
    widget = make_widget(dataset, tmp_path / "run")
    assert widget.curvature_view.children == () and widget.curvature_every.disabled
    widget.measure_curvature.value = True
    assert widget.curvature_view.children and not widget.curvature_every.disabled
    assert widget.sharpness_line.y.size == 0  # nothing measured yet: empty axes
    widget.curvature_samples.value = 64
    assert "on 64 samples" in widget.curvature_legend.value  # what the next run measures
    widget.measure_curvature.value = False
    assert widget.curvature_view.children == () and widget.curvature_samples.disabled
    shown = monitored[0]
    try:
        shown.measure_curvature.value = False  # the history shown holds measurements: they stay
        shown.curvature_samples.value = 128
        assert shown.curvature_view.children and f"on {SUBSET} samples" in shown.curvature_legend.value
    finally:
        shown.measure_curvature.value, shown.curvature_samples.value = True, SUBSET


def test_the_sliders_offer_only_valid_measurements_and_admit_a_given_monitors_values(dataset, tmp_path):
    widget = make_widget(dataset, tmp_path / "run")
    assert [value for _, value in widget.curvature_every.options] == list(MEASUREMENT_INTERVALS)
    assert widget.curvature_samples.options[-1] == ("all", 0) and widget.curvature_samples.value == 256
    for slider, bad in ((widget.curvature_every, 0), (widget.curvature_samples, -3)):
        with pytest.raises(traitlets.TraitError):
            slider.value = bad
    given = make_widget(dataset, tmp_path / "given", monitor=cw.CurvatureMonitor(every=7, num_samples=40))
    assert (given.curvature_every.value, given.curvature_samples.value) == (7, 40)
    assert ("7", 7) in given.curvature_every.options and ("40", 40) in given.curvature_samples.options


@pytest.mark.parametrize("every, samples, message", [
    (0, SUBSET, "curvature: every (epochs) must be an int >= 1; got 0"),
    (1, -3, "curvature: subset size must be an int >= 0; got -3"),
])
def test_bad_monitor_settings_are_named_as_the_controls(every, samples, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MonitorSettings(every, samples).monitor()


def test_a_step_monitor_draws_each_measurement_at_its_fractional_epoch(dataset, tmp_path, passed_to_train):
    """Every 3rd of the 2 x 4 steps (and the last): the marks get the table's points, drawn as they come in."""
    widget = make_widget(dataset, tmp_path / "run")
    widget.epochs.value = 2
    assert widget.curvature_unit.disabled  # unticked: the monitor's fields do not apply
    monitored_options(widget, every=3, samples=16)
    widget.curvature_unit.value = "step"
    assert not widget.curvature_unit.disabled
    draws = []
    show = widget._show_progress
    widget._show_progress = lambda event: (show(event), draws.append(
        (event.stage, len(widget.sharpness_line.x),
         None if event.partial.history is None else len(event.partial.history))))
    assert widget.run(block=True) and widget.runner.outcome == "done", widget.runner.error_message.value
    assert passed_to_train[0]["monitor"] == cw.CurvatureMonitor(every=3, num_samples=16, unit="step")
    history = widget.result
    np.testing.assert_allclose(history.measured("epoch"), [0.75, 1.5, 2.0])  # steps 3, 6 and 8
    np.testing.assert_array_equal(widget.sharpness_line.x, history.measured("epoch"))
    np.testing.assert_array_equal(widget.sharpness_line.y, history.measured("sharpness"))
    np.testing.assert_array_equal(widget.overlap_line.x, history.measured("epoch"))
    np.testing.assert_array_equal(widget.overlap_line.y, history.measured("gradient_overlap"))
    # 2/eta: a step across each epoch, where its measurements lie, at the rate of its steps
    np.testing.assert_array_equal(widget.threshold_line.x, [0.0, 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(widget.threshold_line.y, np.repeat(history["stability_threshold"], 2))
    assert widget.sharpness_figure.axes[0].scale.min == 0.0 == widget.loss_figure.axes[0].scale.min
    # the measurement at step 3 was drawn before epoch 1 ended, as a "train" event (the bar counts epochs)
    assert {stage for stage, _, _ in draws} == {"train"}
    assert ("train", 1, 0) in draws  # one point, no epoch finished
    with pytest.raises(ValueError, match=r"curvature: every \(steps\) must be an int >= 1; got 0"):
        task_module.MonitorSettings(0, 16, unit="step").monitor()

"""The curvature monitor every ``k`` optimiser steps: ``CurvatureMonitor(unit="step")`` and ``history.measurements``.

References: the weights (and BatchNorm buffers) of the same run without the
monitor, bit for bit; the top eigenvalue of the dense autograd Hessian on the
measurement subset at the weights of each measured step (``torch.linalg.eigvalsh``);
an uninterrupted run against one resumed from a mid-run checkpoint; the
history written and read back.
"""

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.progress import TqdmProgress

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLES, BATCH = 40, 8  # five optimiser steps per epoch
COST = ("curvature_seconds",)  # the only column that differs between two identical runs


def tensors(seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(SAMPLES, 4, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (SAMPLES,), generator=generator)
    return inputs, targets


def batches(seed=0):
    inputs, targets = tensors(seed)
    return [(inputs[i:i + BATCH], targets[i:i + BATCH]) for i in range(0, SAMPLES, BATCH)]


SUBSET = batches(1)[:2]  # the measurement data: 16 fixed samples


def network(batch_norm=False):
    torch.manual_seed(0)
    layers = [nn.Linear(4, 6)] + ([nn.BatchNorm1d(6)] if batch_norm else []) + [nn.Tanh(), nn.Linear(6, 3)]
    return nn.Sequential(*layers).double()


def monitor(**options):
    settings = dict(every=2, unit="step", data=SUBSET, num_samples=None, tol=1e-8, max_products=100)
    return cw.CurvatureMonitor(**{**settings, **options})


def fit(model, train_batches=None, epochs=2, **options):
    train_batches = batches() if train_batches is None else train_batches
    options.setdefault("optimizer_kwargs", {"lr": 0.1})
    return cw.train(model, (train_batches, batches(2)[:1]), epochs=epochs, seed=0, **options)


def state(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


def without_cost(table):
    return [{key: value for key, value in row.items() if key not in COST} for row in table]


def shuffling_loader():
    inputs, targets = tensors()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=BATCH,
                                       shuffle=True, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("case", ["plain", "batch norm, shuffled loader"])
def test_the_weights_follow_the_same_trajectory_with_a_step_monitor(case):
    """Measuring between steps changes no weight, BatchNorm buffer or loader order; train mode is back after each."""
    batch_norm = case != "plain"
    loader = shuffling_loader if batch_norm else batches
    plain = fit(network(batch_norm), loader(), epochs=3)
    modes = []

    def check_mode(event):
        if event.stage == "curvature":
            modes.append(all(module.training for module in event.partial.model.modules()))

    # the loader measured on is the training loader itself: its generator must not move
    measuring = loader() if batch_norm else SUBSET
    monitored = fit(network(batch_norm), measuring if batch_norm else loader(), epochs=3,
                    monitor=monitor(every=3, data=measuring, top=2, trace_products=6), progress=check_mode)
    before, after = state(plain.model), state(monitored.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)  # running means, counts included
    assert [row["train_loss"] for row in plain.rows] == [row["train_loss"] for row in monitored.rows]
    assert len(monitored.measurements) == 5 and all(modes) and len(modes) == 5  # steps 3, 6, 9, 12, 15
    assert plain.measurements == [] and monitored.model.training


def test_the_table_holds_the_measured_steps_and_each_row_the_epoch_last():
    schedule = dict(schedule="step", schedule_kwargs={"milestones": [0.5], "gamma": 0.5})
    history = fit(network(), epochs=2, monitor=monitor(every=3), **schedule)
    table = history.measurements
    assert [row["step"] for row in table] == [3, 6, 9, 10]  # every 3rd step, and the run's last
    np.testing.assert_allclose(history.measured("epoch"), [0.6, 1.2, 1.8, 2.0])
    assert history["lr"].tolist() == [0.1, 0.05]  # the rate of each measurement is its epoch's
    assert [row["lr"] for row in table] == [0.1, 0.05, 0.05, 0.05]
    assert history.rows[0]["sharpness"] == table[0]["sharpness"]  # each epoch's row: its last measurement
    assert history.rows[1]["sharpness"] == table[3]["sharpness"]
    assert history.rows[1]["gradient_overlap"] == table[3]["gradient_overlap"]
    assert history.final["curvature_time_fraction"] == pytest.approx(
        history.measured("curvature_seconds").sum() / history["seconds"].sum())
    assert history.config["monitor"]["unit"] == "step"

    by_epoch = fit(network(), epochs=3, monitor=monitor(every=2, unit="epoch"))
    assert [row["step"] for row in by_epoch.measurements] == [10, 15]  # after epochs 2 and 3 (the last)
    assert by_epoch.measured("epoch").tolist() == [2.0, 3.0]
    assert np.isnan(by_epoch["sharpness"][0]) and by_epoch["sharpness"][1] == by_epoch.measurements[0]["sharpness"]


def test_a_step_row_without_a_measurement_in_its_epoch_is_nan():
    history = fit(network(), epochs=3, monitor=monitor(every=7))  # steps 7, 14 and 15 (the last)
    assert [row["step"] for row in history.measurements] == [7, 14, 15]
    measured = np.isfinite(history["sharpness"])
    np.testing.assert_array_equal(measured, [False, True, True])


def dense_top_eigenvalue(model, subset):
    """The largest eigenvalue of the autograd Hessian of the mean cross-entropy over ``subset`` (one batch)."""
    inputs = torch.cat([x for x, _ in subset])
    targets = torch.cat([y for _, y in subset])
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(vector):
        pieces, start = {}, 0
        for name, shape in zip(names, shapes):
            pieces[name] = vector[start:start + shape.numel()].reshape(shape)
            start += shape.numel()
        outputs = torch.func.functional_call(model, pieces, (inputs,))
        return nn.functional.cross_entropy(outputs, targets)

    model.eval()
    hessian = torch.autograd.functional.hessian(loss, flat)
    return float(torch.linalg.eigvalsh(hessian)[-1])


def test_each_step_measurement_equals_a_dense_eigendecomposition():
    captured = []

    def keep_weights(event):
        if event.stage == "curvature":
            captured.append(torch.nn.utils.parameters_to_vector(event.partial.model.parameters()).clone())

    history = fit(network(), epochs=2, monitor=monitor(every=3), progress=keep_weights)
    assert len(captured) == len(history.measurements) == 4
    model = network()
    for row, flat in zip(history.measurements, captured):
        torch.nn.utils.vector_to_parameters(flat, model.parameters())
        assert row["sharpness"] == pytest.approx(dense_top_eigenvalue(model, SUBSET), rel=1e-4)


def test_a_resumed_run_gives_the_same_table_bit_for_bit(tmp_path):
    settings = monitor(every=3, top=2, trace_products=6, tol=1e-4)
    whole = fit(network(), epochs=3, monitor=settings, out_dir=tmp_path / "whole", save_every=1)
    checkpoint = tmp_path / "whole" / "checkpoint-00001.pt"
    assert torch.load(checkpoint, weights_only=True)["steps"] == 5
    resumed = fit(network(), epochs=3, monitor=settings, out_dir=tmp_path / "resumed", resume=checkpoint)
    assert [row["step"] for row in whole.measurements] == [3, 6, 9, 12, 15]
    assert without_cost(resumed.measurements) == without_cost(whole.measurements)
    for key in ("sharpness", "sharpness_2", "gradient_overlap", "curvature_trace", "train_loss"):
        np.testing.assert_array_equal(resumed[key], whole[key])
    assert torch.equal(torch.nn.utils.parameters_to_vector(resumed.model.parameters()),
                       torch.nn.utils.parameters_to_vector(whole.model.parameters()))
    saved = cw.TrainingHistory.load(tmp_path / "resumed" / "history.json")
    assert without_cost(saved.measurements) == without_cost(whole.measurements)
    # a checkpoint without the step count (written before it was kept): five steps per finished epoch
    older = torch.load(checkpoint, weights_only=True)
    del older["steps"]
    torch.save(older, tmp_path / "checkpoint-00001.pt")
    again = fit(network(), epochs=3, monitor=settings, resume=tmp_path / "checkpoint-00001.pt")
    assert without_cost(again.measurements) == without_cost(whole.measurements)


def test_the_table_survives_save_and_load(tmp_path):
    history = fit(network(), epochs=1, monitor=monitor(every=2, top=2))
    history.measurements[0]["curvature_trace"] = float("nan")  # saved as null, read as NaN
    loaded = cw.TrainingHistory.load(history.save(tmp_path / "history.json"))
    assert len(loaded.measurements) == 3
    for saved, read in zip(history.measurements, loaded.measurements):
        assert saved.keys() == read.keys()
        assert all(saved[key] == read[key] or (math.isnan(saved[key]) and math.isnan(read[key])) for key in saved)
    assert "sharpness_2" in loaded.measurements[0]
    older = history.to_dict()
    del older["measurements"]  # a history saved before the table: none
    assert cw.TrainingHistory.from_dict(older).measurements == []


@pytest.mark.parametrize("table, message", [
    ([{"epoch": 0.5}], r"measurements\[0\] must be a dict with a 'step'"),
    ([{"step": 1, "colour": 2.0}], r"measurements\[0\] must be a dict"),
    ([{"step": 2}, {"step": 2}], r"steps must be increasing whole numbers"),
    ([{"step": 1, "sharpness": "big"}], r"measurements\[0\]\['sharpness'\] must be a number"),
    ({"step": 1}, r"measurements must be a JSON array"),
])
def test_a_bad_table_is_named(table, message):
    content = cw.TrainingHistory().to_dict()
    content["measurements"] = table
    with pytest.raises(ValueError, match=message):
        cw.TrainingHistory.from_dict(content)


def test_the_curvature_events_count_the_measurements():
    events = []
    fit(network(), epochs=2, monitor=monitor(every=4), progress=events.append)
    stages = [(event.stage, event.step, event.total) for event in events]
    assert stages == [("curvature", 1, 3), ("train", 1, 2), ("curvature", 2, 3), ("curvature", 3, 3),
                      ("train", 2, 2)]  # steps 4, 8 and 10 (the last): its event follows the epoch's row
    last = events[3].partial
    assert isinstance(last, cw.TrainingHistory) and last.measurements[-1]["step"] == 10 and len(last) == 2

    by_epoch = []
    fit(network(), epochs=3, monitor=monitor(every=2, unit="epoch"), progress=by_epoch.append)
    assert [(event.stage, event.step, event.total) for event in by_epoch if event.stage == "curvature"] == \
        [("curvature", 1, 2), ("curvature", 2, 2)]


class OnlyIteration:
    """The training batches without a length: the fractional epochs are known once each epoch ends."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def test_a_loader_without_length():
    events = []
    history = fit(network(), OnlyIteration(batches()), epochs=2, monitor=monitor(every=3), progress=events.append)
    assert [row["step"] for row in history.measurements] == [3, 6, 9, 10]
    np.testing.assert_allclose(history.measured("epoch"), [0.6, 1.2, 1.8, 2.0])
    assert {event.total for event in events if event.stage == "curvature"} == {0}  # none planned: no length


def test_a_cancel_at_a_step_measurement_returns_the_partial_history(tmp_path):
    class CancelAtSecond:
        def __init__(self):
            self.measured = 0

        def __call__(self, event):
            self.measured += event.stage == "curvature"

        def is_set(self):
            return self.measured >= 4  # the second measurement of epoch 2 (step 8)

    token = CancelAtSecond()
    with pytest.raises(cw.Cancelled) as cancelled:
        fit(network(), epochs=3, monitor=monitor(every=2), progress=token, cancel=token, out_dir=tmp_path)
    history = cancelled.value.result
    assert isinstance(history, cw.TrainingHistory) and len(history) == 1  # the epoch finished
    assert [row["step"] for row in history.measurements] == [2, 4, 6, 8]  # and what the next one measured
    assert history.model.training
    saved = torch.load(tmp_path / "checkpoint-00001.pt", weights_only=True)
    assert [row["step"] for row in saved["history"]["measurements"]] == [2, 4]  # the checkpoint's epoch only
    assert saved["steps"] == 5


class Diverging(nn.Module):
    """The network, whose third forward pass (a training step of epoch 1) gives NaN: the weights follow."""

    def __init__(self):
        super().__init__()
        self.net, self.calls = network(), 0

    def forward(self, inputs):
        self.calls += self.training  # the measurements run in evaluation mode
        outputs = self.net(inputs)
        return outputs * float("nan") if self.training and self.calls == 3 else outputs


def test_a_run_diverging_mid_epoch_is_reported_as_such_not_as_a_failed_measurement():
    with pytest.raises(cw.TrainingDiverged, match="in epoch 1"):
        fit(Diverging(), epochs=2, monitor=monitor(every=1))


@pytest.mark.parametrize("unit", ["steps", "Epoch", 1, None])
def test_a_bad_unit_is_named(unit):
    with pytest.raises(ValueError, match=r"unit must be one of \('epoch', 'step'\)"):
        cw.CurvatureMonitor(unit=unit)


def test_tqdm_keeps_one_bar_per_stage():
    bar = TqdmProgress(file=io.StringIO())
    for event in [cw.ProgressEvent("curvature", 1, 4), cw.ProgressEvent("train", 1, 2),
                  cw.ProgressEvent("curvature", 2, 4), cw.ProgressEvent("curvature", 3, 4),
                  cw.ProgressEvent("train", 2, 2)]:
        bar(event)
    assert {stage: shown.n for stage, shown in bar.bars.items()} == {"curvature": 3, "train": 2}
    bar(cw.ProgressEvent("train", 1, 5))  # a new run of a stage: a new bar
    assert bar.bars["train"].total == 5 and bar.bars["train"].n == 1
    only = TqdmProgress(file=io.StringIO(), stages="train")
    only(cw.ProgressEvent("curvature", 1, 4))
    only(cw.ProgressEvent("train", 1, 2))
    assert list(only.bars) == ["train"]
    # desc and total belong to the main stage, though the measurements report first (every=1: as many as epochs)
    main = TqdmProgress(desc="training", total=2, main="train", file=io.StringIO())
    waiting = main._waiting
    main(cw.ProgressEvent("curvature", 1, 2))
    main(cw.ProgressEvent("train", 1, 2))
    assert main.bars["train"] is waiting and main.bars["train"].desc == "training"
    assert main.bars["curvature"].desc == "curvature" and main.bars["curvature"].n == 1
    with pytest.raises(TypeError, match="main must be None or a stage name"):
        TqdmProgress(main=3)
    bar.close()
    only.close()
    main.close()
    assert bar.bars == {}


def test_the_static_figure_draws_every_step_measurement():
    import matplotlib

    matplotlib.use("Agg")
    from curvwidgets import plots

    history = fit(network(), epochs=2, monitor=monitor(every=3))
    figure = cw.plot_training(history)
    _, _, sharpness_axis, overlap_axis = figure.axes
    sharpness, threshold = sharpness_axis.get_lines()
    np.testing.assert_array_equal(sharpness.get_xdata(), history.measured("epoch"))  # 0.6, 1.2, 1.8, 2.0
    np.testing.assert_array_equal(sharpness.get_ydata(), history.measured("sharpness"))
    np.testing.assert_array_equal(threshold.get_xdata(), [0.0, 1.0, 2.0])  # epoch 1's over (0, 1]: its steps' points
    np.testing.assert_array_equal(threshold.get_ydata()[1:], history["stability_threshold"])
    np.testing.assert_allclose(history["stability_threshold"], 3.8 / history["lr"] - 5e-4, rtol=1e-12)  # SGD, 0.9
    np.testing.assert_array_equal(history.measured("stability_threshold"), np.full(4, 3.8 / 0.1 - 5e-4))
    np.testing.assert_array_equal(overlap_axis.get_lines()[0].get_ydata(), history.measured("gradient_overlap"))
    matplotlib.pyplot.close(figure)
    assert plots.has_sharpness(cw.TrainingHistory(measurements=history.measurements))


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_weights_gone_non_finite_at_the_epochs_last_step_are_not_measured(unit):
    """The loss of the last step is finite (taken before it), its gradient NaN: the run ends as without a monitor."""
    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(32, 4, generator=generator), torch.randint(0, 3, (32,), generator=generator)

    def loss(outputs, labels):  # the square root's gradient at 0 is inf: NaN weights after the one step
        return nn.functional.cross_entropy(outputs, labels) + (outputs[:, 0] - outputs[:, 0].detach()).abs().sqrt().sum()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    history = cw.train(model, ([(inputs, targets)], [(inputs, targets)]), epochs=1, loss_fn=loss, schedule="constant",
                       optimizer_kwargs={"lr": 0.1, "momentum": 0.0}, seed=0,
                       monitor=cw.CurvatureMonitor(unit=unit, data=[(inputs, targets)], num_samples=None))
    assert np.isfinite(history["train_loss"][0]) and not torch.isfinite(model[0].weight).all()
    assert np.isnan(history["sharpness"][0]) and history.measurements == []


def test_a_step_monitor_reading_the_training_loader_itself_leaves_its_epoch_whole():
    """A DataLoader with persistent workers restarts its one iterator on iter(): the subset is read before epoch 1."""
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(0)
    samples = TensorDataset(torch.randn(64, 4, generator=generator), torch.randint(0, 3, (64,), generator=generator))
    test = [samples[:]]
    runs = {}
    for measured in (True, False):
        loader = DataLoader(samples, batch_size=8, num_workers=1, persistent_workers=True)
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        monitor = cw.CurvatureMonitor(every=3, unit="step", data=loader, num_samples=16) if measured else None
        runs[measured] = cw.train(model, (loader, test), epochs=1, schedule="constant", seed=0,
                                  optimizer_kwargs={"lr": 0.1}, monitor=monitor)
    assert runs[True].rows[0]["train_loss"] == runs[False].rows[0]["train_loss"]
    assert runs[True].measured("step").tolist() == [3.0, 6.0, 8.0]  # all 8 steps of the 64 samples


def test_a_subset_the_data_cannot_hold_fails_before_the_first_step(tmp_path):
    model = network()
    before = state(model)
    with pytest.raises(ValueError, match=r"num_samples must be an int in \[1, 16\]"):
        fit(model, monitor=monitor(num_samples=17), out_dir=str(tmp_path))
    assert all(torch.equal(value, before[name]) for name, value in state(model).items())  # no step was taken
    assert not list(tmp_path.rglob("*.pt"))


def test_a_subset_too_large_to_keep_its_graphs_measures_the_same(monkeypatch):
    """Above RETAINED_SAMPLES the passes run again for each product: the same measurements, to rounding."""
    from curvwidgets.training import monitor as monitor_module

    kept = fit(network(), monitor=monitor(every=3))
    monkeypatch.setattr(monitor_module, "RETAINED_SAMPLES", 8)  # the subset holds 16
    again = fit(network(), monitor=monitor(every=3))
    for column in ("sharpness", "gradient_overlap"):
        np.testing.assert_allclose(again.measured(column), kept.measured(column), rtol=1e-8)
    assert again.measured("step").tolist() == kept.measured("step").tolist()

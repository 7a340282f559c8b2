"""LandscapeWidget: marks hold exactly what cw.loss_landscape computes; picking, toggles, plane, live fill, cancel."""

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.training import trained as trained_module
from curvwidgets.widgets import LandscapeWidget
from curvwidgets.widgets._landscape_task import stem_directions
from curvwidgets.widgets.landscape import CURVE_COLORS, DIVERGED_COLOR, MODEL_REACH, cell_edges
from curvwidgets.widgets._landscape_task import stem_label

from gates import Gate

STEPS, DIST, N_POINTS, CHUNK = 8, 0.5, 7, 3
OPTIONS = dict(dist=DIST, n_points=N_POINTS, points_per_pass=CHUNK)  # same for the widget and cw.loss_landscape


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def batches(generator: torch.Generator) -> list:
    return [(torch.randn(16, 5, generator=generator), torch.randint(0, 3, (16,), generator=generator))
            for _ in range(2)]


@pytest.fixture(scope="module")
def model_and_data():
    generator = torch.Generator().manual_seed(0)
    train, test = batches(generator), batches(generator)
    return tiny_model(), (train, test)


@pytest.fixture(scope="module")
def spectrum(model_and_data):
    model, (train, _) = model_and_data
    return cw.spectrum(model, train, steps=STEPS, seed=1, backend="double-backward", save_vectors=True)


@pytest.fixture(scope="module")
def eigen(spectrum):
    """Every eigenvector direction in the picker's order, largest Ritz value first, as the core names them.

    The upper half is ``largest 1, 2, ...``; the lower half ends with ``smallest 1``, the most negative.
    """
    half = -(-STEPS // 2)
    core = cw.eigen_directions(spectrum, largest=half, smallest=STEPS - half)
    return core[:half] + core[half:][::-1]


def drawn(marks, offsets):
    """What ``marks`` draw, as an array ``(len(marks), offsets.size)`` with NaN at the points left out.

    Also checks what bqplot needs to draw them: only finite points, at offsets in order.
    """
    rows = np.full((len(marks), offsets.size), np.nan)
    for row, mark in zip(rows, marks):
        x, y = np.asarray(mark.x, dtype=float), np.asarray(mark.y, dtype=float)
        assert np.isfinite(x).all() and np.isfinite(y).all(), "a mark was sent a non-finite point"
        row[np.searchsorted(offsets, x)] = y
    return rows


def drawn_curves(widget):
    return drawn(widget.curves, widget.result.offsets)


@pytest.fixture(scope="module")
def widget(model_and_data, spectrum):
    model, data = model_and_data
    widget = LandscapeWidget(model, data, spectrum=spectrum, **OPTIONS)
    widget.selected = [0, 2]
    assert widget.run(block=True)
    return widget


def record_draws(widget, after_draw=None):
    """Wrap ``widget._show`` (every draw of a landscape, partial or final) to record what the figures then show.

    Returns the list that gets, after each draw, ``(done, curves, heatmap colour)``: the points computed, the
    curves as :func:`drawn` reads them, and a copy of the heatmap's colour array (None while it is hidden).
    ``after_draw(done)`` is called after each record.
    """
    draws, show = [], widget._show

    def recording(landscape):
        show(landscape)
        if landscape is not None:
            colour = np.array(widget.heatmap.color) if widget.heatmap.visible else None
            draws.append((int(landscape.done.sum()), drawn(widget.curves, landscape.offsets), colour))
            if after_draw is not None:
                after_draw(draws[-1][0])

    widget._show = recording
    return draws


def test_marks_hold_the_landscape_along_the_picked_eigenvectors(widget, model_and_data, eigen):
    model, data = model_and_data
    reference = cw.loss_landscape(model, data, [eigen[0], eigen[2]], **OPTIONS)
    result = widget.result
    assert result.labels == reference.labels == (eigen[0].label, eigen[2].label)
    np.testing.assert_array_equal(result.curvatures, [eigen[0].curvature, eigen[2].curvature])
    assert set(result.values) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    for metric, values in reference.values.items():
        np.testing.assert_array_equal(result[metric], values)
    for curve in widget.curves:
        np.testing.assert_array_equal(curve.x, reference.offsets)
    np.testing.assert_array_equal(drawn_curves(widget), reference["train_loss"])
    assert all(label in widget.legend.value for label in reference.labels)
    assert widget.view.children == (widget.line_figure, widget.legend)


def test_quadratic_models_are_the_ritz_values_times_half_t_squared(widget, spectrum):
    thetas = np.sort(spectrum.lanczos.nodes(0))[::-1][[0, 2]]
    offsets = np.linspace(-DIST, DIST, N_POINTS)
    at_zero = widget.result["train_loss"][:, N_POINTS // 2]
    expected = at_zero[:, None] + thetas[:, None] * offsets[None, :] ** 2 / 2
    np.testing.assert_allclose(drawn(widget.quadratic_lines, offsets), expected, rtol=1e-12)
    assert [line.colors[0] for line in widget.quadratic_lines] == list(CURVE_COLORS[:2])
    assert [curve.colors[0] for curve in widget.curves] == list(CURVE_COLORS[:2])
    assert all(line.line_style == "dashed" for line in widget.quadratic_lines)
    assert "quadratic model" in widget.legend.value
    # the value axis spans the curves; the steeper model is clipped rather than flattening them
    low, high = widget.curves[0].scales["y"].min, widget.curves[0].scales["y"].max
    values = widget.result["train_loss"]
    assert low < values.min() < values.max() < high and high - low < 1.2 * (values.max() - values.min())
    assert thetas[0] > 0.3 and abs(thetas[1] - thetas[0]) > 0.1  # two distinct, clearly curved models


def test_the_picker_shows_the_ritz_values_largest_first(widget, spectrum):
    order = np.argsort(-spectrum.lanczos.nodes(0), kind="stable")
    nodes, weights = spectrum.lanczos.nodes(0)[order], spectrum.lanczos.weights(0)[order]
    assert np.all(np.diff(nodes) < 0)
    np.testing.assert_array_equal(widget.stem_picker.x, nodes)
    np.testing.assert_array_equal(widget.stem_picker.y, weights)
    np.testing.assert_array_equal(np.asarray(widget.stem_lines.x).reshape(-1, 2), np.stack([nodes, nodes], 1))
    np.testing.assert_array_equal(np.asarray(widget.stem_lines.y).reshape(-1, 2)[:, 1], weights)
    assert widget.stem_picker.interactions["click"] == "select"


def test_a_new_spectrum_picks_its_largest_and_smallest_stems(spectrum, eigen):
    widget = LandscapeWidget(spectrum=spectrum)
    assert widget.selected == [0, STEPS - 1]
    assert widget.picked_labels.value == f"picked: {eigen[0].label}; {eigen[-1].label}"


def test_clicking_stems_changes_the_directions(model_and_data, spectrum, eigen):
    model, data = model_and_data
    widget = LandscapeWidget(model, data, spectrum=spectrum, **OPTIONS)
    widget.stem_picker.selected = np.array([3, 1], dtype=np.uint32)  # what a click then a ctrl-click send
    assert widget.selected == [1, 3] and eigen[3].label in widget.picked_labels.value
    widget.run(block=True)
    assert widget.result.labels == (eigen[1].label, eigen[3].label)
    np.testing.assert_array_equal(drawn_curves(widget), cw.loss_landscape(model, data, [eigen[1], eigen[3]],
                                                                           **OPTIONS)["train_loss"])

    widget.stem_picker.selected = np.array([3], dtype=np.uint32)  # ctrl-click on 1 again: removed
    widget.run(block=True)
    assert widget.result.labels == (eigen[3].label,)
    assert len(widget.curves) == len(widget.line_figure.marks) // 2 == 1
    np.testing.assert_array_equal(drawn_curves(widget), widget.result["train_loss"])


def test_selected_is_settable_and_checked(spectrum):
    widget = LandscapeWidget(spectrum=spectrum)
    widget.selected = [5, 0, 5]
    np.testing.assert_array_equal(widget.stem_picker.selected, [0, 5])
    widget.selected = []
    assert widget.stem_picker.selected is None and "click a stem" in widget.picked_labels.value
    for bad in ([STEPS], [-1], [1.0], [True]):
        with pytest.raises(ValueError, match=r"selected must list stem positions, ints in \[0, 8\)"):
            widget.selected = bad


def test_stems_are_labelled_from_the_nearer_end_as_the_core_and_cli_name_them(spectrum, eigen):
    widget = LandscapeWidget(spectrum=spectrum)
    nodes = np.asarray(widget.stem_picker.x)
    labels = [stem_label(position, float(nodes[position]), STEPS) for position in range(STEPS)]
    assert labels == [direction.label for direction in eigen]
    assert labels[0].startswith("largest 1 ") and labels[-1].startswith("smallest 1 ")
    assert labels[STEPS // 2 - 1].startswith(f"largest {STEPS // 2} ") and labels[STEPS // 2].startswith(
        f"smallest {STEPS - STEPS // 2} ")
    assert stem_label(2, 1.0, 5) == "largest 3 (theta = 1)" and stem_label(3, 1.0, 5) == "smallest 2 (theta = 1)"


def test_split_and_metric_toggles_redraw_without_recomputing(widget):
    result, event = widget.result, widget.runner.last_event
    widget.split.value = "test"
    np.testing.assert_array_equal(drawn_curves(widget), result["test_loss"])
    np.testing.assert_allclose(drawn(widget.quadratic_lines, result.offsets), result.quadratic_model("test_loss"),
                               rtol=1e-12)
    widget.metric.value = "accuracy"
    np.testing.assert_array_equal(drawn_curves(widget), result["test_accuracy"])
    assert all(np.asarray(line.y).size == 0 for line in widget.quadratic_lines)
    assert widget.value_axis.label == "test accuracy"
    widget.split.value = "train"
    np.testing.assert_array_equal(drawn_curves(widget), result["train_accuracy"])
    widget.metric.value = "loss"
    np.testing.assert_array_equal(drawn_curves(widget), result["train_loss"])
    assert widget.result is result and widget.runner.last_event is event  # nothing was computed


def test_a_landscape_without_test_data_says_so(model_and_data, spectrum):
    model, (train, _) = model_and_data
    widget = LandscapeWidget(model, train, spectrum=spectrum, split="test", **OPTIONS)
    widget.run(block=True)
    assert set(widget.result.values) == {"train_loss", "train_accuracy"}
    assert widget.curves == () and "no test metrics" in widget.note.value
    widget.split.value = "train"
    np.testing.assert_array_equal(drawn_curves(widget), widget.result["train_loss"])
    assert widget.note.value == ""


@pytest.mark.parametrize("kind, filter_normalized, label", [("random", False, "random"),
                                                           ("filter", True, "filter-normalised")])
def test_random_and_filter_normalised_directions(model_and_data, kind, filter_normalized, label):
    model, data = model_and_data
    widget = LandscapeWidget(model, data, directions=kind, count=2, seed=3, **OPTIONS)
    widget.run(block=True)
    chosen = cw.random_directions(model, 2, seed=3, filter_normalized=filter_normalized)
    reference = cw.loss_landscape(model, data, chosen, **OPTIONS)
    assert widget.result.labels == (f"{label} 1", f"{label} 2")
    np.testing.assert_array_equal(drawn_curves(widget), reference["train_loss"])
    assert np.isnan(widget.result.curvatures).all()
    assert all(np.asarray(line.y).size == 0 for line in widget.quadratic_lines)
    assert "quadratic model" not in widget.legend.value


def batch_norm_model() -> nn.Module:
    """A small network with BatchNorm whose running statistics are not the initial ones (so that states move)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 3))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 5) * 2 + 1)
    return model.eval()


def assert_same_landscape(result, reference):
    """Same labels, numbers and direction options as the API's landscape."""
    assert result.labels == reference.labels
    assert result.meta["direction_options"] == reference.meta["direction_options"]
    assert set(result.values) == set(reference.values)
    for metric, values in reference.values.items():
        np.testing.assert_array_equal(result[metric], values)


@pytest.mark.parametrize("options", [
    {},  # the defaults: filter-normalised, biases and BatchNorm not moved, as before these controls
    {"norm": "layer", "one_axis": "weights", "states": True},
    {"norm": "dfilter"},
    {"norm": "weight", "one_axis": "weights"},
    {"norm": "dlayer", "one_axis": "weights", "states": True},
])
def test_normalised_directions_take_their_options_to_the_result(model_and_data, options):
    _, data = model_and_data
    model = batch_norm_model()
    widget = LandscapeWidget(model, data, directions="filter", count=2, seed=4, **options, **OPTIONS)
    assert widget.run(block=True) and widget.runner.outcome == "done"
    api = {"filter_normalized": True} if not options else options
    reference = cw.loss_landscape(model, data, cw.random_directions(model, 2, seed=4, **api), **OPTIONS)
    assert_same_landscape(widget.result, reference)
    recorded = widget.result.meta["direction_options"][0]
    expected = {"norm": "filter", "one_axis": "zero", "states": False, **options}
    assert {key: recorded[key] for key in expected} == expected
    assert widget.result.meta["direction_kind"] == "filter"
    if options.get("states"):  # the running statistics moved: other numbers than without them
        without = cw.loss_landscape(model, data, cw.random_directions(model, 2, seed=4, **{**options, "states": False}),
                                    **OPTIONS)
        assert not np.array_equal(widget.result["train_loss"], without["train_loss"])


def test_the_normalisation_controls_show_for_normalised_directions_only_and_reach_the_run(model_and_data):
    _, data = model_and_data
    model = batch_norm_model()
    widget = LandscapeWidget(model, data, directions="random", **OPTIONS)
    row = widget.normalisation
    assert row.children == (widget.norm, widget.one_axis, widget.states) and row in widget.children
    assert row.layout.display == "none"
    assert (widget.norm.value, widget.one_axis.value, widget.states.value) == ("filter", "zero", False)
    assert widget.states.disabled  # moving the running statistics needs one_axis="weights"
    widget.directions.value = "filter"
    assert row.layout.display == ""
    widget.norm.value, widget.one_axis.value = "layer", "weights"
    assert not widget.states.disabled
    widget.states.value = True
    widget.run(block=True)
    chosen = cw.random_directions(model, 2, norm="layer", one_axis="weights", states=True)
    assert_same_landscape(widget.result, cw.loss_landscape(model, data, chosen, **OPTIONS))

    widget.one_axis.value = "zero"  # the box is unticked with it
    assert widget.states.disabled and not widget.states.value
    widget.one_axis.value = "weights"
    widget.states.value = True
    widget.directions.value = "random"  # the row hides, and its options do not apply to unit directions
    assert row.layout.display == "none"
    widget.run(block=True)
    assert_same_landscape(widget.result, cw.loss_landscape(model, data, cw.random_directions(model, 2), **OPTIONS))
    assert widget.result.meta["direction_options"][0]["norm"] == "unit"


def test_moving_running_statistics_of_a_model_without_batch_norm_says_so_in_the_widget(model_and_data):
    model, data = model_and_data
    widget = LandscapeWidget(model, data, directions="filter", one_axis="weights", states=True, **OPTIONS)
    assert widget.run()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "failed" and "no BatchNorm running statistics" in widget.runner.error_message.value


@pytest.mark.parametrize("options, message", [
    (dict(norm="unit"), "norm must be one of"),
    (dict(one_axis="biasbn"), "one_axis must be one of"),
    (dict(states="yes"), "states must be True or False"),
    (dict(states=True), "needs one_axis='weights'"),
])
def test_bad_normalisation_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        LandscapeWidget(directions="filter", **options)


def test_the_plane_heatmap_holds_the_grid(model_and_data, spectrum, eigen):
    model, data = model_and_data
    widget = LandscapeWidget(model, data, spectrum=spectrum, plane=True, **OPTIONS)
    widget.runner.min_interval = 0.0
    draws = record_draws(widget)
    widget.run(block=True)
    reference = cw.loss_landscape(model, data, [eigen[0], eigen[-1]], plane=True, **OPTIONS)
    assert widget.result.kind == "plane" and widget.result.labels == reference.labels
    np.testing.assert_array_equal(widget.heatmap.color, reference["train_loss"].T)
    offsets, half = reference.offsets, DIST / (N_POINTS - 1)
    edges = np.concatenate([offsets - half, [DIST + half]])
    np.testing.assert_allclose(widget.heatmap.row, edges, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(widget.heatmap.column, edges, rtol=1e-12, atol=1e-15)
    for scale in (widget.heatmap.scales["row"], widget.heatmap.scales["column"]):
        np.testing.assert_allclose([scale.min, scale.max], [-DIST - half, DIST + half], rtol=1e-12)
    colour = widget.heatmap.scales["color"]
    assert (colour.min, colour.max) == (reference["train_loss"].min(), reference["train_loss"].max())
    assert (widget.plane_x_axis.label, widget.plane_y_axis.label) == (eigen[0].label, eigen[-1].label)
    assert widget.view.children == (widget.plane_figure, widget.legend)

    # filled as the points arrived: each draw shows the columns (points of the first direction) computed in full,
    # never a NaN; nothing before the first two columns (bqplot would read one column as a row)
    # the events of the passes, then the result
    assert [done for done, _, _ in draws] == list(range(0, N_POINTS ** 2, CHUNK)) + [N_POINTS ** 2] * 2
    for done, _, colour in draws:
        columns = done // N_POINTS
        if columns < 2:
            assert colour is None
        else:
            np.testing.assert_array_equal(colour, reference["train_loss"][:columns].T)

    widget.metric.value = "accuracy"
    np.testing.assert_array_equal(widget.heatmap.color, reference["train_accuracy"].T)
    assert widget.color_axis.label == "train accuracy"
    widget.plane.value = False
    widget.run(block=True)
    assert widget.view.children == (widget.line_figure, widget.legend)


def test_cell_edges_are_half_a_spacing_around_each_point():
    np.testing.assert_allclose(cell_edges(np.linspace(-1.0, 1.0, 5)), [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25])


def test_curves_fill_in_as_points_arrive(model_and_data, spectrum):
    model, data = model_and_data
    widget = LandscapeWidget(model, data, spectrum=spectrum, **OPTIONS)
    widget.runner.min_interval = 0.0
    x_ranges = []   # one point alone must not collapse the t axis to a value (bqplot then draws no ticks)
    draws = record_draws(widget, after_draw=lambda done: x_ranges.append(
        (widget._line_scales["x"].min, widget._line_scales["x"].max)))
    widget.run(block=True)
    assert all(low < -DIST and high > DIST for low, high in x_ranges)
    total = 2 * N_POINTS
    final = widget.result["train_loss"].reshape(-1)
    assert [done for done, _, _ in draws] == list(range(0, total, CHUNK)) + [total] * 2  # passes, then the result
    for done, curves, _ in draws:  # each draw: the points done so far, in order, and nothing after them
        np.testing.assert_array_equal(curves.reshape(-1)[:done], final[:done])
        assert np.isnan(curves.reshape(-1)[done:]).all()


def test_cancel_mid_run_keeps_a_partial_landscape_and_a_second_run_works(model_and_data, spectrum):
    model, data = model_and_data
    widget = LandscapeWidget(model, data, spectrum=spectrum, **OPTIONS)
    widget.runner.min_interval = 0.0
    cancels = []  # the first run only
    record_draws(widget, after_draw=lambda done: done == 2 * CHUNK and not cancels and cancels.append(
        widget.runner.cancel()))
    assert widget.run()
    assert widget.runner.join(timeout=60)
    partial = widget.result
    assert widget.runner.outcome == "cancelled" and isinstance(partial, cw.Landscape)
    assert partial.done.sum() == 2 * CHUNK and partial.done.reshape(-1)[: 2 * CHUNK].all()
    whole = cw.loss_landscape(model, data, stem_directions(spectrum, [0, STEPS - 1]), **OPTIONS)
    for metric, values in whole.values.items():
        np.testing.assert_array_equal(partial[metric][partial.done], values[partial.done])
        assert np.isnan(partial[metric][~partial.done]).all()
    np.testing.assert_array_equal(drawn_curves(widget), partial["train_loss"])

    assert widget.run(block=True)
    assert widget.runner.outcome == "done" and widget.result.done.all()
    np.testing.assert_array_equal(drawn_curves(widget), whole["train_loss"])


@pytest.mark.parametrize("settings, message", [
    (dict(spectrum=None), "eigenvector directions need a Spectrum"),
    (dict(selected=[]), "click at least one stem"),
    (dict(selected=[0, 1, 2], plane=True), "exactly two directions"),
    (dict(model=None), "give a checkpoint path"),
    (dict(directions="random", count=0), "count must be an int &gt;= 1"),
    (dict(n_points=1), "n_points must be an int &gt;= 2"),
])
def test_errors_appear_in_the_error_area(model_and_data, spectrum, settings, message):
    model, data = model_and_data
    settings = {"model": model, "spectrum": spectrum, **settings}
    selected = settings.pop("selected", None)
    widget = LandscapeWidget(settings.pop("model"), data, **{**OPTIONS, **settings})
    if selected is not None:
        widget.selected = selected
    assert widget.run()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "failed" and isinstance(widget.runner.error, ValueError)
    assert message in widget.runner.error_message.value and widget.runner.error_box.layout.display == ""
    assert widget.result is None and widget.curves == ()


def test_the_kernel_stays_free_while_a_landscape_runs_and_a_second_run_is_refused(model_and_data):
    _, data = model_and_data
    gate = Gate()
    widget = LandscapeWidget(nn.Sequential(gate, tiny_model()), data, directions="random", **OPTIONS)
    assert widget.run()  # returns at once: the worker waits at the gate
    assert widget.runner.running and widget.runner.button.description == "Cancel"
    assert not widget.run()
    gate.gate.set()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "done" and widget.result.done.all()


def test_the_spectrum_can_be_set_later_as_an_object_or_a_file(model_and_data, spectrum, tmp_path):
    widget = LandscapeWidget()
    assert np.asarray(widget.stem_picker.x).size == 0 and "no spectrum" in widget.picked_labels.value
    widget.spectrum = spectrum
    assert widget.spectrum is spectrum and widget.selected == [0, STEPS - 1]
    np.testing.assert_array_equal(np.sort(widget.stem_picker.x), spectrum.lanczos.nodes(0))

    path = spectrum.save(tmp_path / "spectrum")
    widget.spectrum = str(path)
    np.testing.assert_array_equal(widget.spectrum.ritz_vectors, spectrum.ritz_vectors)
    np.testing.assert_array_equal(np.sort(widget.stem_picker.x), spectrum.lanczos.nodes(0))

    with pytest.raises(ValueError, match="spectrum has no Ritz vectors"):
        widget.spectrum = spectrum.truncate(3)
    with pytest.raises(TypeError, match="spectrum must be a curvwidgets Spectrum"):
        widget.spectrum = 3
    with pytest.raises(FileNotFoundError):
        widget.spectrum = str(tmp_path / "missing.npz")
    widget.spectrum = None
    assert np.asarray(widget.stem_picker.x).size == 0 and widget.selected == []


def test_a_new_spectrum_says_the_curves_drawn_are_of_the_one_before_until_the_next_run(widget, spectrum):
    widget.spectrum = spectrum   # set again (a Dashboard hands over each spectrum it computes)
    assert "computed before the spectrum changed" in widget.note.value
    assert widget.run(block=True) and widget.note.value == ""


def test_stems_of_another_start_vector(model_and_data):
    model, data = model_and_data
    spectrum = cw.spectrum(model, data[0], steps=5, num_vectors=2, seed=2, backend="double-backward",
                           save_vectors=True)
    widget = LandscapeWidget(model, data, spectrum=spectrum, **OPTIONS)
    assert [value for _, value in widget.run_picker.options] == [0, 1]
    widget.run_picker.value = 1
    nodes = spectrum.lanczos.nodes(1)
    np.testing.assert_array_equal(widget.stem_picker.x, np.sort(nodes)[::-1])
    assert widget.selected == [0, 4]
    widget.run(block=True)
    np.testing.assert_array_equal(widget.result.curvatures, [nodes.max(), nodes.min()])
    second = cw.eigen_directions(spectrum, largest=1, smallest=1, run=1)
    np.testing.assert_array_equal(drawn_curves(widget), cw.loss_landscape(model, data, second,
                                                                           **OPTIONS)["train_loss"])


def test_stem_directions_are_the_core_eigen_directions(spectrum, eigen):
    picked = stem_directions(spectrum, range(STEPS))
    for mine, core in zip(picked, eigen):
        assert (mine.label, mine.curvature) == (core.label, core.curvature)
        torch.testing.assert_close(mine.vector, core.vector, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"stem positions must be ints in \[0, 8\)"):
        stem_directions(spectrum, [STEPS])


@pytest.mark.parametrize("name, value", [("directions", "eigenvectors"), ("split", "val"), ("metric", "acc"),
                                         ("bn", "update")])
def test_bad_choices_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=f"{name} must be one of"):
        LandscapeWidget(**{name: value})


def test_a_checkpoint_is_loaded_once_and_recorded(model_and_data, monkeypatch):
    model, data = model_and_data
    loads = []

    def fake_load_trained(path, device=None):
        loads.append((path, device))
        return cw.Trained(model, data, path, 7, {"model": "tiny", "data": "toy", "seed": 0}, cw.TrainingHistory())

    monkeypatch.setattr(trained_module, "load_trained", fake_load_trained)
    monkeypatch.setattr(cw.training, "load_trained", fake_load_trained)
    widget = LandscapeWidget(checkpoint="runs/tiny", device="cpu", directions="random", **OPTIONS)
    widget.run(block=True)
    widget.run(block=True)
    assert loads == [("runs/tiny", "cpu")]
    assert widget.result.meta["checkpoint"] == "runs/tiny" and widget.result.meta["epoch"] == 7
    reference = cw.loss_landscape(model, data, cw.random_directions(model, 2), **OPTIONS)
    np.testing.assert_array_equal(widget.result["train_loss"], reference["train_loss"])


def test_points_where_the_loss_overflows_are_drawn_as_diverged_not_as_pending():
    model = nn.Linear(1, 1)  # outputs = t (v_w + v_b) on inputs 1: exp overflows float32 on one side
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    data = [(torch.ones(4, 1), torch.zeros(4, dtype=torch.long))]
    options = dict(directions="random", count=2, dist=1000.0, n_points=5, loss_fn=lambda o, t: o.exp().mean())
    line = LandscapeWidget(model, data, **options)
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        assert line.run(block=True)
    result = line.result
    assert result.done.all() and result.not_finite.any() and not result.not_finite.all()
    rows, columns = np.nonzero(result.not_finite)
    np.testing.assert_array_equal(np.sort(line.diverged.x), np.sort(result.offsets[columns]))
    low, high = line.value_axis.scale.min, line.value_axis.scale.max
    assert np.all(np.asarray(line.diverged.y) == high - 0.03 * (high - low))  # along the top, above the data
    assert np.nanmax(drawn_curves(line)) < high - 0.03 * (high - low)
    curves = drawn_curves(line)
    np.testing.assert_array_equal(np.isnan(curves), result.not_finite)  # only the diverged points are left out
    assert "NaN or infinite" in line.note.value and "red crosses" in line.note.value
    assert "loss NaN or infinite" in line.legend.value

    plane = LandscapeWidget(model, data, **{**options, "plane": True})
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        assert plane.run(block=True)
    colour = np.asarray(plane.heatmap.color, dtype=float)
    assert plane.heatmap.visible and colour.shape == (5, 5)  # every column, diverged or not
    np.testing.assert_array_equal(np.isnan(colour), plane.result.not_finite.T)
    assert plane.heatmap.null_color == DIVERGED_COLOR and "red cells" in plane.note.value


def test_a_quadratic_model_far_beyond_the_axis_is_cut_where_a_browser_still_draws_it():
    offsets = np.array([-1e36, 0.0, 1e36])  # theta t^2 / 2 = 5e71: no SVG coordinate a browser parses
    landscape = cw.Landscape(offsets, ("largest 1",), np.array([1.0]), "line",
                             {"train_loss": np.array([[2.0, 1.0, 3.0]]), "train_accuracy": np.array([[0.5] * 3])})
    widget = LandscapeWidget()
    widget._show(landscape)
    low, high = widget.value_axis.scale.min, widget.value_axis.scale.max
    reach = MODEL_REACH * (high - low)
    np.testing.assert_array_equal(widget.quadratic_lines[0].y, [high + reach, 1.0, high + reach])
    np.testing.assert_array_equal(widget.curves[0].y, [2.0, 1.0, 3.0])

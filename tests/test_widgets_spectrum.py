"""SpectrumWidget: marks hold exactly what the Spectrum says; sliders, log toggle, live growth, cancel, errors, save."""

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.linalg.densities import default_sigma
from curvwidgets.training import trained as trained_module
from curvwidgets.widgets import SpectrumWidget

from gates import Gate

STEPS, VECTORS = 16, 2
OPTIONS = dict(steps=STEPS, num_vectors=VECTORS, seed=1, backend="double-backward")


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


@pytest.fixture(scope="module")
def model_and_data():
    generator = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 5, generator=generator), torch.randint(0, 3, (16,), generator=generator))
            for _ in range(2)]
    return tiny_model(), data


@pytest.fixture(scope="module")
def reference(model_and_data):
    model, data = model_and_data
    return cw.spectrum(model, data, **OPTIONS)


@pytest.fixture(scope="module")
def widget(model_and_data):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    assert widget.run(block=True)
    return widget


def expected_convergence(spectrum, run):
    """Ritz values of ``spectrum.truncate(k)`` for k = 1..m, and their converged flags, written out."""
    steps, values, flags = [], [], []
    for k in range(1, spectrum.steps + 1):
        shown = cw.Spectrum(spectrum.lanczos.truncate(k))
        steps += [k] * k
        values += list(shown.ritz_values[run, :k])
        flags += list(shown.converged()[run, :k])
    return np.array(steps), np.array(values), np.array(flags)


def assert_shows(widget, shown, sigma):
    nodes, weights = shown.stem()
    np.testing.assert_array_equal(widget.stem_heads.x, nodes)
    np.testing.assert_array_equal(widget.stem_heads.y, weights)
    np.testing.assert_array_equal(np.asarray(widget.stem_lines.x).reshape(-1, 2), np.stack([nodes, nodes], 1))
    grid, density = shown.smooth(sigma=sigma)
    np.testing.assert_allclose(widget.density_line.x, grid, rtol=1e-12)
    np.testing.assert_allclose(widget.density_line.y, density, rtol=1e-12)
    assert_band(widget, shown, sigma)
    assert widget.summary_values == shown.summary()


def assert_band(widget, shown, sigma):
    """The band is ``density ± 1 standard error`` of ``shown.smooth_spread`` (the static plot's), clipped at 0."""
    grid, density, error = shown.smooth_spread(sigma=sigma)
    band_x, band_y = np.asarray(widget.density_band.x), np.asarray(widget.density_band.y)
    if shown.num_vectors == 1:
        assert np.isnan(error).all() and band_x.shape == band_y.shape == (0,)
        assert "no error bars" in widget.legend.value and " s.e. over" not in widget.legend.value
        return
    atol = 1e-12 * np.max(density + error)
    np.testing.assert_allclose(band_x, grid, rtol=1e-12)
    np.testing.assert_allclose(band_y[0], np.maximum(density - error, 0.0), rtol=1e-12, atol=atol)
    np.testing.assert_allclose(band_y[1], density + error, rtol=1e-12, atol=atol)
    assert widget.density_band.scales["y"].max >= band_y[1].max()  # the density axis holds the band's top
    assert f"± 1 s.e. over {shown.num_vectors} start vectors" in widget.legend.value


def test_marks_hold_the_spectrum(widget, reference):
    np.testing.assert_allclose(widget.result.ritz_values, reference.ritz_values, rtol=1e-10, atol=1e-12)
    result = widget.result
    sigma = default_sigma(result.stem()[0], STEPS)
    assert widget.sigma_slider.value == pytest.approx(sigma, rel=1e-12)
    assert_shows(widget, result, sigma)
    summary = result.summary()
    assert f"{summary['lambda_max']:.6g}" in widget.summary.value
    assert f"{summary['negative_mass']:.2%}" in widget.summary.value
    steps, values, flags = expected_convergence(result, 0)
    np.testing.assert_array_equal(widget.converged_marks.x, steps[flags])
    np.testing.assert_allclose(widget.converged_marks.y, values[flags], rtol=1e-12)
    np.testing.assert_array_equal(widget.pending_marks.x, steps[~flags])
    np.testing.assert_allclose(widget.pending_marks.y, values[~flags], rtol=1e-12)
    assert flags.any() and not flags.all()  # the plot has both kinds to tell apart
    assert (widget.step_slider.max, widget.step_slider.value) == (STEPS, STEPS)


def test_step_slider_log_toggle_and_sigma_redraw_from_the_result(widget):
    result = widget.result
    widget.step_slider.value = 3
    assert_shows(widget, result.truncate(3), widget.sigma_slider.value)
    np.testing.assert_array_equal(widget.step_marker.x, [3, 3])

    scale = widget.stem_heads.scales["y"]
    widget.weight_scale.value = "log"
    nodes, weights = result.truncate(3).stem()
    floor = max(weights[weights > 0].min() / 2, 1e-12)
    np.testing.assert_array_equal(np.asarray(widget.stem_lines.y).reshape(-1, 2)[:, 0],
                                  np.full(nodes.size, np.log10(floor)))
    np.testing.assert_allclose(widget.stem_heads.y, np.log10(np.maximum(weights, floor)), rtol=1e-15)
    assert widget.weight_axis.label == "log₁₀ Gauss weight"
    assert scale.min < np.log10(floor) and scale.max > np.log10(weights.max())
    assert widget.stem_heads.scales["y"] is scale is widget.weight_axis.scale  # one scale: never swapped

    widget.weight_scale.value = "linear"
    np.testing.assert_array_equal(np.asarray(widget.stem_lines.y).reshape(-1, 2)[:, 0], np.zeros(nodes.size))
    np.testing.assert_array_equal(widget.stem_heads.y, weights)
    assert widget.weight_axis.label == "Gauss weight" and scale.min == 0.0 and scale.max > weights.max()

    widget.sigma_slider.value = 2.5 * widget.sigma_slider.value
    assert_shows(widget, result.truncate(3), widget.sigma_slider.value)
    widget.step_slider.value = STEPS


def test_convergence_of_another_start_vector(widget):
    widget.run_picker.value = 1
    steps, values, flags = expected_convergence(widget.result, 1)
    np.testing.assert_allclose(np.sort(np.concatenate([widget.converged_marks.y, widget.pending_marks.y])),
                               np.sort(values), rtol=1e-12)
    np.testing.assert_array_equal(widget.converged_marks.x, steps[flags])
    assert_band(widget, widget.result, widget.sigma_slider.value)  # the band is over every start vector
    widget.run_picker.value = 0


def test_stems_grow_as_each_step_lands(model_and_data):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.runner.min_interval = 0.0
    sizes = []
    widget.stem_heads.observe(lambda change: sizes.append(len(change["new"])), "x")
    widget.run(block=True)
    assert sizes == [VECTORS * k for k in range(1, STEPS + 1)]


def test_the_convergence_plot_grows_with_the_run(model_and_data, reference):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.runner.min_interval = 0.0
    counts = []
    widget.pending_marks.observe(lambda change: counts.append(len(widget.converged_marks.x) + len(change["new"])),
                                 "x")
    widget.run(block=True)
    assert counts[:3] == [1, 3, 6] and counts[-1] == STEPS * (STEPS + 1) // 2  # k Ritz values at step k
    assert counts == sorted(counts)
    steps, values, flags = expected_convergence(widget.result, 0)
    np.testing.assert_array_equal(widget.converged_marks.x, steps[flags])
    np.testing.assert_allclose(widget.pending_marks.y, values[~flags], rtol=1e-12)


def test_the_summary_gives_the_negative_mass_beyond_zero_and_the_legends_name_the_marks(widget):
    summary = widget.result.summary()
    assert f"{summary['negative_mass_beyond_zero']:.2%}" in widget.summary.value and "beyond zero" in \
        widget.summary.value
    for text in ("Lanczos stems", "smoothed density"):
        assert text in widget.legend.value
    for text in ("converged", "not converged", "step k"):
        assert text in widget.convergence_legend.value


def test_sigma_follows_the_default_until_the_user_moves_it_then_stays(model_and_data):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.run(block=True)
    first = default_sigma(widget.result.stem()[0], STEPS)
    assert widget.sigma_slider.value == pytest.approx(first, rel=1e-12)
    widget.steps.value = 6
    widget.run(block=True)
    second = default_sigma(widget.result.stem()[0], 6)
    assert second != pytest.approx(first) and widget.sigma_slider.value == pytest.approx(second, rel=1e-12)

    chosen = 4.0 * second
    widget.sigma_slider.value = chosen
    widget.steps.value = STEPS
    widget.run(block=True)
    assert widget.sigma_slider.value == pytest.approx(chosen, rel=1e-9)
    assert_shows(widget, widget.result, widget.sigma_slider.value)
    assert 10 ** widget.sigma_slider.min <= chosen <= 10 ** widget.sigma_slider.max


def test_the_eigenvalue_axis_fits_the_stems_and_density_or_is_fixed(widget):
    assert widget.eigenvalue_range is None
    scale = widget.density_line.scales["x"]
    grid = np.asarray(widget.density_line.x)
    assert scale.min < grid.min() < grid.max() < scale.max
    widget.eigenvalue_range = (-1.0, 3.0)
    assert widget.eigenvalue_range == (-1.0, 3.0) and (scale.min, scale.max) == (-1.0, 3.0)
    widget.weight_scale.value = "log"
    assert widget.eigenvalue_range == (-1.0, 3.0)
    widget.weight_scale.value = "linear"
    for bad in ((1.0, 1.0), (0.0, float("nan")), (2.0, 1.0)):
        with pytest.raises(ValueError, match="eigenvalue_range must be None or finite"):
            widget.eigenvalue_range = bad
    widget.eigenvalue_range = None
    assert widget.eigenvalue_range is None and scale.min < grid.min()


def test_the_convergence_axes_span_the_run_from_its_first_step(model_and_data):
    """One Ritz value at step 1 must not collapse either axis to a point (bqplot then draws no ticks)."""
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.runner.min_interval = 0.0
    ranges = []
    widget.pending_marks.observe(lambda change: ranges.append(
        [(scale.min, scale.max) for scale in (widget.pending_marks.scales["x"], widget.pending_marks.scales["y"])]),
        "x")
    widget.run(block=True)
    for (step_low, step_high), (value_low, value_high) in ranges:
        assert (step_low, step_high) == (0.5, STEPS + 0.5) and value_low < value_high


def test_cancel_after_three_steps_keeps_a_partial_spectrum_and_a_second_run_works(model_and_data):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.runner.min_interval = 0.0
    widget.step_slider.observe(lambda change: change["new"] == 3 and widget.runner.cancel(), "max")
    assert widget.run()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "cancelled" and isinstance(widget.result, cw.Spectrum)
    assert widget.result.steps == 3
    three = cw.spectrum(model, data, **{**OPTIONS, "steps": 3})
    np.testing.assert_allclose(widget.result.ritz_values, three.ritz_values, rtol=1e-10, atol=1e-12)
    assert_shows(widget, widget.result, widget.sigma_slider.value)

    widget.steps.value = 2
    assert widget.run(block=True)
    assert widget.runner.outcome == "done" and widget.result.steps == 2


@pytest.mark.parametrize("params, message", [("nomatch.*", "nomatch"), ("", "give a checkpoint path")])
def test_errors_appear_in_the_error_area(model_and_data, params, message):
    model, data = model_and_data
    widget = SpectrumWidget(model if params else None, data, params=params, **OPTIONS)
    assert widget.run()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "failed" and isinstance(widget.runner.error, ValueError)
    assert message in widget.runner.error_message.value and widget.runner.error_box.layout.display == ""
    assert widget.result is None and widget.stem_heads.x.size == 0


def test_the_kernel_stays_free_while_a_spectrum_runs_and_a_second_run_is_refused(model_and_data):
    _, data = model_and_data
    gate = Gate()
    model = nn.Sequential(gate, tiny_model())
    widget = SpectrumWidget(model, data, **OPTIONS)
    assert widget.run()  # returns at once: the worker waits at the gate
    assert widget.runner.running and widget.runner.button.description == "Cancel"
    assert not widget.run()
    print("a cell that prints returns at once")
    gate.gate.set()
    assert widget.runner.join(timeout=60)
    assert widget.runner.outcome == "done" and widget.result.steps == STEPS


def test_save_writes_the_spectrum(widget, tmp_path):
    widget.save_path.value = str(tmp_path / "spectrum")
    written = widget.save()
    assert written.endswith(".npz") and "saved" in widget.save_status.value
    loaded = cw.Spectrum.load(written)
    np.testing.assert_array_equal(loaded.ritz_values, widget.result.ritz_values)

    (tmp_path / "a_file").write_text("not a folder")
    widget.save_path.value = str(tmp_path / "a_file" / "spectrum.npz")
    assert widget.save() is None
    assert "Error" in widget.save_status.value and "a_file" in widget.save_status.value


def test_save_before_a_run_is_an_error_shown_beside_the_button():
    widget = SpectrumWidget()
    assert widget.save() is None and "run first" in widget.save_status.value and widget.save_button.disabled


def test_a_checkpoint_is_loaded_once_and_recorded(model_and_data, monkeypatch):
    model, data = model_and_data
    loads = []

    def fake_load_trained(path, device=None):
        loads.append((path, device))
        return cw.Trained(model, data, path, 7, {"model": "tiny", "data": "toy", "seed": 0}, cw.TrainingHistory())

    monkeypatch.setattr(trained_module, "load_trained", fake_load_trained)
    monkeypatch.setattr(cw.training, "load_trained", fake_load_trained)
    widget = SpectrumWidget(checkpoint="runs/tiny", device="cpu", **OPTIONS)
    widget.run(block=True)
    widget.run(block=True)
    assert loads == [("runs/tiny", "cpu")]
    assert widget.result.meta["checkpoint"] == "runs/tiny" and widget.result.meta["epoch"] == 7
    reference = cw.spectrum(model, data, **OPTIONS)
    np.testing.assert_allclose(widget.result.ritz_values, reference.ritz_values, rtol=1e-10, atol=1e-12)


def test_keep_eigenvectors_stores_the_ritz_vectors_of_the_direct_computation(model_and_data):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    assert widget.run(block=True) and widget.result.ritz_vectors is None
    widget.save_vectors.value = True
    assert widget.run(block=True)
    direct = cw.spectrum(model, data, save_vectors=True, **OPTIONS)
    np.testing.assert_allclose(widget.result.ritz_vectors, direct.ritz_vectors, rtol=1e-10, atol=1e-12)


def test_show_draws_a_given_spectrum_without_computing(model_and_data, reference):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.show(reference)
    assert widget.result is reference and widget.runner.outcome == "idle"
    assert_shows(widget, reference, widget.sigma_slider.value)
    assert widget.step_slider.max == STEPS and not widget.save_button.disabled
    with pytest.raises(TypeError, match="Spectrum"):
        widget.show(reference.lanczos)


def test_the_summary_gives_error_bars_over_several_start_vectors():
    from curvwidgets.linalg.estimates import format_with_error
    from curvwidgets.widgets.spectrum import _summary_table

    several = cw.results.Spectrum.from_lanczos(cw.lanczos(np.diag(np.r_[np.linspace(-1, 1, 60), 4.0]), 6,
                                                          num_vectors=4, seed=0))
    summary = several.summary()
    table = _summary_table(summary)
    assert format_with_error(summary["trace_estimate"], summary["trace_estimate_se"]) in table
    assert f"{summary['negative_mass']:.2%} ± {summary['negative_mass_se']:.2%}" in table
    assert "4 (± one standard error)" in table
    one = cw.results.Spectrum.from_lanczos(cw.lanczos(np.diag(np.r_[np.linspace(-1, 1, 60), 4.0]), 6, seed=0))
    table = _summary_table(one.summary())
    assert " ± " not in table and "1 (no error bars)" in table


def test_the_band_follows_every_step_of_a_run(model_and_data):
    """Each progress event redraws the band of the partial spectrum, at the sigma shown then; then the result's."""
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.runner.min_interval = 0.0
    drawn = []
    band = widget.density_band
    band.observe(lambda change: drawn.append(
        (widget.step_slider.value, widget.sigma_slider.value, np.array(band.x), np.array(change["new"]))), "y")
    widget.run(block=True)
    assert [k for k, *_ in drawn][:STEPS] == list(range(1, STEPS + 1))
    for k, sigma, band_x, band_y in drawn:
        grid, density, error = widget.result.truncate(k).smooth_spread(sigma=sigma)
        np.testing.assert_allclose(band_x, grid, rtol=1e-12)
        np.testing.assert_allclose(band_y, [np.maximum(density - error, 0.0), density + error], rtol=1e-12,
                                   atol=1e-12 * np.max(density + error))
    assert_shows(widget, widget.result, widget.sigma_slider.value)


def test_one_start_vector_draws_no_band_and_says_so(model_and_data, reference):
    model, data = model_and_data
    widget = SpectrumWidget(model, data, **OPTIONS)
    widget.show(reference)
    one = cw.Spectrum.from_lanczos(cw.lanczos(np.diag(np.r_[np.linspace(-1, 1, 60), 4.0]), 6, seed=0))
    widget.show(one)  # another spectrum shown (as the Dashboard's checkpoint slider does): the band empties
    assert_shows(widget, one, widget.sigma_slider.value)
    assert "1 (no error bars)" in widget.summary.value
    widget.show(reference)
    assert_shows(widget, reference, widget.sigma_slider.value)


def test_the_band_is_clipped_at_zero_and_sends_only_finite_points():
    """(Over non-negative densities the standard error never exceeds their mean: the clip only catches rounding.)"""
    from curvwidgets.widgets.spectrum import _band

    grid, density, error = np.arange(4.0), np.array([1.0, 0.5, 2.0, 1e-17]), np.array([0.5, np.nan, 1.0, 2e-17])
    x, y = _band(grid, density, error)
    np.testing.assert_array_equal(x, [0.0, 2.0, 3.0])
    np.testing.assert_array_equal(y, [[0.5, 1.0, 0.0], [1.5, 3.0, 3e-17]])
    x, y = _band(grid, density, np.full(4, np.nan))
    assert x.shape == y.shape == (0,)

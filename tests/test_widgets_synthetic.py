"""SyntheticSpectrumWidget: its marks hold exactly the computed spectra; slider, cancel, errors, refusal."""

import threading

import numpy as np
import pytest

import curvwidgets as cw
from curvwidgets.widgets import SyntheticSpectrumWidget
from curvwidgets.widgets import _synthetic_task

CASES = {
    "wigner": (dict(ensemble="wigner", P=80, seed=2), lambda: cw.synthetic.wigner(80, seed=2)),
    "marchenko-pastur": (dict(ensemble="marchenko-pastur", P=60, ratio=0.5, seed=1),
                         lambda: cw.synthetic.marchenko_pastur(60, 30, seed=1)),
    "typed": (dict(ensemble="typed", eigenvalues="0, 0, 1, 2, 2.5, 5, 7, 7, 9, 10, 11, 12", seed=3),
              lambda: cw.synthetic.with_spectrum([0, 0, 1, 2, 2.5, 5, 7, 7, 9, 10, 11, 12], seed=3)),
    "section53": (dict(ensemble="section53", seed=0), lambda: cw.synthetic.section53_matrix(seed=0)),
}


def assert_stems_show(widget, result):
    nodes, weights = cw.stem_density(result)
    np.testing.assert_array_equal(widget.stem_heads.x, nodes)
    np.testing.assert_array_equal(widget.stem_heads.y, weights)
    np.testing.assert_array_equal(np.asarray(widget.stem_lines.x).reshape(-1, 2), np.stack([nodes, nodes], 1))
    np.testing.assert_array_equal(np.asarray(widget.stem_lines.y).reshape(-1, 2),
                                  np.stack([np.zeros_like(weights), weights], 1))


def assert_histogram(bars, values, bins=60):
    heights, edges = np.histogram(values, bins=bins, density=True)
    np.testing.assert_allclose(bars.x, (edges[:-1] + edges[1:]) / 2, rtol=1e-12)
    np.testing.assert_allclose(bars.y, heights, rtol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_marks_hold_the_computed_spectra(name):
    settings, build = CASES[name]
    widget = SyntheticSpectrumWidget(steps=12, num_vectors=2, **settings)
    assert widget.run(block=True)
    matrix = build()
    reference = cw.lanczos(matrix, steps=12, num_vectors=2, seed=settings["seed"])
    np.testing.assert_allclose(widget.result.ritz_values, reference.ritz_values, atol=1e-10)
    assert_stems_show(widget, widget.result)
    assert_histogram(widget.eigen_bars, np.linalg.eigvalsh(matrix))
    assert_histogram(widget.diagonal_bars, cw.synthetic.diagonal_approximation(matrix))
    if name == "wigner":
        np.testing.assert_allclose(widget.limit_line.y, cw.synthetic.semicircle_pdf(widget.limit_line.x))
        assert widget.limit_line.x.min() == -2.0 and widget.limit_line.x.max() == 2.0
    elif name == "marchenko-pastur":  # q = P / T = 2: half the mass sits at 0, said in the title
        np.testing.assert_allclose(widget.limit_line.y, cw.synthetic.marchenko_pastur_pdf(widget.limit_line.x, 2.0))
        assert "T = 30" in widget.figure.title and "mass 0.5 at 0" in widget.figure.title
    else:
        assert widget.limit_line.x.size == 0
    assert (widget.step_slider.max, widget.step_slider.value) == (reference.steps, reference.steps)
    assert widget.last_run.dim == matrix.shape[0]


def test_step_slider_redraws_truncated_stems_without_recomputing(monkeypatch):
    calls = []

    def counting_lanczos(*args, **kwargs):
        calls.append(1)
        return cw.lanczos(*args, **kwargs)

    monkeypatch.setattr(_synthetic_task, "lanczos", counting_lanczos)
    widget = SyntheticSpectrumWidget(P=90, steps=15, num_vectors=3)
    widget.run(block=True)
    result = widget.result
    for k in (1, 4, 9, 15):
        widget.step_slider.value = k
        assert_stems_show(widget, result.truncate(k))
        assert widget.stem_heads.x.size == 3 * k
    assert widget.result is result and calls == [1]


def test_cancel_after_three_steps_keeps_the_partial_run_and_a_second_run_works():
    widget = SyntheticSpectrumWidget(P=70, steps=20, seed=4)
    widget.runner.min_interval = 0.0  # draw every step, so the observer below sees step 3
    widget.step_slider.observe(lambda change: change["new"] == 3 and widget.runner.cancel(), "max")
    assert widget.run()
    assert widget.runner.join(timeout=30)
    assert widget.runner.outcome == "cancelled"
    partial = widget.result
    assert partial.steps == 3 and widget.last_run.eigenvalues is None
    np.testing.assert_allclose(partial.ritz_values, cw.lanczos(cw.synthetic.wigner(70, seed=4), 3, seed=4).ritz_values,
                               atol=1e-12)
    assert_stems_show(widget, partial)
    assert widget.eigen_bars.x.size == 0  # not computed: the cancel came first
    assert_histogram(widget.diagonal_bars, np.diag(cw.synthetic.wigner(70, seed=4)))

    widget.steps.value = 2  # below the cancelling step: this run completes
    assert widget.run(block=True)
    assert widget.runner.outcome == "done" and widget.result.steps == 2 and widget.last_run.eigenvalues.size == 70


@pytest.mark.parametrize("control, value, message", [
    ("dim", 0, "P must be an int &gt;= 1; got 0"),
    ("steps", -1, "steps"),
    ("eigenvalues", "1, two, 3", "&#x27;two&#x27; is not a number"),
])
def test_bad_settings_appear_in_the_error_area(control, value, message):
    widget = SyntheticSpectrumWidget(P=40, steps=5, ensemble="typed" if control == "eigenvalues" else "wigner",
                                     eigenvalues="1, 2, 3")
    widget.run(block=True)
    good = widget.result
    getattr(widget, control).value = value
    assert widget.run()
    assert widget.runner.join(timeout=30)
    assert widget.runner.outcome == "failed" and isinstance(widget.runner.error, ValueError)
    assert message in widget.runner.error_message.value
    assert widget.runner.error_box.layout.display == ""
    assert widget.result is good  # kept, and drawn again
    assert_stems_show(widget, good)


def test_second_run_is_refused_and_the_kernel_stays_free(monkeypatch):
    gate = threading.Event()

    def gated_eigenvalues(matrix):
        assert gate.wait(timeout=20), "the main thread was blocked"
        return np.linalg.eigvalsh(matrix)

    monkeypatch.setattr(_synthetic_task, "exact_eigenvalues", gated_eigenvalues)
    widget = SyntheticSpectrumWidget(P=50, steps=6)
    assert widget.run()  # returns while the worker waits in the eigenvalue stage
    assert widget.runner.running and not widget.run()
    print("the cell goes on")  # the main thread works meanwhile
    gate.set()
    assert widget.runner.join(timeout=30)
    assert widget.runner.outcome == "done" and widget.last_run.eigenvalues.size == 50


ALWAYS_SHOWN = ("dim", "steps", "num_vectors", "seed")   # P, steps m, vectors, seed: every ensemble has them
SHOWN_ONLY_FOR = {"ratio": "marchenko-pastur", "eigenvalues": "typed"}


@pytest.mark.parametrize("ensemble", ["wigner", "marchenko-pastur", "typed", "section53", "wigner"])
def test_controls_follow_the_ensemble(ensemble):
    widget = SyntheticSpectrumWidget("typed" if ensemble == "wigner" else "wigner")
    widget.ensemble.value = ensemble
    for name in ALWAYS_SHOWN:
        assert getattr(widget, name).layout.display != "none", f"{name} hidden for {ensemble}"
    for name, only in SHOWN_ONLY_FOR.items():
        assert (getattr(widget, name).layout.display != "none") == (ensemble == only), (name, ensemble)
    assert widget.dim.disabled == (ensemble in ("typed", "section53"))


def test_p_shows_the_size_of_a_typed_spectrum_and_of_section_53_and_the_users_p_comes_back():
    widget = SyntheticSpectrumWidget(P=300)
    widget.eigenvalues.value = "0, 1, 2, 3.5"
    widget.ensemble.value = "typed"
    assert (widget.dim.value, widget.dim.disabled) == (4, True)
    widget.eigenvalues.value = "0, 1, 2"
    assert widget.dim.value == 3
    widget.ensemble.value = "section53"
    assert (widget.dim.value, widget.dim.disabled) == (1000, True)
    widget.ensemble.value = "wigner"
    assert (widget.dim.value, widget.dim.disabled) == (300, False)


def test_every_scale_has_a_finite_range_of_nonzero_width_before_and_after_a_run():
    """bqplot derives a domain of one value from one stem or bar and then draws no ticks."""
    widget = SyntheticSpectrumWidget("typed", eigenvalues="2.0", steps=1)
    for state in ("before", "after"):
        for mark in (widget.eigen_bars, widget.stem_heads):
            for scale in mark.scales.values():
                assert np.isfinite([scale.min, scale.max]).all() and scale.max > scale.min, (state, scale)
        widget.run(block=True)
    x = widget.stem_heads.scales["x"]
    assert x.min < 2.0 < x.max and widget.stem_heads.scales["y"].max > widget.stem_heads.y[0] == 1.0


def test_every_control_has_a_layout_of_its_own():
    widget = SyntheticSpectrumWidget()
    controls = [widget.ensemble, widget.dim, widget.ratio, widget.eigenvalues, widget.steps, widget.num_vectors,
                widget.seed, widget.step_slider]
    assert len({id(control.layout) for control in controls}) == len(controls)


def test_the_diagonal_can_be_hidden_and_the_legend_names_what_is_drawn():
    widget = SyntheticSpectrumWidget(P=60, steps=5)
    assert widget.legend.value == ""
    widget.run(block=True)
    for label in ("exact eigenvalues", "diagonal baseline", "limiting density", "Lanczos stems"):
        assert label in widget.legend.value
    widget.show_diagonal.value = False
    assert widget.diagonal_bars.visible is False and "diagonal baseline" not in widget.legend.value
    assert "exact eigenvalues" in widget.legend.value

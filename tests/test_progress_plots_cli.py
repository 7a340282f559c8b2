"""The progress protocol, the static plots, the demo job and the command line."""

import io
import subprocess
import sys

import matplotlib.image
import matplotlib.pyplot
import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets import plots
from curvwidgets._atomic import atomic_path
from curvwidgets.cli import main


def test_tqdm_adapter_follows_the_steps():
    stream = io.StringIO()
    with cw.TqdmProgress(desc="spectrum", file=stream) as bar:
        cw.lanczos(np.diag(np.arange(1.0, 30.0)), steps=6, progress=bar)
    assert bar.last_step == 6
    assert "spectrum" in stream.getvalue() and "6/6" in stream.getvalue()


def test_progress_event_fraction():
    assert cw.ProgressEvent("lanczos", 3, 12).fraction == 0.25


def test_stem_plot_draws_the_gauss_weights():
    result = cw.lanczos(cw.synthetic.wigner(100, seed=0), steps=10)
    ax = plots.stem_plot(result, log=True)
    markers = ax.containers[0].markerline
    nodes, weights = cw.stem_density(result)
    np.testing.assert_allclose(markers.get_xdata(), nodes)
    np.testing.assert_allclose(markers.get_ydata(), weights)
    assert ax.get_yscale() == "log"


def test_comparison_histograms_hold_unit_mass():
    matrix = cw.synthetic.section53_matrix(seed=0)
    ax = plots.spectrum_comparison(np.linalg.eigvalsh(matrix), cw.lanczos(matrix, 10),
                                   cw.synthetic.diagonal_approximation(matrix))
    heights = [sum(patch.get_height() for patch in container) for container in ax.containers[:2]]
    np.testing.assert_allclose(heights, [1.0, 1.0])
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["eigenvalues", "diagonal", "Lanczos"]


def test_histogram_density_curve_convergence_and_table():
    values = np.linalg.eigvalsh(cw.synthetic.wigner(200, seed=0))
    ax = plots.eigenvalue_histogram(values, pdf=cw.synthetic.semicircle_pdf)
    assert sum(p.get_height() * p.get_width() for p in ax.patches) == pytest.approx(1.0)
    plots.density_curve(cw.lanczos(cw.synthetic.wigner(200, seed=0), 10), ax=ax)
    curve = plots.convergence_plot(2.0, {"a": [1.0, 1.5, 2.0]})
    np.testing.assert_allclose(curve.lines[0].get_ydata()[:2], [1.0, 0.5])
    table_ax = plots.bounds_table_plot(cw.bounds_table(steps=(5,)))
    assert "1.1e-04 / 3.9e-02" in table_ax.tables[0][1, 0].get_text().get_text()


def test_atomic_path_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as temporary:
        temporary.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]


def test_synthetic_command_writes_the_figures_and_a_summary(tmp_path, capsys):
    assert main(["synthetic", "--size", "small", "--out", str(tmp_path), "--steps", "20"]) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 9 and all(name.endswith(".png") for name in names)
    summary = capsys.readouterr().out
    rows = [line for line in summary.splitlines() if line.startswith("Figure")]
    assert len(rows) == 16  # 8 progress lines and 8 summary rows
    assert "W1 Lanczos" in summary


def test_demo_rejects_an_unknown_size(tmp_path):
    from curvwidgets.synthetic_demo import run_synthetic_demo

    with pytest.raises(ValueError, match="size must be one of"):
        run_synthetic_demo(tmp_path, size="huge")


def test_core_import_pulls_in_no_front_end():
    code = "import sys, curvwidgets; print(sorted(m for m in ('matplotlib', 'ipywidgets', 'bqplot') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_cli_trains_on_the_embedded_digits(tmp_path, capsys):
    assert main(["train", "--model", "MLP", "--data", "digits", "--epochs", "2", "--lr", "0.05", "--batch-size", "64",
                 "--out", str(tmp_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "epoch    2/2" in printed and "test loss" in printed
    history = cw.TrainingHistory.load(tmp_path / "history.json")
    assert len(history) == 2 and history.config["optimizer"] == "SGD"
    assert f"{history.rows[-1]['test_top1']:.3f}" in printed


# ---- the sharpness panel of plot_training -------------------------------------------------------------------

def tiny_run(folder, monitor):
    """Five epochs of a linear-schedule SGD on random batches (the rate changes every epoch), into ``folder``."""
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 6, generator=generator), torch.randint(0, 3, (16,), generator=generator))
               for _ in range(2)]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    return cw.train(model, (batches, batches), epochs=5, optimizer_kwargs={"lr": 0.2}, schedule="linear",
                    out_dir=folder,
                    monitor=cw.CurvatureMonitor(every=2, data=batches, num_samples=None) if monitor else None)


@pytest.fixture(scope="module")
def monitored_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        return {monitor: (folder / str(monitor), tiny_run(folder / str(monitor), monitor)) for monitor in (True, False)}


def test_the_sharpness_panel_draws_the_measured_epochs_against_two_over_the_rate(monitored_runs):
    folder, history = monitored_runs[True]
    measured = np.isfinite(history["sharpness"])
    np.testing.assert_array_equal(measured, [False, True, False, True, True])
    assert len(set(history["lr"])) == 3  # the schedule holds the rate, then lowers it twice
    for source in (history, folder, folder / "history.json"):  # the object, and the file (NaN stored as null)
        figure = cw.plot_training(source)
        loss_axis, accuracy_axis, sharpness_axis, overlap_axis = figure.axes
        assert overlap_axis.get_shared_x_axes().joined(sharpness_axis, overlap_axis)
        sharpness, threshold = sharpness_axis.get_lines()
        np.testing.assert_array_equal(sharpness.get_xdata(), history["epoch"][measured])
        np.testing.assert_array_equal(sharpness.get_ydata(), history["sharpness"][measured])
        # each epoch's threshold over (epoch - 1, epoch]: from 0, the first epoch's start
        np.testing.assert_array_equal(threshold.get_xdata(), np.r_[0.0, history["epoch"]])
        np.testing.assert_array_equal(threshold.get_ydata(), np.r_[history["stability_threshold"][:1],
                                                                   history["stability_threshold"]])
        assert threshold.get_drawstyle() == "steps-pre" and threshold.get_linestyle() == "--"
        assert threshold.get_color() == sharpness.get_color()
        (overlap,) = overlap_axis.get_lines()
        np.testing.assert_array_equal(overlap.get_xdata(), history["epoch"][measured])
        np.testing.assert_array_equal(overlap.get_ydata(), history["gradient_overlap"][measured])
        assert [text.get_text() for text in sharpness_axis.get_legend().get_texts()] == [
            "sharpness", "stability threshold", "gradient overlap"]
        low, high = sharpness_axis.get_ylim()  # zero, every sharpness and the lowest threshold in view
        thresholds = history["stability_threshold"]
        assert low <= 0 and high >= max(history["sharpness"][measured].max(), thresholds.min())
        assert high < thresholds.max()  # not stretched to the decayed rate
        matplotlib.pyplot.close(figure)
    # against optimiser steps: two batches an epoch
    ax = plots.sharpness_curve(history, steps_per_epoch=2, color="tab:green", label="eta", threshold_label=None)
    sharpness, threshold = ax.get_lines()
    np.testing.assert_array_equal(sharpness.get_xdata(), 2 * history["epoch"][measured])
    np.testing.assert_array_equal(threshold.get_xdata(), 2 * np.r_[0.0, history["epoch"]])
    assert ax.get_xlabel() == "step" and threshold.get_color() == "tab:green"
    assert [handle.get_label() for handle in ax.get_legend_handles_labels()[0]] == ["eta"]
    matplotlib.pyplot.close(ax.figure)


def test_without_a_monitor_the_figure_is_loss_and_accuracy_only(monitored_runs, tmp_path):
    folder, history = monitored_runs[False]
    assert not plots.has_sharpness(history)
    figure = cw.plot_training(folder)
    assert len(figure.axes) == 2
    assert [axis.get_ylabel() for axis in figure.axes] == ["loss", "top-1 accuracy"]
    matplotlib.pyplot.close(figure)
    # two axes given: the panel is left out even with a monitor
    figure, axes = matplotlib.pyplot.subplots(1, 2)
    plots.training_curves(monitored_runs[True][1], axes=axes)
    assert len(figure.axes) == 2
    matplotlib.pyplot.close(figure)


def test_plot_command_draws_the_sharpness_panel(monitored_runs, tmp_path):
    for monitor in (True, False):
        target = tmp_path / f"training-{monitor}.png"
        assert main(["plot", str(monitored_runs[monitor][0]), "--out", str(target)]) == 0
        assert target.stat().st_size > 0
    # the wider figure (three panels) is the monitored run's
    width = {monitor: matplotlib.image.imread(tmp_path / f"training-{monitor}.png").shape[1] for monitor in (True, False)}
    assert width[True] > width[False]

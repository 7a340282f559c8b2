"""The command line: fast --help without torch, the chained verbs write the files, bad values end in one line."""

import contextlib
import inspect
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import curvwidgets as cw
from curvwidgets import api
from curvwidgets.cli import build_parser, main

VERBS = ("demo", "synthetic", "train", "spectrum", "stats", "landscape", "plot", "reproduce")


def run(argv):
    """``main(argv)``'s exit status, whether it returns or argparse exits."""
    try:
        return main([str(item) for item in argv])
    except SystemExit as stop:
        return stop.code


def test_help_is_fast_and_does_not_import_torch():
    code = (
        "import sys\n"
        "from curvwidgets.cli import main\n"
        "codes = []\n"
        f"for argv in [['--help']] + [[verb, '--help'] for verb in {VERBS!r}]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as stop:\n"
        "        codes.append(stop.code)\n"
        "print('RESULT', codes, 'torch' in sys.modules)\n"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    result = [line for line in finished.stdout.splitlines() if line.startswith("RESULT")]
    assert result == [f"RESULT {[0] * (len(VERBS) + 1)} False"]
    assert "usage: curvwidgets spectrum" in finished.stdout and "--save-eigvec" in finished.stdout
    for verb in VERBS:
        assert f"usage: curvwidgets {verb}" in finished.stdout


def test_the_cli_defaults_equal_the_python_api():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "verb").choices

    def defaults(function):
        return {name: p.default for name, p in inspect.signature(function).parameters.items()}

    pairs = {
        "train": (api.train_network, {"model": "model", "data": "dataset", "epochs": "epochs",
                                      "optimizer": "optimizer", "schedule": "schedule", "batch_size": "batch_size",
                                      "save_every": "save_freq", "seed": "seed"}),
        "spectrum": (api.compute_eigenspectrum, {"matrix": "curvature_matrix", "steps": "lanczos_iters",
                                                 "vectors": "num_vectors", "seed": "seed", "bn_mode": "bn_mode"}),
        "stats": (api.compute_loss_stats, {"probes": "num_probes", "batch_size": "batch_size", "seed": "seed"}),
        "landscape": (api.build_loss_landscape, {"dist": "dist", "points": "n_points", "largest": "largest",
                                                 "smallest": "smallest", "nearest_zero": "nearest_zero",
                                                 "directions": "directions", "bn": "bn", "seed": "seed"}),
    }
    for verb, (function, names) in pairs.items():
        cli = subparsers[verb].parse_args(["--out", "x", "--checkpoint", "c"] if verb != "train" else ["--out", "x"])
        python = defaults(function)
        for option, argument in names.items():
            assert getattr(cli, option) == python[argument], (verb, option)
    stats = subparsers["stats"].parse_args(["--checkpoint", "c"])
    assert tuple(stats.curvature) == tuple(defaults(api.compute_loss_stats)["curvature"])
    train = subparsers["train"].parse_args(["--out", "x"])
    assert train.lr is None and train.momentum is None and train.weight_decay is None  # the optimiser's defaults


# ---- the chain on the embedded digits --------------------------------------------------------------------

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """train -> spectrum -> landscape -> plot -> stats, tiny sizes; the folder and what each verb printed."""
    folder = tmp_path_factory.mktemp("cli")
    run_dir, spectrum = folder / "run", folder / "spectra" / "spectrum-00001-hessian_lanczos"
    printed = {}
    commands = {
        "train": ["train", "--model", "MLP", "--data", "digits", "--epochs", "1", "--batch-size", "256",
                  "--lr", "0.05", "--out", run_dir, "--device", "cpu", "--monitor-every", "3", "--monitor-unit", "step",
                  "--monitor-samples", "32"],
        "spectrum": ["spectrum", "--checkpoint", run_dir, "--out", spectrum, "--matrix", "hessian_lanczos",
                     "--steps", "3", "--save-eigvec", "--samples", "64", "--device", "cpu"],
        "spectrum to tol": ["spectrum", "--checkpoint", run_dir, "--out", folder / "spectra" / "to-tol",
                            "--steps", "30", "--vectors", "3", "--tol", "1e-3", "--samples", "64", "--device", "cpu"],
        "landscape": ["landscape", "--checkpoint", run_dir / "checkpoint-00001.pt", "--spectrum", spectrum,
                      "--out", folder / "losslandscape-00001.npz", "--points", "3", "--largest", "1",
                      "--smallest", "1", "--device", "cpu"],
        "plot landscape": ["plot", folder / "losslandscape-00001.npz", "--out", folder / "landscape.png"],
        "plot spectrum": ["plot", f"{spectrum}.npz", "--out", folder / "spectrum.png"],
        "plot training": ["plot", run_dir, "--out", folder / "training.png"],
        "stats": ["stats", "--checkpoint", run_dir, "--out", folder / "stats.json", "--curvature", "ggn",
                  "--probes", "1", "--batch-size", "720", "--device", "cpu"],
    }
    for name, argv in commands.items():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = run(argv)
        printed[name] = (status, out.getvalue(), err.getvalue())
    return folder, printed


def test_each_verb_succeeds(chain):
    _, printed = chain
    for name, (status, out, err) in printed.items():
        assert status == 0, (name, out, err)
        assert "Traceback" not in err


def test_the_chain_writes_the_files(chain):
    folder, printed = chain
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert files == ["landscape.png", "losslandscape-00001.npz", "run/checkpoint-00001.pt", "run/history.json",
                     "spectra/spectrum-00001-hessian_lanczos.npz", "spectra/to-tol.npz", "spectrum.png", "stats.json",
                     "training.png"]
    for image in ("landscape.png", "spectrum.png", "training.png"):
        assert (folder / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_prints_the_epoch_and_writes_the_history(chain):
    folder, printed = chain
    history = cw.TrainingHistory.load(folder / "run" / "history.json")
    assert len(history) == 1 and history.config["data"] == "digits" and history.config["architecture"]["name"] == "MLP"
    assert history.config["optimizer_kwargs"]["lr"] == 0.05
    out = printed["train"][1]
    assert "epoch    1/1" in out and f"{history.rows[0]['test_top1']:.3f}" in out
    # the monitor's measurement, printed beside SGD's threshold: (2 + 2 * 0.9) / 0.05 less the weight decay 5e-4
    sharpness, threshold = history["sharpness"][0], history["stability_threshold"][0]
    assert threshold == pytest.approx(3.8 / 0.05 - 5e-4, rel=1e-12)
    assert sharpness > 0 and f"sharpness {sharpness:.4g} (stable below {threshold:.4g})" in out
    assert history.config["monitor"]["num_samples"] == 32
    # every 3rd of the epoch's 6 steps: their own bar, the newest sharpness beside it
    assert history.config["monitor"]["unit"] == "step" and history.measured("step").tolist() == [3.0, 6.0]
    assert history.measurements[-1]["sharpness"] == sharpness
    assert "curvature" in printed["train"][2] and f"step 6: sharpness {sharpness:.4g}" in printed["train"][2]


def test_spectrum_prints_its_summary_and_saves_the_vectors(chain):
    folder, printed = chain
    spectrum = cw.Spectrum.load(folder / "spectra" / "spectrum-00001-hessian_lanczos")
    assert spectrum.steps == 3 and spectrum.ritz_vectors is not None and spectrum.ritz_vectors.shape[:2] == (1, 3)
    meta = spectrum.meta
    assert meta["matrix"] == "hessian" and meta["num_samples"] == 64 and meta["epoch"] == 1 and meta["bn_mode"] == "train"
    out = printed["spectrum"][1]
    summary = spectrum.summary()
    assert f"lambda_max {summary['lambda_max']:.6g}" in out and f"trace_estimate {summary['trace_estimate']:.6g}" in out
    assert "saved to" in out


def test_spectrum_to_a_tolerance_with_several_vectors_prints_error_bars(chain):
    folder, printed = chain
    spectrum = cw.Spectrum.load(folder / "spectra" / "to-tol")
    assert spectrum.meta["tol"] == 1e-3 and spectrum.num_vectors == 3
    for run in range(3):
        count = spectrum.lanczos.num_steps[run]
        top = int(np.argmax(spectrum.lanczos.nodes(run)))
        if count < 30:  # stopped at the tolerance: the top Ritz pair's residual is below it
            assert spectrum.residual_estimates[run, top] <= 1e-3 * spectrum.lanczos.nodes(run)[top]
    out = printed["spectrum to tol"][1]
    trace = spectrum.estimates()["trace"]
    assert f"trace_estimate {cw.linalg.estimates.format_with_error(trace.value, trace.standard_error)}" in out
    assert "± one standard error over 3 start vectors" in out


def test_landscape_walks_the_chosen_eigenvectors(chain):
    folder, printed = chain
    spectrum = cw.Spectrum.load(folder / "spectra" / "spectrum-00001-hessian_lanczos")
    landscape = cw.Landscape.load(folder / "losslandscape-00001.npz")
    values = spectrum.lanczos.nodes(0)
    np.testing.assert_array_equal(landscape.curvatures, [values.max(), values.min()])
    np.testing.assert_array_equal(landscape.offsets, [-0.25, 0.0, 0.25])
    assert landscape["train_loss"].shape == (2, 3) and landscape.done.all()
    assert "2 direction(s), 3 points each" in printed["landscape"][1]
    # at t = 0 both lines are the checkpoint: its test loss as training recorded it
    history = cw.TrainingHistory.load(folder / "run" / "history.json")
    np.testing.assert_allclose(landscape["test_loss"][:, 1], history.rows[0]["test_loss"], rtol=1e-5)


def test_stats_prints_and_saves_the_statistics(chain):
    folder, printed = chain
    content = json.loads((folder / "stats.json").read_text())
    assert content["format"] == "curvwidgets.LossStatistics" and content["version"] == 1
    assert content["meta"]["checkpoint"].endswith("checkpoint-00001.pt") and content["meta"]["num_probes"] == 1
    assert content["meta"]["batch_size"] == 720 and "ggn_trace" in content["statistics"]
    statistics = content["statistics"]
    assert statistics["loss_mean"] > 0
    out = printed["stats"][1]
    for key, value in statistics.items():
        assert f"{key:<28} {value:.6g}" in out
    # the mean loss over the unaugmented training set is the landscape's loss at t = 0
    landscape = cw.Landscape.load(folder / "losslandscape-00001.npz")
    assert landscape["train_loss"][0, 1] == pytest.approx(statistics["loss_mean"], rel=1e-5)


# ---- bad values --------------------------------------------------------------------------------------------

def assert_one_error_line(err: str, *names: str) -> None:
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0] == err.strip().splitlines()[-1]  # the last thing printed
    for name in names:
        assert name in errors[0], (name, errors[0])


@pytest.mark.parametrize("argv, names", [
    (["spectrum", "--checkpoint", "{checkpoint}", "--out", "{out}", "--steps", "0"], ["--steps"]),
    (["spectrum", "--checkpoint", "{checkpoint}", "--out", "{out}", "--matrix", "fisher_lanczos"],
     ["--matrix", "fisher_lanczos"]),
    (["landscape", "--checkpoint", "{checkpoint}", "--spectrum", "{spectrum}", "--out", "{out}", "--dist", "-1"],
     ["--dist"]),
    (["landscape", "--checkpoint", "{checkpoint}", "--spectrum", "{spectrum}", "--out", "{out}", "--points", "0"],
     ["--points"]),
    (["train", "--out", "{out}", "--epochs", "0"], ["--epochs"]),
])
def test_bad_values_exit_2_with_one_line(chain, tmp_path, capsys, argv, names):
    folder, _ = chain
    out = tmp_path / "result.npz"
    fill = {"checkpoint": folder / "run", "spectrum": folder / "spectra" / "spectrum-00001-hessian_lanczos",
            "out": out}
    assert run([item.format(**fill) for item in argv]) == 2
    assert_one_error_line(capsys.readouterr().err, *names)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_checkpoint_exits_2_with_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "checkpoint-00300.pt"
    assert run(["spectrum", "--checkpoint", missing, "--out", tmp_path / "spectrum", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    # nothing else on stderr (an empty progress bar drawn before the checkpoint is read is a second line)
    assert err.count("\n") == 1 and err.startswith("curvwidgets spectrum: error:"), err
    assert_one_error_line(err, str(missing))
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_checkpoint_exits_2_with_one_line(chain, tmp_path, capsys):
    folder, _ = chain
    damaged = tmp_path / "checkpoint-00001.pt"
    damaged.write_bytes((folder / "run" / "checkpoint-00001.pt").read_bytes()[:4096])
    assert run(["landscape", "--checkpoint", damaged, "--spectrum", folder / "spectra" / "spectrum-00001-hessian_lanczos",
                "--out", tmp_path / "landscape.npz", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("curvwidgets landscape: error:"), err
    assert "weights_only=False" not in err
    assert_one_error_line(err, str(damaged))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-00001.pt"]


def test_landscape_of_a_spectrum_without_vectors_exits_2(chain, tmp_path, capsys):
    folder, _ = chain
    saved = cw.Spectrum.load(folder / "spectra" / "spectrum-00001-hessian_lanczos")
    bare = cw.Spectrum(saved.lanczos, None, saved.meta).save(tmp_path / "bare")
    out = tmp_path / "out"
    out.mkdir()
    assert run(["landscape", "--checkpoint", folder / "run", "--spectrum", bare, "--out", out / "l.npz",
                "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("curvwidgets landscape: error:"), err
    assert_one_error_line(err, "bare.npz", "save_eigvec")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("device, names", [("gpu", ["--device", "'gpu'", "'cpu'"]),
                                             ("cuda:99", ["--device", "'cuda:99'"])])
def test_a_device_this_machine_lacks_exits_2_before_any_work(tmp_path, capsys, device, names):
    assert run(["train", "--out", tmp_path / "run", "--data", "digits", "--model", "MLP", "--epochs", "1",
                "--device", device]) == 2
    assert_one_error_line(capsys.readouterr().err, *names)
    assert list(tmp_path.iterdir()) == []


def test_an_out_folder_under_a_file_exits_2_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run(["train", "--out", blocker / "run", "--data", "digits", "--model", "MLP", "--epochs", "1",
                "--device", "cpu"]) == 2
    assert_one_error_line(capsys.readouterr().err, str(blocker / "run"))


def test_an_unexpected_error_still_ends_in_one_line(monkeypatch, tmp_path, capsys):
    import curvwidgets.api

    def broken(*args, **kwargs):
        raise RuntimeError("something deep broke")

    monkeypatch.setattr(curvwidgets.api, "train_network", broken)
    assert run(["train", "--out", tmp_path / "run", "--data", "digits", "--model", "MLP", "--epochs", "1"]) == 1
    assert_one_error_line(capsys.readouterr().err, "RuntimeError", "something deep broke", "--debug")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "spectrum", "--checkpoint", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "s")])


# ---- reproduce ---------------------------------------------------------------------------------------------

def test_reproduce_refuses_an_unknown_preset_or_notebook(tmp_path, capsys):
    from curvwidgets.reproduce import NOTEBOOKS, PRESETS, run_notebooks

    with pytest.raises(ValueError, match="preset must be one of"):
        run_notebooks(tmp_path / "out", preset="huge")
    with pytest.raises(ValueError, match="99_nothing"):
        run_notebooks(tmp_path / "out", names=["00_quickstart", "99_nothing"])
    assert not (tmp_path / "out").exists()
    assert run(["reproduce", "--out", tmp_path / "out", "--preset", "huge"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--preset", "huge")
    assert run(["reproduce", "--out", tmp_path / "out", "99_nothing"]) == 2
    assert_one_error_line(capsys.readouterr().err, "99_nothing")
    assert not (tmp_path / "out").exists()
    # every preset names only known notebooks
    for preset in PRESETS.values():
        assert set(preset) <= set(NOTEBOOKS)


# ---- bad inputs found by the reliability audit --------------------------------------------------------------

@pytest.mark.parametrize("inputs, out, names", [
    (["spectra/spectrum-00001-hessian_lanczos.npz"], "figure.xyz", ["figure.xyz", "'xyz'", "png"]),
    (["losslandscape-00001.npz", "losslandscape-00001.npz"], "figure.png", ["a Landscape", "losslandscape-00001.npz"]),
    (["run", "spectra/spectrum-00001-hessian_lanczos.npz"], "figure.png", ["plotted alone", "2 inputs"]),
])
def test_plot_refuses_what_it_cannot_draw_in_one_line(chain, tmp_path, capsys, inputs, out, names):
    folder, _ = chain
    assert run(["plot", *[folder / item for item in inputs], "--out", tmp_path / out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("curvwidgets plot: error:"), err
    assert_one_error_line(err, *names)
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_an_unknown_model_before_drawing_a_bar(tmp_path, capsys):
    assert run(["demo", "--model", "NoNet", "--epochs", "1", "--out", tmp_path / "demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("curvwidgets demo: error: unknown model 'NoNet'"), err
    assert list(tmp_path.iterdir()) == []


def test_an_out_file_that_cannot_be_written_is_named(chain, tmp_path, capsys):
    folder, _ = chain
    target = "/proc/curvwidgets-figure.png"
    assert run(["plot", folder / "spectra" / "spectrum-00001-hessian_lanczos.npz", "--out", target]) == 2
    assert_one_error_line(capsys.readouterr().err, f"cannot write '{target}'", "'/proc' fails")

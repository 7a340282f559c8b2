"""Bad input to the paper's functions: one clear error in the paper's words, raised before any work.

Every case of :data:`CASES` calls one function of :mod:`curvwidgets.api` on a
small run (an MLP trained for one epoch on the embedded digits) with one bad
argument and asserts the exception type, a message naming the argument as the
paper calls it (``lanczos_iters``, not the core's ``steps``), that no progress
event was sent (nothing was computed) and that nothing was written. The last
tests pin values the functions must pass on unchanged: ``bn``, ``largest`` and
``smallest``, ``seed``.
"""

import os
import re
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest

import curvwidgets as cw
from curvwidgets.landscape import eigen_directions


class At:
    """An argument value made from the test's folder when the case runs (a path under it)."""

    def __init__(self, label: str, make: Callable[[Path], Any]):
        self.label, self.make = label, make

    def __repr__(self) -> str:
        return self.label


def _file_in(folder: Path) -> Path:
    """A file ``folder / "a-file"``: a path under it cannot be written."""
    path = folder / "a-file"
    path.write_text("keep")
    return path


UNDER_A_FILE = At("under-a-file", lambda folder: _file_in(folder) / "result")
MISSING = At("missing", lambda folder: folder / "missing" / "checkpoint-00001.pt")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Dict[str, Path]:
    """A one-epoch MLP run on the digits, a 3-step spectrum with eigenvectors and a landscape, in their own folder."""
    folder = tmp_path_factory.mktemp("run")
    cw.train_network(folder / "run", dataset="digits", model="MLP", epochs=1, batch_size=256, device="cpu")
    checkpoint = folder / "run" / "checkpoint-00001.pt"
    cw.compute_eigenspectrum(checkpoint_path=checkpoint, save_spectrum_path=folder / "spectrum.npz",
                             save_eigvec=True, lanczos_iters=3, num_samples=64, batch_size=2048, device="cpu")
    cw.build_loss_landscape(checkpoint_path=checkpoint, spectrum_path=folder / "spectrum.npz", n_points=3,
                            save_path=folder / "landscape.npz", batch_size=2048, device="cpu")
    return {"folder": folder / "run", "checkpoint": checkpoint, "spectrum": folder / "spectrum.npz",
            "landscape": folder / "landscape.npz"}


def base_arguments(function: str, run: Dict[str, Path], out: Path) -> Dict[str, Any]:
    """Good, small arguments of ``function``, writing under ``out``."""
    reading = {"checkpoint_path": run["checkpoint"], "device": "cpu", "batch_size": 2048}
    return {
        "train_network": {"dir": out / "run", "dataset": "digits", "model": "MLP", "epochs": 1, "batch_size": 256,
                          "device": "cpu"},
        "compute_eigenspectrum": {**reading, "save_spectrum_path": out / "spectrum", "lanczos_iters": 2,
                                  "num_samples": 64},
        "compute_loss_stats": {**reading, "save_path": out / "stats.json", "num_samples": 64},
        "build_loss_landscape": {**reading, "spectrum_path": run["spectrum"], "save_path": out / "landscape.npz",
                                 "n_points": 3},
        "plot_training": {"dir": run["folder"], "save_path": out / "training.png"},
        "plot_spectrum": {"spectrum_path": run["spectrum"], "save_path": out / "spectrum.png"},
        "plot_loss_landscape": {"path": run["landscape"], "save_path": out / "landscape.png"},
    }[function]


INT_1 = r"must be an int >= 1; got "
INT_0 = r"must be an int >= 0; got "
SEED = r"seed must be an int in \[0, 2\*\*63\); got "
BOOL = r"must be True or False; got "
PATH = r"must be a path \(str or os\.PathLike\); got "
WRITE = r": cannot write '.*a-file/result.*': '.*a-file' is a file, not a folder"
DEVICE = r"device must name a device such as 'cpu'"
PROGRESS = r"^progress must be None or a callable"
CANCEL = r"^cancel must be None or an object with an is_set\(\) method"

T, E, S, L = "train_network", "compute_eigenspectrum", "compute_loss_stats", "build_loss_landscape"
READERS = (E, S, L)

#: (function, overrides, exception, regex of the message, which must name the paper's argument)
CASES = [
    (T, {"dir": None}, ValueError, r"^dir is required"),
    (T, {"dir": 3}, TypeError, rf"^dir {PATH}int 3"),
    (T, {"dir": ""}, ValueError, r"^dir must be a path; got ''"),
    (T, {"dir": At("a-file", _file_in)}, ValueError, r"^dir '.*a-file' cannot be a folder: '.*a-file' is a file"),
    (T, {"dir": UNDER_A_FILE}, ValueError, r"^dir '.*a-file/result' cannot be a folder"),
    (T, {"dataset": "mnist"}, ValueError, r"^dataset must be one of \(.*'digits'.*\) \(any letter case\); got 'mnist'"),
    (T, {"dataset": None}, ValueError, r"^dataset must be one of .*; got None"),
    (T, {"data_path": 3}, TypeError, rf"^data_path {PATH}int 3"),
    (T, {"model": "ResNet"}, ValueError, r"^model must be one of \(.*'MLP'.*\) \(any letter case\); got 'ResNet'"),
    (T, {"model": 3}, ValueError, r"^model must be one of .*; got 3"),
    (T, {"epochs": 0}, ValueError, rf"^epochs {INT_1}0"),
    (T, {"epochs": True}, ValueError, rf"^epochs {INT_1}True"),
    (T, {"epochs": 2.0}, ValueError, rf"^epochs {INT_1}2\.0"),
    (T, {"epochs": "3"}, ValueError, rf"^epochs {INT_1}'3'"),
    (T, {"optimizer": "Adagrad"}, ValueError, r"^optimizer must be one of \(.*'SGD'.*\); got 'Adagrad'"),
    (T, {"optimizer": 42}, ValueError, r"^optimizer must be one of .*; got 42"),
    (T, {"optimizer_kwargs": "lr=0.1"}, TypeError, r"^optimizer_kwargs must be a dict of keyword arguments"),
    (T, {"optimizer_kwargs": {"lr": -1.0}}, ValueError, r"^optimizer_kwargs: lr must be a finite number > 0"),
    (T, {"optimizer_kwargs": {"betas": (0.9, 0.99)}}, TypeError, r"^optimizer_kwargs: SGD takes no keyword"),
    (T, {"schedule": "exponential"}, ValueError, r"^schedule must be one of \(.*'linear'.*\); got 'exponential'"),
    (T, {"schedule_kwargs": [0.1]}, TypeError, r"^schedule_kwargs must be a dict"),
    (T, {"schedule_kwargs": {"final_ratio": 1.5}}, ValueError, r"^schedule_kwargs: final_ratio must be"),
    (T, {"schedule_kwargs": {"gamma": 0.1}}, ValueError, r"^schedule_kwargs: schedule 'linear' takes options "
                                                         r"\('final_ratio',\); got unknown \['gamma'\]"),
    (T, {"schedule": "step", "schedule_kwargs": {"milestones": [0.5, 2.0]}}, ValueError,
     r"^schedule_kwargs: milestones\[1\] must be a number in \(0, 1\]; got 2\.0"),
    (T, {"batch_size": 0}, ValueError, rf"^batch_size {INT_1}0"),
    (T, {"batch_size": 1.5}, ValueError, rf"^batch_size {INT_1}1\.5"),
    (T, {"save_freq": 0}, ValueError, rf"^save_freq {INT_1}0"),
    (T, {"save_freq": True}, ValueError, rf"^save_freq {INT_1}True"),
    (T, {"swa_start": 1}, ValueError, r"^swa_start must be an int in \[1, epochs\); got 1 with epochs=1"),
    (T, {"epochs": 2, "swa_start": 1}, ValueError, r"^swa_lr must be a number > 0 when swa_start is set"),
    (T, {"swa_lr": 0.01}, ValueError, r"^swa_lr=0\.01 needs swa_start"),
    (T, {"epochs": 2, "swa_start": 1, "swa_lr": "0.01"}, ValueError, r"^swa_lr must be a finite number > 0"),
    (T, {"resume": 3}, TypeError, rf"^resume {PATH}int 3"),
    (T, {"resume": MISSING}, FileNotFoundError, r"^resume '.*missing/checkpoint-00001\.pt' does not exist \(give a "
                                                r"checkpoint file or the run folder of one\)"),
    (T, {"resume": At("empty folder", lambda folder: folder)}, FileNotFoundError,
     r"^resume: no checkpoint-XXXXX\.pt files in '"),
    (T, {"seed": -1}, ValueError, rf"^{SEED}-1"),
    (T, {"seed": True}, ValueError, rf"^{SEED}True"),
    (T, {"device": "gpu"}, ValueError, rf"^{DEVICE}.*got 'gpu'"),
    (T, {"download": "yes"}, ValueError, rf"^download {BOOL}'yes'"),
    (T, {"progress": "yes"}, TypeError, PROGRESS),
    (T, {"cancel": True}, TypeError, CANCEL),
    (E, {"checkpoint_path": None}, ValueError, r"^checkpoint_path is required"),
    (E, {"checkpoint_path": 3}, TypeError, rf"^checkpoint_path {PATH}int 3"),
    (E, {"checkpoint_path": MISSING}, FileNotFoundError, r"^checkpoint_path '.*missing/checkpoint-00001\.pt' does not"),
    (E, {"curvature_matrix": "fisher_lanczos"}, ValueError, r"^curvature_matrix must be one of \(.*'ggn_lanczos'"),
    (E, {"curvature_matrix": None}, ValueError, r"^curvature_matrix must be one of .*; got None"),
    (E, {"save_spectrum_path": 3.5}, TypeError, rf"^save_spectrum_path {PATH}float 3\.5"),
    (E, {"save_spectrum_path": UNDER_A_FILE}, NotADirectoryError, rf"^save_spectrum_path{WRITE}"),
    (E, {"save_eigvec": "yes"}, ValueError, rf"^save_eigvec {BOOL}'yes'"),
    (E, {"save_eigvec": 1}, ValueError, rf"^save_eigvec {BOOL}1"),
    (E, {"lanczos_iters": 0}, ValueError, rf"^lanczos_iters {INT_1}0"),
    (E, {"lanczos_iters": True}, ValueError, rf"^lanczos_iters {INT_1}True"),
    (E, {"lanczos_iters": 2.0}, ValueError, rf"^lanczos_iters {INT_1}2\.0"),
    (E, {"num_vectors": 0}, ValueError, rf"^num_vectors {INT_1}0"),
    (E, {"num_vectors": 1.0}, ValueError, rf"^num_vectors {INT_1}1\.0"),
    (E, {"bn_mode": "batch"}, ValueError, r"^bn_mode must be one of \('eval', 'train'\); got 'batch'"),
    (E, {"curvature_matrix": "ggn_diag", "bn_mode": "train"}, ValueError,
     r"^bn_mode must be 'eval' for curvature_matrix='ggn_diag'"),
    (E, {"num_samples": 0}, ValueError, rf"^num_samples {INT_1}0"),
    (E, {"num_samples": 1.5}, ValueError, rf"^num_samples {INT_1}1\.5"),
    (E, {"num_mc": 0}, ValueError, rf"^num_mc {INT_1}0"),
    (E, {"batch_size": 0}, ValueError, rf"^batch_size {INT_1}0"),
    (E, {"seed": -1}, ValueError, rf"^{SEED}-1"),
    (E, {"seed": 1.5}, ValueError, rf"^{SEED}1\.5"),
    (E, {"backend": "fast"}, ValueError, r"^backend must be one of \('auto', 'forward-over-reverse', "),
    (E, {"curvature_matrix": "ggn_lanczos", "backend": "forward-over-reverse"}, ValueError,
     r"^backend must be one of \('auto', 'forward-mode', 'double-backward'\)"),
    (E, {"basis_device": "gpu"}, ValueError, r"^basis_device must name a device"),
    (E, {"swa": "no"}, ValueError, rf"^swa {BOOL}'no'"),
    (E, {"swa": True}, ValueError, r"^swa=True, but '.*checkpoint-00001\.pt' is from a run without stochastic"),
    (E, {"device": "gpu"}, ValueError, rf"^{DEVICE}"),
    (E, {"device": "cuda:99"}, ValueError, r"^device 'cuda:99'"),
    (E, {"dataset": "mnist"}, ValueError, r"^dataset must be one of .*; got 'mnist'"),
    (E, {"model": "ResNet"}, ValueError, r"^model must be one of .*; got 'ResNet'"),
    (E, {"model": "VGG16"}, ValueError, r"^model='VGG16', but '.*checkpoint-00001\.pt' is a checkpoint of 'MLP'"),
    (E, {"data_path": 3}, TypeError, rf"^data_path {PATH}int 3"),
    (E, {"progress": 3}, TypeError, PROGRESS),
    (E, {"cancel": object()}, TypeError, CANCEL),
    (S, {"checkpoint_path": None}, ValueError, r"^checkpoint_path is required"),
    (S, {"checkpoint_path": MISSING}, FileNotFoundError, r"^checkpoint_path '.*missing/checkpoint-00001\.pt'"),
    (S, {"curvature": "fisher"}, ValueError, r"^curvature must name 'hessian' and/or 'ggn'; got \['fisher'\]"),
    (S, {"curvature": 3}, TypeError, r"^curvature must be 'hessian', 'ggn' or a list of them; got 3"),
    (S, {"num_probes": 0}, ValueError, rf"^num_probes {INT_1}0"),
    (S, {"num_probes": True}, ValueError, rf"^num_probes {INT_1}True"),
    (S, {"bn_mode": "batch"}, ValueError, r"^bn_mode must be one of"),
    (S, {"num_samples": 0}, ValueError, rf"^num_samples {INT_1}0"),
    (S, {"batch_size": "128"}, ValueError, rf"^batch_size {INT_1}'128'"),
    (S, {"seed": "abc"}, ValueError, rf"^{SEED}'abc'"),
    (S, {"swa": 1}, ValueError, rf"^swa {BOOL}1"),
    (S, {"device": "gpu"}, ValueError, rf"^{DEVICE}"),
    (S, {"save_path": 3}, TypeError, rf"^save_path {PATH}int 3"),
    (S, {"save_path": UNDER_A_FILE}, NotADirectoryError, rf"^save_path{WRITE}"),
    (S, {"model": "ResNet"}, ValueError, r"^model must be one of"),
    (S, {"progress": "yes"}, TypeError, PROGRESS),
    (L, {"dist": 0}, ValueError, r"^dist must be a finite number > 0; got 0"),
    (L, {"dist": -0.25}, ValueError, r"^dist must be a finite number > 0; got -0\.25"),
    (L, {"dist": "0.25"}, ValueError, r"^dist must be a finite number > 0; got '0\.25'"),
    (L, {"dist": float("nan")}, ValueError, r"^dist must be a finite number > 0; got nan"),
    (L, {"dist": True}, ValueError, r"^dist must be a finite number > 0; got True"),
    (L, {"n_points": 1}, ValueError, r"^n_points must be an int >= 2; got 1"),
    (L, {"n_points": 3.0}, ValueError, r"^n_points must be an int >= 2; got 3\.0"),
    (L, {"n_points": True}, ValueError, r"^n_points must be an int >= 2; got True"),
    (L, {"spectrum_path": None}, ValueError, r"^spectrum_path is required"),
    (L, {"spectrum_path": 3}, TypeError, rf"^spectrum_path {PATH}int 3"),
    (L, {"checkpoint_path": None}, ValueError, r"^checkpoint_path is required"),
    (L, {"checkpoint_path": MISSING}, FileNotFoundError, r"^checkpoint_path '.*missing/checkpoint-00001\.pt'"),
    (L, {"save_path": 3}, TypeError, rf"^save_path {PATH}int 3"),
    (L, {"save_path": UNDER_A_FILE}, NotADirectoryError, rf"^save_path{WRITE}"),
    (L, {"largest": -1}, ValueError, rf"^largest {INT_0}-1"),
    (L, {"largest": 1.5}, ValueError, rf"^largest {INT_0}1\.5"),
    (L, {"smallest": True}, ValueError, rf"^smallest {INT_0}True"),
    (L, {"nearest_zero": -1}, ValueError, rf"^nearest_zero {INT_0}-1"),
    (L, {"largest": 0, "smallest": 0}, ValueError, r"^largest, smallest and nearest_zero are all 0"),
    (L, {"directions": "pca"}, ValueError, r"^directions must be one of \('eigenvectors', 'random', "),
    (L, {"directions": "random", "num_random": 0}, ValueError, rf"^num_random {INT_1}0"),
    (L, {"directions": "random", "num_random": 1, "plane": True}, ValueError,
     r"^num_random must be >= 2 for plane=True"),
    (L, {"plane": "yes"}, ValueError, rf"^plane {BOOL}'yes'"),
    (L, {"bn": "fresh"}, ValueError, r"^bn must be one of \('keep', 'recompute'\); got 'fresh'"),
    (L, {"bn": None}, ValueError, r"^bn must be one of"),
    (L, {"batch_size": 0}, ValueError, rf"^batch_size {INT_1}0"),
    (L, {"seed": -1}, ValueError, rf"^{SEED}-1"),
    (L, {"swa": "no"}, ValueError, rf"^swa {BOOL}'no'"),
    (L, {"device": "gpu"}, ValueError, rf"^{DEVICE}"),
    (L, {"progress": 1}, TypeError, PROGRESS),
    (L, {"cancel": True}, TypeError, CANCEL),
    ("plot_training", {"dir": None}, ValueError, r"^dir is required"),
    ("plot_training", {"dir": 3}, TypeError, rf"^dir {PATH}int 3"),
    ("plot_training", {"save_path": At("figure.xyz", lambda folder: folder / "figure.xyz")}, ValueError,
     r"^save_path '.*figure\.xyz': matplotlib cannot write the format 'xyz'"),
    ("plot_training", {"save_path": UNDER_A_FILE}, NotADirectoryError, rf"^save_path{WRITE}"),
    ("plot_spectrum", {"spectrum_path": []}, ValueError, r"^spectrum_path must name at least one Spectrum"),
    ("plot_spectrum", {"spectrum_path": 3}, TypeError, rf"^spectrum_path {PATH}int 3"),
    ("plot_spectrum", {"spectrum_path": At("[s.npz, None]", lambda folder: [folder / "s.npz", None])}, ValueError,
     r"^spectrum_path\[1\] is required"),
    ("plot_spectrum", {"log": "yes"}, ValueError, rf"^log {BOOL}'yes'"),
    ("plot_spectrum", {"save_path": 3}, TypeError, rf"^save_path {PATH}int 3"),
    ("plot_loss_landscape", {"path": None}, ValueError, r"^path is required"),
    ("plot_loss_landscape", {"path": 3}, TypeError, rf"^path {PATH}int 3"),
    ("plot_loss_landscape", {"metric": "top5"}, ValueError, r"^metric must be one of \('loss', 'accuracy'\)"),
    ("plot_loss_landscape", {"save_path": At("figure.foo", lambda folder: folder / "figure.foo")}, ValueError,
     r"^save_path '.*figure\.foo': matplotlib cannot write the format 'foo'"),
]


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` and its content."""
    return {os.fspath(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def case_id(case: tuple) -> str:
    function, overrides, _, _ = case
    # without memory addresses: every process (each pytest-xdist worker) must collect the same ids
    return f"{function}-" + ",".join(re.sub(r" at 0x[0-9a-f]+", "", f"{key}={type(value).__name__}:{value!r}")[:40]
                                     for key, value in overrides.items())


def test_the_table_is_large_enough():
    assert len(CASES) >= 80
    assert len({case_id(case) for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_is_one_clear_error_in_the_papers_words_before_any_work(case, run, tmp_path):
    function, overrides, error, pattern = case
    arguments = base_arguments(function, run, tmp_path / "out")
    events = []
    if function in (T, *READERS) and "progress" not in overrides:
        arguments["progress"] = events.append
    arguments.update({key: value.make(tmp_path) if isinstance(value, At) else value
                      for key, value in overrides.items()})
    before = snapshot(tmp_path)
    with pytest.raises(error, match=pattern):
        getattr(cw, function)(**arguments)
    assert events == []
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists()


# ---- valid unusual input gives exactly the ordinary answer -----------------------------------------------------

def test_numpy_ints_and_any_letter_case_give_the_same_spectrum(run):
    """One backend for both (``"auto"`` picks the faster by timing, whose rounding may differ)."""
    ordinary = cw.compute_eigenspectrum(checkpoint_path=run["checkpoint"], lanczos_iters=2, num_samples=64,
                                        backend="double-backward", device="cpu")
    unusual = cw.compute_eigenspectrum(checkpoint_path=run["checkpoint"], dataset="DIGITS", model="mlp",
                                       lanczos_iters=np.int64(2), num_samples=np.int32(64), seed=np.uint8(0),
                                       backend="double-backward", device="cpu")
    assert unusual.ritz_values.tobytes() == ordinary.ritz_values.tobytes()


def test_an_odd_n_points_centres_the_checkpoint(run):
    landscape = cw.Landscape.load(run["landscape"])
    np.testing.assert_array_equal(landscape.offsets, [-0.25, 0.0, 0.25])
    assert landscape.offsets[landscape.centre] == 0.0


# ---- arguments passed on as given ----------------------------------------------------------------------------

def landscape_of(run, **options) -> cw.Landscape:
    arguments = {"checkpoint_path": run["checkpoint"], "spectrum_path": run["spectrum"], "n_points": 3,
                 "batch_size": 2048, "device": "cpu", **options}
    return cw.build_loss_landscape(**arguments)


def test_build_loss_landscape_passes_bn_on(run):
    assert landscape_of(run, bn="recompute", largest=1, smallest=0).meta["bn"] == "recompute"
    assert landscape_of(run, bn="keep", largest=1, smallest=0).meta["bn"] == "keep"


def test_largest_and_smallest_pick_the_ends_of_the_spectrum(run):
    ritz = np.sort(cw.Spectrum.load(run["spectrum"]).ritz_values[0])
    top = landscape_of(run, largest=2, smallest=0)
    np.testing.assert_array_equal(top.curvatures, ritz[::-1][:2])
    bottom = landscape_of(run, largest=0, smallest=1)
    np.testing.assert_array_equal(bottom.curvatures, ritz[:1])
    expected = eigen_directions(cw.Spectrum.load(run["spectrum"]), largest=2, smallest=0)
    assert top.labels == tuple(direction.label for direction in expected)


def test_the_seed_is_passed_on(run):
    random = {seed: landscape_of(run, directions="random", seed=seed) for seed in (0, 1)}
    # the same seed, the same directions (the points per pass are timed: equal to float32 rounding, not bit for bit)
    np.testing.assert_allclose(landscape_of(run, directions="random", seed=1)["train_loss"], random[1]["train_loss"],
                               rtol=1e-6)
    assert np.abs(random[0]["train_loss"] - random[1]["train_loss"]).max() > 1e-4  # far above the rounding
    spectra = {seed: cw.compute_eigenspectrum(checkpoint_path=run["checkpoint"], lanczos_iters=2, num_samples=64,
                                              seed=seed, device="cpu") for seed in (0, 1)}
    assert spectra[1].meta["seed"] == 1
    assert not np.array_equal(spectra[0].ritz_values, spectra[1].ritz_values)

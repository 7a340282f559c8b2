"""Results files under damage and odd input: every field checked on reading, metadata made JSON-safe where a
result is made, and the temporary files of killed writers removed by the next write (issue 17)."""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets._atomic import atomic_path
from curvwidgets.linalg.lanczos import LanczosResult
from curvwidgets.results import ResultFileError, load_result

STEPS, DIM = 4, 6


def spectrum(meta=None, vectors=False):
    """Two full runs of ``STEPS`` steps of a ``DIM``-dimensional operator (a tridiagonal matrix by hand)."""
    run = LanczosResult(alpha=np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 1.5, 2.5, 3.5]]),
                        beta=np.array([[0.5, 0.4, 0.3], [0.2, 0.2, 0.2]]), residual_norm=np.array([0.1, 0.05]),
                        num_steps=np.array([4, 4]), dim=DIM, orthogonality=1e-12)
    ritz = np.ones((2, STEPS, DIM), np.float32) if vectors else None
    return cw.Spectrum(run, ritz, {"matrix": "hessian", "num_vectors": 2} if meta is None else meta)


def landscape(kind="line"):
    offsets = np.linspace(-1.0, 1.0, 3)
    labels = ("largest 1", "random 1")
    shape = (2, 3) if kind == "line" else (3, 3)
    return cw.Landscape(offsets, labels, np.array([2.0, np.nan]), kind,
                        {"train_loss": np.full(shape, 1.0), "train_accuracy": np.full(shape, 0.5)},
                        {"n_points": 3, "directions": list(labels)})


def entries(path):
    with np.load(path, allow_pickle=False) as content:
        arrays = {name: content[name] for name in content.files}
    return arrays, json.loads(str(arrays.pop("meta.json")))


def rewritten(source, target, header=None, meta=None, drop=(), **arrays):
    """``source``'s file written again to ``target`` with entries replaced (``meta`` updates the metadata)."""
    saved, saved_header = entries(source)
    saved_header = {**saved_header, "meta": {**saved_header["meta"], **(meta or {})}, **(header or {})}
    saved.update(arrays)
    for name in drop:
        saved.pop(name, None)
        saved_header["meta"].pop(name, None)
    with open(target, "wb") as handle:
        np.savez(handle, **{"meta.json": np.array(json.dumps(saved_header))}, **saved)
    return target


def assert_refused(reader, path, pattern):
    """``reader(path)`` and ``load_result(path)`` raise a ResultFileError naming ``path`` and matching ``pattern``."""
    for read in (reader, load_result):
        with pytest.raises(ResultFileError) as raised:
            read(path)
        message = str(raised.value)
        assert repr(str(path)) in message and re.search(pattern, message), message


# ---- readers: every field checked -------------------------------------------------------------------------

SPECTRUM_DAMAGE = {
    "negative residual_norm": ({"residual_norm": np.array([-0.1, 0.05])}, None,
                               r"residual_norm must be finite and >= 0; got \[-0\.1, 0\.05\]"),
    "NaN residual_norm": ({"residual_norm": np.array([np.nan, 0.05])}, None, r"residual_norm must be finite"),
    "float num_steps": ({"num_steps": np.array([2.7, 4.0])}, None,
                        r"the array 'num_steps' must be of an integer dtype; got float64"),
    "num_steps 0": ({"num_steps": np.array([0, 4])}, None, r"num_steps must lie in \[1, min\(steps, dim\)\] = \[1, 4\]"),
    "num_steps past the arrays": ({"num_steps": np.array([5, 4])}, None, r"= \[1, 4\]; got \[5, 4\]"),
    "num_steps past dim": ({}, {"dim": 3}, r"= \[1, 3\]; got \[4, 4\]"),
    "negative dim": ({}, {"dim": -6}, r"meta\['dim'\] must be an int >= 1 \(the number of parameters\); got -6"),
    "fractional dim": ({}, {"dim": 6.5}, r"meta\['dim'\] must be an int >= 1 .*; got 6\.5"),
    "text dim": ({}, {"dim": "6"}, r"meta\['dim'\] must be an int >= 1 .*; got '6'"),
    "boolean dim": ({}, {"dim": True}, r"meta\['dim'\] must be an int >= 1 .*; got True"),
    "no dim": ("drop dim", None, r"its metadata has no 'dim' entry"),
    "negative orthogonality": ({}, {"orthogonality": -1.0}, r"meta\['orthogonality'\] must be a number >= 0, or null"),
    "text orthogonality": ({}, {"orthogonality": "small"}, r"meta\['orthogonality'\] must be a number >= 0"),
    "1-D alpha": ({"alpha": np.ones(4)}, None, r"the array 'alpha' must have shape \(any, any\); got \(4,\)"),
    "empty alpha": ({"alpha": np.ones((2, 0))}, None, r"'alpha' must hold one step of one run at least"),
    "beta too wide": ({"beta": np.ones((2, 4))}, None, r"the array 'beta' must have shape \(2, 3\); got \(2, 4\)"),
    "residual_norm of one run": ({"residual_norm": np.ones(1)}, None, r"'residual_norm' must have shape \(2,\)"),
    "num_steps of three runs": ({"num_steps": np.array([4, 4, 4])}, None, r"'num_steps' must have shape \(2,\)"),
    "NaN alpha inside a run": ({"alpha": np.array([[1.0, np.nan, 3.0, 4.0], [0.5, 1.5, 2.5, 3.5]])}, None,
                               r"run 0: alpha must be finite and beta finite and >= 0 over its num_steps = 4 steps"),
    "negative beta": ({"beta": np.array([[0.5, 0.4, 0.3], [0.2, -0.2, 0.2]])}, None, r"run 1: alpha must be finite"),
    "text alpha": ({"alpha": np.array([["1"] * 4] * 2)}, None, r"'alpha' must be of a floating-point dtype; got <U1"),
    "ritz_vectors of another dim": ({"ritz_vectors": np.ones((2, 4, 5), np.float32)}, None,
                                    r"'ritz_vectors' must have shape \(2, 4, 6\); got \(2, 4, 5\)"),
    "num_vectors disagrees": ({}, {"num_vectors": 3}, r"meta\['num_vectors'\] is 3 but the number of runs in the "
                                                      r"arrays is 2"),
    "fingerprint without selection": ({}, {"weights_fingerprint": {"weights": "0" * 64}},
                                      r"meta\['weights_fingerprint'\] must be a dict with the keys 'weights' and "
                                      r"'selection'"),
    "fingerprint as text": ({}, {"weights_fingerprint": "0" * 64}, r"meta\['weights_fingerprint'\] must be a dict"),
    "fingerprint in capitals": ({}, {"weights_fingerprint": {"weights": "A" * 64, "selection": "0" * 64}},
                                r"weights must be a SHA-256 digest of 64 lower-case hex digits"),
}


@pytest.mark.parametrize("case", list(SPECTRUM_DAMAGE))
def test_a_spectrum_file_with_a_bad_field_is_refused_by_name(case, tmp_path):
    arrays, meta, pattern = SPECTRUM_DAMAGE[case]
    source = spectrum(vectors=True).save(tmp_path / "good.npz")
    drop = ("dim",) if arrays == "drop dim" else ()
    target = rewritten(source, tmp_path / "bad.npz", meta=meta, drop=drop, **({} if drop else arrays))
    assert_refused(cw.Spectrum.load, target, pattern)


def test_the_float_num_steps_of_the_issue_is_refused_not_truncated(tmp_path):
    """[2.7] read as 2 would silently change lambda_max; the reader refuses it."""
    source = spectrum().save(tmp_path / "good.npz")
    target = rewritten(source, tmp_path / "bad.npz", num_steps=np.array([2.7, 4.0]))
    with pytest.raises(ResultFileError, match="'num_steps' must be of an integer dtype"):
        cw.Spectrum.load(target)
    assert cw.Spectrum.load(source).summary()["lambda_max"] == spectrum().summary()["lambda_max"]


def test_a_spectrum_without_vectors_or_with_null_orthogonality_still_loads(tmp_path):
    source = spectrum().save(tmp_path / "good.npz")
    target = rewritten(source, tmp_path / "nan.npz", meta={"orthogonality": None})
    loaded = cw.Spectrum.load(target)
    assert loaded.ritz_vectors is None and np.isnan(loaded.lanczos.orthogonality)
    assert loaded.meta == {"matrix": "hessian", "num_vectors": 2}


HEADER_DAMAGE = {
    "meta a list": ({"meta": [1, 2]}, r"the 'meta' entry of its meta\.json must be a JSON object; got list"),
    "header a list": ({"raw": np.array("[1, 2]")}, r"its meta\.json entry must be a JSON object; got list"),
    "header a number array": ({"raw": np.arange(3)}, r"its meta\.json entry must be one text string; got an array "
                                                     r"of dtype int64 and shape \(3,\)"),
    "boolean version": ({"version": True}, r"format version True, newer than"),
}


@pytest.mark.parametrize("case", list(HEADER_DAMAGE))
def test_a_bad_header_is_refused_by_name(case, tmp_path):
    header, pattern = HEADER_DAMAGE[case]
    source = spectrum().save(tmp_path / "good.npz")
    target = tmp_path / "bad.npz"
    arrays, saved_header = entries(source)
    entry = header["raw"] if "raw" in header else np.array(json.dumps({**saved_header, **header}))
    with open(target, "wb") as handle:
        np.savez(handle, **{"meta.json": entry}, **arrays)
    if case == "meta a list":  # load_result reads only the format, which is right
        with pytest.raises(ResultFileError, match=pattern):
            cw.Spectrum.load(target)
    else:
        assert_refused(cw.Spectrum.load, target, pattern)


@pytest.mark.parametrize("reader", [cw.Spectrum.load, cw.Diagonal.load, cw.Landscape.load, load_result])
def test_an_npy_file_renamed_npz_is_refused_by_name(reader, tmp_path):
    target = tmp_path / "x.npz"
    with open(target, "wb") as handle:
        np.save(handle, np.arange(5.0))
    with pytest.raises(ResultFileError) as raised:
        reader(target)
    kind = "curvwidgets result" if reader is load_result else f"curvwidgets.{reader.__self__.__name__}"
    assert str(raised.value) == (f"{str(target)!r} is not a readable {kind} file: it holds a single .npy array, not "
                                 "the npz archive that curvwidgets writes")


DIAGONAL_DAMAGE = {
    "2-D values": (np.ones((2, 3)), r"the array 'values' must have shape \(any,\); got \(2, 3\)"),
    "integer values": (np.arange(3), r"the array 'values' must be of a floating-point dtype; got int64"),
    "NaN values": (np.array([1.0, np.nan, np.inf]), r"no NaN or inf; got 3 values, 2 not finite"),
    "no values": (np.ones(0), r"one finite number at least .*; got 0 values"),
}


@pytest.mark.parametrize("case", list(DIAGONAL_DAMAGE))
def test_a_diagonal_file_with_bad_values_is_refused_by_name(case, tmp_path):
    values, pattern = DIAGONAL_DAMAGE[case]
    source = cw.Diagonal(np.ones(4, np.float32), {"matrix": "ggn_diag"}).save(tmp_path / "good.npz")
    assert_refused(cw.Diagonal.load, rewritten(source, tmp_path / "bad.npz", values=values), pattern)


LANDSCAPE_DAMAGE = {
    "no kind": ({}, None, ("kind",), r"its metadata has no 'kind' entry"),
    "unknown kind": ({}, {"kind": "cube"}, (), r"meta\['kind'\] must be 'line' or 'plane'; got 'cube'"),
    "decreasing offsets": ({"offsets": np.array([1.0, 0.0, -1.0])}, None, (),
                           r"'offsets' must hold finite, strictly increasing steps; got \[1\.0, 0\.0, -1\.0\]"),
    "NaN offset": ({"offsets": np.array([-1.0, np.nan, 1.0])}, None, (), r"strictly increasing steps"),
    "2-D offsets": ({"offsets": np.ones((1, 3))}, None, (), r"'offsets' must have shape \(any,\); got \(1, 3\)"),
    "numeric labels": ({"labels": np.array([1.0, 2.0])}, None, (), r"'labels' must be of text \(a str dtype\); got "
                                                                  r"float64"),
    "three curvatures": ({"curvatures": np.ones(3)}, None, (), r"'curvatures' must have shape \(2,\); got \(3,\)"),
    "infinite curvature": ({"curvatures": np.array([np.inf, 1.0])}, None, (), r"finite numbers or NaN; got \[inf"),
    "n_points disagrees": ({}, {"n_points": 5}, (), r"meta\['n_points'\] is 5 but the number of offsets is 3"),
    "directions disagree": ({}, {"directions": ["a", "b"]}, (), r"meta\['directions'\] is \['a', 'b'\] but the "
                                                                r"array 'labels' is \['largest 1', 'random 1'\]"),
    "unknown metric": ({"values/speed": np.ones((2, 3))}, None, (), r"its values must be one or more of .*; got "
                                                                    r"\['train_loss', 'train_accuracy', 'speed'\]"),
    "no metric": ({}, None, ("values/train_loss", "values/train_accuracy"), r"one or more of .*; got \[\]"),
    "metric of another shape": ({"values/train_loss": np.ones((3, 3))}, None, (),
                                r"'values/train_loss' must have shape \(2, 3\); got \(3, 3\)"),
    "integer metric": ({"values/train_loss": np.ones((2, 3), int)}, None, (), r"'values/train_loss' must be of a "
                                                                              r"floating-point dtype"),
    "accuracy above 1": ({"values/train_accuracy": np.array([[0.5, 1.5, np.nan], [0.1, 0.2, -0.1]])}, None, (),
                         r"train_accuracy must lie in \[0, 1\] \(or be NaN: not computed, or no class targets\); "
                         r"2 values do not"),
    "no computed mask": ({}, None, ("computed",), r"without the arrays \['computed'\]"),
    "computed as numbers": ({"computed": np.ones((2, 3))}, None, (), r"'computed' must be of booleans; got float64"),
    "computed of another shape": ({"computed": np.ones(3, bool)}, None, (),
                                  r"'computed' must have shape \(2, 3\); got \(3,\)"),
    "a value where not computed": ({"computed": np.array([[True, True, False], [True, True, True]])}, None, (),
                                   r"train_loss must be NaN at the points not computed; 1 are not"),
    "malformed fingerprint": ({}, {"weights_fingerprint": {"weights": "abc", "selection": "0" * 64}}, (),
                              r"weights must be a SHA-256 digest of 64 lower-case hex digits; got 'abc'"),
}


@pytest.mark.parametrize("case", list(LANDSCAPE_DAMAGE))
def test_a_landscape_file_with_a_bad_field_is_refused_by_name(case, tmp_path):
    arrays, meta, drop, pattern = LANDSCAPE_DAMAGE[case]
    source = landscape().save(tmp_path / "good.npz")
    assert_refused(cw.Landscape.load, rewritten(source, tmp_path / "bad.npz", meta=meta, drop=drop, **arrays), pattern)


def test_a_plane_file_needs_two_directions(tmp_path):
    source = landscape("plane").save(tmp_path / "plane.npz")
    target = rewritten(source, tmp_path / "bad.npz", labels=np.array(["a", "b", "c"]), curvatures=np.ones(3),
                       meta={"directions": ["a", "b", "c"]})
    assert_refused(cw.Landscape.load, target, r"'labels' must have shape \(2,\); got \(3,\)")
    loaded = cw.Landscape.load(source)
    assert loaded.kind == "plane" and loaded.labels == ("largest 1", "random 1")


# ---- metadata made JSON-safe where it enters --------------------------------------------------------------

def odd_meta():
    return {"epoch": np.int64(3), "lr": np.float32(0.5), "flag": np.bool_(True), "run": Path("runs") / "a",
            "loss": torch.tensor(2.5), "steps": np.array(4), "shape": (1, np.int64(2)), "name": np.str_("vgg"),
            "nested": {"x": [np.float64(1.5), {"y": Path("c")}], "z": torch.tensor(True)}, "gap": float("nan"),
            "none": None}


NORMALISED = {"epoch": 3, "lr": 0.5, "flag": True, "run": os.path.join("runs", "a"), "loss": 2.5, "steps": 4,
              "shape": [1, 2], "name": "vgg", "nested": {"x": [1.5, {"y": "c"}], "z": True}, "none": None}


def plain_types(value):
    """The Python types of ``value``, recursively (to tell 3 from np.int64(3), which compare equal)."""
    if isinstance(value, dict):
        return {key: plain_types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_types(item) for item in value]
    return type(value)


MAKERS = {"Spectrum": lambda meta: spectrum(meta),
          "Spectrum.from_lanczos": lambda meta: cw.Spectrum.from_lanczos(spectrum().lanczos, meta=meta),
          "Diagonal": lambda meta: cw.Diagonal(np.ones(3, np.float32), meta),
          "Landscape": lambda meta: cw.Landscape(np.zeros(1), ("a",), np.ones(1), "line",
                                                 {"train_loss": np.ones((1, 1))}, meta)}


@pytest.mark.parametrize("make", list(MAKERS))
def test_meta_is_made_json_safe_when_the_result_is_made(make, tmp_path):
    result = MAKERS[make](odd_meta())
    assert isinstance(result.meta["gap"], float) and np.isnan(result.meta["gap"])
    kept = {key: value for key, value in result.meta.items() if key != "gap"}
    assert kept == NORMALISED and plain_types(kept) == plain_types(NORMALISED)
    saved = result.save(tmp_path / "result")
    loaded = load_result(saved)
    assert {key: value for key, value in loaded.meta.items() if key in NORMALISED} == NORMALISED
    assert loaded.meta["gap"] is None


@pytest.mark.parametrize("make", list(MAKERS))
@pytest.mark.parametrize("meta, error, pattern", [
    ({"epoch": object()}, TypeError, r"^meta\['epoch'\] must be None, bool, int, float, str, a path, a single-number "
                                     r"\(0-d\) array or tensor, or a list, tuple or str-keyed dict of these; got object"),
    ({"nested": {"t": torch.ones(3)}}, TypeError, r"^meta\['nested'\]\['t'\] must be .*; got an array of shape \(3,\) "
                                                  r"\(give value\.tolist\(\) to keep its numbers as a list\)"),
    ({"a": [1, np.ones((2, 2))]}, TypeError, r"^meta\['a'\]\[1\] must be .*; got an array of shape \(2, 2\)"),
    ({1: "one"}, TypeError, r"^meta must have str keys; got the key 1 of type int"),
    ({"d": {(1, 2): 3}}, TypeError, r"^meta\['d'\] must have str keys; got the key \(1, 2\) of type tuple"),
    ({"s": {1, 2}}, TypeError, r"^meta\['s'\] must be .*; got set"),
    ({"b": b"raw"}, TypeError, r"^meta\['b'\] must be .*; got bytes"),
    ({"c": np.complex128(1j)}, TypeError, r"^meta\['c'\] must be .*; got complex"),
    (["epoch", 3], TypeError, r"^meta must be a dict with str keys; got list"),
])
def test_meta_that_cannot_be_kept_is_refused_by_its_key_path(make, meta, error, pattern):
    with pytest.raises(error, match=pattern):
        MAKERS[make](meta)


def test_the_issue_example_saves(tmp_path):
    """``meta={"epoch": np.int64(3)}`` used to fail at save time with 'int64 is not JSON serializable'."""
    saved = spectrum({"epoch": np.int64(3)}).save(tmp_path / "s")
    assert cw.Spectrum.load(saved).meta == {"epoch": 3}


# ---- temporary files of interrupted writes ----------------------------------------------------------------

def host():
    return socket.gethostname().replace(".", "-") or "localhost"


def test_the_temporary_name_says_target_host_and_process(tmp_path):
    with atomic_path(tmp_path / "spectrum.npz") as temporary:
        assert temporary.parent == tmp_path
        assert re.fullmatch(rf"\.spectrum\.npz\.{re.escape(host())}\.{os.getpid()}\.[a-z0-9_]+\.partial\.npz",
                            temporary.name), temporary.name
        temporary.write_bytes(b"x")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["spectrum.npz"]


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
    return int(finished.stdout)


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    dead = dead_pid()
    names = {"dead": f".s.npz.{host()}.{dead}.abc123.partial.npz",
             "this process": f".s.npz.{host()}.{os.getpid()}.abc123.partial.npz",
             "parent process": f".s.npz.{host()}.{os.getppid()}.abc123.partial.npz",
             "other host": f".s.npz.elsewhere.{dead}.abc123.partial.npz",
             "other target": f".t.npz.{host()}.{dead}.abc123.partial.npz",
             "not a pid": f".s.npz.{host()}.x1.abc123.partial.npz",
             "not partial": f".s.npz.{host()}.{dead}.abc123.npz"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"old")
    spectrum().save(tmp_path / "s.npz")
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {"s.npz"} | {name for what, name in names.items() if what != "dead"}


KILLED_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import curvwidgets as cw
    from curvwidgets.linalg.lanczos import LanczosResult

    dim = 50_000_000  # 2 x 200 MB of float32 Ritz vectors: long enough to be killed in the middle
    run = LanczosResult(alpha=np.array([[1.0, 2.0]]), beta=np.array([[0.5]]), residual_norm=np.array([0.1]),
                        num_steps=np.array([2]), dim=dim)
    spectrum = cw.Spectrum(run, np.ones((1, 2, dim), np.float32), {"matrix": "hessian"})
    print("ready", flush=True)
    spectrum.save(sys.argv[1])
""")


def test_a_writer_killed_mid_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "big.npz"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".big.npz.*.partial.npz")) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=60)
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    left = list(tmp_path.iterdir())
    assert not target.exists() and len(left) == 1
    assert re.fullmatch(rf"\.big\.npz\.{re.escape(host())}\.{writer.pid}\.[a-z0-9_]+\.partial\.npz", left[0].name)
    spectrum().save(target)
    assert list(tmp_path.iterdir()) == [target]
    assert cw.Spectrum.load(target).meta == {"matrix": "hessian", "num_vectors": 2}


def test_a_landscape_file_of_version_1_reads_its_finite_points_as_the_computed_ones(tmp_path):
    partial = landscape()
    values = {name: array.copy() for name, array in partial.values.items()}
    for array in values.values():
        array[1, 2] = np.nan
    computed = np.ones((2, 3), bool)
    computed[1, 2] = False
    source = cw.Landscape(partial.offsets, partial.labels, partial.curvatures, "line", values, partial.meta,
                          computed).save(tmp_path / "v2.npz")
    old = rewritten(source, tmp_path / "v1.npz", header={"version": 1}, drop=("computed",))
    loaded = cw.Landscape.load(old)
    np.testing.assert_array_equal(loaded.computed, computed)
    assert not loaded.not_finite.any()


@pytest.mark.parametrize("computed, message", [
    (np.ones((2, 3)), r"computed must be a bool array of shape \(2, 3\); got dtype float64"),
    (np.ones(3, bool), r"computed must be a bool array of shape \(2, 3\); got dtype bool and shape \(3,\)"),
    (np.zeros((2, 3), bool), r"train_loss must be NaN at the points not computed \(computed False\); 6 are not"),
])
def test_a_landscape_made_with_a_bad_computed_mask_is_refused(computed, message):
    made = landscape()
    with pytest.raises(ValueError, match=message):
        cw.Landscape(made.offsets, made.labels, made.curvatures, "line", made.values, made.meta, computed)


# ---- training histories --------------------------------------------------------------------------------------

def history():
    rows = [{"epoch": 1, "lr": 0.1, "train_loss": 2.0, "test_loss": float("nan")},
            {"epoch": 2, "lr": 0.05, "train_loss": 1.5, "test_loss": 1.7}]
    return cw.TrainingHistory(rows=rows, config={"model": "MLP"}, final={"swa_test_loss": float("nan"),
                                                                        "swa_test_top1": 0.5},
                              checkpoints=["run/checkpoint-00001.pt"])


def test_a_history_round_trip_keeps_final_and_reads_null_as_nan(tmp_path):
    loaded = cw.TrainingHistory.load(history().save(tmp_path / "history.json"))
    assert math.isnan(loaded.rows[0]["test_loss"]) and loaded.rows[1] == history().rows[1]
    assert math.isnan(loaded.final["swa_test_loss"]) and loaded.final["swa_test_top1"] == 0.5
    assert loaded.config == {"model": "MLP"} and loaded.checkpoints == ["run/checkpoint-00001.pt"]
    assert json.loads((tmp_path / "history.json").read_text())["final"]["swa_test_loss"] is None


HISTORY_DAMAGE = {
    "rows an object": ({"rows": {"epoch": 1}}, r"rows must be a JSON array; got \{'epoch': 1\}"),
    "a row a number": ({"rows": [3]}, r"rows\[0\] must be a dict with an 'epoch' and columns of"),
    "a row without epoch": ({"rows": [{"lr": 0.1}]}, r"rows\[0\] must be a dict with an 'epoch'"),
    "an unknown column": ({"rows": [{"epoch": 1, "speed": 3}]}, r"rows\[0\] must be a dict .*got \{'epoch': 1, "
                                                               r"'speed': 3\}"),
    "a text value": ({"rows": [{"epoch": 1, "lr": "0.1"}]}, r"rows\[0\]\['lr'\] must be a number \(or null for NaN\); "
                                                           r"got '0\.1'"),
    "a boolean value": ({"rows": [{"epoch": 1, "lr": True}]}, r"rows\[0\]\['lr'\] must be a number"),
    "epochs going back": ({"rows": [{"epoch": 2}, {"epoch": 1}]}, r"epochs must be increasing whole numbers >= 1; "
                                                                 r"got \[2, 1\]"),
    "a fractional epoch": ({"rows": [{"epoch": 1.5}]}, r"increasing whole numbers >= 1; got \[1\.5\]"),
    "epoch 0": ({"rows": [{"epoch": 0}]}, r"increasing whole numbers >= 1; got \[0\]"),
    "final a list": ({"final": [1.0]}, r"final must be a JSON object; got \[1\.0\]"),
    "a text final": ({"final": {"swa_test_loss": "low"}}, r"final\['swa_test_loss'\] must be a number"),
    "config missing": ({"config": None}, r"config must be a JSON object; got None"),
    "checkpoints a path": ({"checkpoints": "run/c.pt"}, r"checkpoints must be a JSON array"),
    "a checkpoint a number": ({"checkpoints": [1]}, r"checkpoints must be a list of paths \(str\); got \[1\]"),
    "version text": ({"version": "1"}, r"version must be an int >= 1; got '1'"),
}


@pytest.mark.parametrize("case", list(HISTORY_DAMAGE))
def test_a_history_file_with_a_bad_field_is_refused_by_name(case, tmp_path):
    change, pattern = HISTORY_DAMAGE[case]
    content = json.loads(history().save(tmp_path / "good.json").read_text())
    content.update(change)
    if change.get("config", 0) is None:
        del content["config"]
    target = tmp_path / "history.json"
    target.write_text(json.dumps(content))
    with pytest.raises(ResultFileError) as raised:
        cw.TrainingHistory.load(target)
    message = str(raised.value)
    assert message.startswith(f"{str(target)!r} is not a readable training history") and re.search(pattern, message), \
        message


def test_history_files_of_version_1_load_and_newer_ones_are_named(tmp_path):
    """Version 2 added the measurements table: a version-1 file (rows only) still loads; version 3 is refused by name."""
    old = {"format": "curvwidgets.TrainingHistory", "version": 1, "rows": [{"epoch": 1, "lr": 0.1, "train_loss": 0.5}],
           "config": {}, "final": {}, "checkpoints": []}
    path = tmp_path / "history.json"
    path.write_text(json.dumps(old))
    loaded = cw.TrainingHistory.load(path)
    assert loaded.rows == old["rows"] and loaded.measurements == [] and loaded.stability_thresholds().tolist() == [20.0]
    assert loaded.to_dict()["version"] == 2
    path.write_text(json.dumps({**old, "version": 3}))
    with pytest.raises(ResultFileError, match="training history version 3 is newer than this curvwidgets reads"):
        cw.TrainingHistory.load(path)

"""Spectrum, Diagonal and Landscape files and checkpoints: exact round trips, clear errors, no partial files.

References are closed forms of a Lanczos run on a small dense matrix with a
known eigendecomposition (Gauss weights are the squared projections of the
start vector on the eigenvectors; ``P * alpha_1`` is the trace estimate).
"""

import dataclasses
import json
import math
import zipfile

import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets.results import ZERO_BAND, ResultFileError, load_result, npz_path
from curvwidgets.training.checkpoint import CheckpointError

# eigenvalues of the test matrix: two negative ones well below the zero band, one inside it, positive ones above
EIGENVALUES = np.array([-2.0, -0.5, -1e-4, 0.3, 0.7, 1.1, 1.6, 2.2, 3.0, 5.0])
P = EIGENVALUES.size


def dense_matrix(seed: int = 3):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((P, P)))
    return (basis * EIGENVALUES) @ basis.T, basis


@pytest.fixture(scope="module")
def problem():
    """A full run, an early-stopped run (start vector in a 3-dimensional invariant subspace) and their references."""
    matrix, basis = dense_matrix()
    rng = np.random.default_rng(7)
    full_start = rng.standard_normal(P)
    short_start = basis[:, [0, 4, 9]] @ np.array([0.6, -0.3, 0.7])  # eigenvalues -2, 0.7 and 5 only
    starts = np.stack([full_start, short_start])
    run = cw.lanczos(matrix, P, num_vectors=2, start=starts, store_vectors=True)
    spectrum = cw.Spectrum.from_lanczos(run, meta={"matrix": "hessian", "model": "dense", "steps": P, "seed": 7,
                                                   "seconds": 0.25, "params": ["a", "b"], "data": None},
                                        save_vectors=True)
    unit = starts / np.linalg.norm(starts, axis=1, keepdims=True)
    weights = (unit @ basis) ** 2  # Gauss weight of each eigenvalue, per start vector
    return {"matrix": matrix, "basis": basis, "starts": starts, "unit": unit, "run": run, "spectrum": spectrum,
            "weights": weights}


def assert_same_array(loaded: np.ndarray, saved: np.ndarray) -> None:
    """Bit for bit, NaN included, and the same dtype and shape."""
    assert loaded.dtype == saved.dtype and loaded.shape == saved.shape
    assert loaded.tobytes() == saved.tobytes()


def landscape_example() -> cw.Landscape:
    offsets = np.linspace(-0.5, 0.5, 5)
    train = np.array([[1.2, 1.05, 1.0, 1.07, 1.3], [1.1, 1.02, 1.0, 0.99, 1.01]])
    values = {"train_loss": train, "train_accuracy": np.full((2, 5), 0.75),
              "test_loss": train + 0.1, "test_accuracy": np.full((2, 5), 0.5)}
    computed = np.ones((2, 5), dtype=bool)
    computed[1, 3:] = False  # a partial result: the last points were not computed
    for array in values.values():
        array[~computed] = np.nan
    values["train_loss"][0, 4], values["test_loss"][0, 4] = np.inf, np.nan  # computed, and diverged there
    return cw.Landscape(offsets, ("largest 1 (theta = 5)", "random 1"), np.array([5.0, np.nan]), "line", values,
                        {"dist": 0.5, "n_points": 5, "bn": "keep", "model": "MLP", "epoch": 3}, computed)


# ---- the run the files hold ------------------------------------------------------------------------------

def test_the_early_stopped_run_is_padded(problem):
    run = problem["run"]
    assert list(run.num_steps) == [P, 3]
    assert np.isnan(run.ritz_values[1, 3:]).all() and np.isnan(problem["spectrum"].ritz_vectors[1, 3:]).all()
    assert np.isfinite(problem["spectrum"].ritz_vectors[1, :3]).all()


def test_summary_numbers_match_the_dense_eigendecomposition(problem):
    spectrum, weights, unit, matrix = problem["spectrum"], problem["weights"], problem["unit"], problem["matrix"]
    # full run: Ritz values are the eigenvalues, Gauss weights the squared projections of the start vector
    np.testing.assert_allclose(spectrum.ritz_values[0], EIGENVALUES, atol=1e-12)
    np.testing.assert_allclose(spectrum.ritz_weights[0], weights[0], atol=1e-12)
    # early-stopped run: the three eigenvalues of its invariant subspace, with their weights
    np.testing.assert_allclose(spectrum.lanczos.nodes(1), EIGENVALUES[[0, 4, 9]], atol=1e-12)
    np.testing.assert_allclose(spectrum.lanczos.weights(1), weights[1, [0, 4, 9]], atol=1e-12)

    nodes, pooled = spectrum.stem()
    assert nodes.size == P + 3 and pooled.sum() == pytest.approx(1.0, abs=1e-14)
    negative = EIGENVALUES < 0
    expected_mass = (weights[0, negative].sum() + weights[1, negative].sum()) / 2
    beyond = EIGENVALUES < -ZERO_BAND * EIGENVALUES.max()
    assert beyond.sum() == 2 and negative.sum() == 3  # the -1e-4 node is inside the zero band
    expected_beyond = (weights[0, beyond].sum() + weights[1, beyond].sum()) / 2
    expected_trace = P * np.mean([u @ matrix @ u for u in unit])  # P * alpha_1, averaged over start vectors
    assert spectrum.negative_mass() == pytest.approx(expected_mass, abs=1e-12)
    assert spectrum.negative_mass(below=-ZERO_BAND * 5.0) == pytest.approx(expected_beyond, abs=1e-12)
    assert spectrum.trace_estimate() == pytest.approx(expected_trace, rel=1e-12)
    np.testing.assert_allclose(spectrum.extremes(), [[5.0, -2.0], [5.0, -2.0]], atol=1e-12)

    summary = spectrum.summary()
    assert summary["lambda_max"] == pytest.approx(5.0, abs=1e-12)
    assert summary["lambda_min"] == pytest.approx(-2.0, abs=1e-12)
    assert summary["negative_mass"] == pytest.approx(expected_mass, abs=1e-12)
    assert summary["negative_mass_beyond_zero"] == pytest.approx(expected_beyond, abs=1e-12)
    assert summary["trace_estimate"] == pytest.approx(expected_trace, rel=1e-12)
    assert (summary["steps"], summary["num_vectors"], summary["dim"]) == (P, 2, P)
    assert summary["converged"] == P + 3  # invariant subspaces: every Ritz pair is exact


def test_ritz_vectors_are_unit_eigenvectors(problem):
    spectrum, matrix = problem["spectrum"], problem["matrix"]
    assert spectrum.ritz_vectors.dtype == np.float32 and spectrum.ritz_vectors.shape == (2, P, P)
    for run, count in enumerate(spectrum.lanczos.num_steps):
        vectors = spectrum.ritz_vectors[run, :count].astype(np.float64)
        values = spectrum.lanczos.nodes(run)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(vectors @ matrix, vectors * values[:, None], atol=1e-5)


def test_truncate_equals_a_shorter_run_from_the_same_start(problem):
    spectrum = problem["spectrum"]
    short = spectrum.truncate(4)
    fresh = cw.lanczos(problem["matrix"], 4, num_vectors=2, start=problem["starts"])
    assert short.ritz_vectors is None and short.meta["steps"] == 4 and short.meta["model"] == "dense"
    assert list(short.lanczos.num_steps) == [4, 3]
    np.testing.assert_allclose(short.ritz_values, fresh.ritz_values, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(short.ritz_weights, fresh.ritz_weights, atol=1e-12)
    # the first moment does not depend on the number of steps
    assert short.trace_estimate() == pytest.approx(spectrum.trace_estimate(), rel=1e-12)
    with pytest.raises(ValueError, match="k must be an int"):
        spectrum.truncate(P + 1)


def test_save_vectors_needs_a_stored_basis(problem):
    bare = cw.lanczos(problem["matrix"], 3)
    with pytest.raises(ValueError, match="store_vectors=True"):
        cw.Spectrum.from_lanczos(bare, save_vectors=True)


# ---- exact round trips ------------------------------------------------------------------------------------

def test_spectrum_round_trip_is_exact_and_adds_the_suffix(problem, tmp_path):
    spectrum = problem["spectrum"]
    written = spectrum.save(tmp_path / "spectra" / "spectrum-00300-ggn_lanczos")
    assert written == tmp_path / "spectra" / "spectrum-00300-ggn_lanczos.npz" and written.is_file()
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]  # no temporary left beside it
    for name in (written, tmp_path / "spectra" / "spectrum-00300-ggn_lanczos"):  # with or without the suffix
        loaded = cw.Spectrum.load(name)
        run, again = spectrum.lanczos, loaded.lanczos
        for field in ("alpha", "beta", "residual_norm"):
            assert_same_array(getattr(again, field), getattr(run, field))
        assert np.array_equal(again.num_steps, run.num_steps) and again.num_steps.dtype == np.int64
        assert again.dim == run.dim and again.orthogonality == run.orthogonality
        for field in ("ritz_values", "ritz_weights", "residual_estimates"):
            assert_same_array(getattr(loaded, field), getattr(spectrum, field))
        assert_same_array(loaded.ritz_vectors, spectrum.ritz_vectors)  # float32, NaN rows of the short run
        assert loaded.meta == spectrum.meta
        assert loaded.summary() == spectrum.summary()
        assert [a.tobytes() for a in loaded.stem()] == [a.tobytes() for a in spectrum.stem()]


def test_spectrum_without_vectors_and_with_nan_orthogonality(problem, tmp_path):
    run = dataclasses.replace(problem["run"], basis=None, orthogonality=math.nan)
    spectrum = cw.Spectrum.from_lanczos(run, meta={"matrix": "ggn"})
    loaded = cw.Spectrum.load(spectrum.save(tmp_path / "bare.npz"))
    assert loaded.ritz_vectors is None and math.isnan(loaded.lanczos.orthogonality)
    assert_same_array(loaded.lanczos.alpha, spectrum.lanczos.alpha)
    assert loaded.meta == {"matrix": "ggn"}
    assert isinstance(load_result(tmp_path / "bare"), cw.Spectrum)


def test_diagonal_round_trip_and_histogram(tmp_path):
    values = np.random.default_rng(0).gamma(0.5, size=200).astype(np.float32)
    values[:3] = [0.0, 0.0, 7.5]
    diagonal = cw.Diagonal(values, {"matrix": "ggn_diag", "num_mc": 1, "seed": 0})
    written = diagonal.save(tmp_path / "spectrum-00300-ggn_diag")
    assert written.suffix == ".npz"
    loaded = load_result(tmp_path / "spectrum-00300-ggn_diag")
    assert isinstance(loaded, cw.Diagonal)
    assert_same_array(loaded.values, values)
    assert loaded.meta == diagonal.meta
    fractions, edges = loaded.histogram(bins=12)
    counts, expected_edges = np.histogram(values, bins=12)
    np.testing.assert_array_equal(edges, expected_edges)
    np.testing.assert_array_equal(fractions, counts / values.size)
    assert fractions.sum() == pytest.approx(1.0, abs=1e-12)


def test_landscape_round_trip_keeps_the_nan_of_a_partial_result(tmp_path):
    landscape = landscape_example()
    written = landscape.save(tmp_path / "losslandscape-00300.npz")
    assert written == tmp_path / "losslandscape-00300.npz"
    for loaded in (cw.Landscape.load(written), cw.Landscape.load(tmp_path / "losslandscape-00300"),
                   load_result(written)):
        assert isinstance(loaded, cw.Landscape)
        assert loaded.kind == "line" and loaded.labels == landscape.labels
        assert_same_array(loaded.offsets, landscape.offsets)
        assert_same_array(loaded.curvatures, landscape.curvatures)
        assert sorted(loaded.values) == sorted(landscape.values)
        for name, array in landscape.values.items():
            assert_same_array(loaded[name], array)
        assert loaded.meta == landscape.meta
        np.testing.assert_array_equal(loaded.done, landscape.done)
        assert loaded.done.sum() == 8
        assert np.argwhere(loaded.not_finite).tolist() == [[0, 4]]  # computed, not finite: not "not computed"
        assert loaded.not_finite_note() == ("the loss is NaN or infinite at 1 of 8 points computed (the model "
                                            "diverges there): along 'largest 1 (theta = 5)' for t in [0.5, 0.5]")


def test_plane_landscape_round_trip(tmp_path):
    offsets = np.linspace(-1, 1, 3)
    grid = offsets[:, None] ** 2 + 2 * offsets[None, :] ** 2
    plane = cw.Landscape(offsets, ("a", "b"), np.array([2.0, 4.0]), "plane", {"train_loss": grid}, {"dist": 1.0})
    loaded = cw.Landscape.load(plane.save(tmp_path / "plane"))
    assert loaded.kind == "plane" and loaded.labels == ("a", "b")
    assert_same_array(loaded["train_loss"], grid)
    assert loaded.meta == {"dist": 1.0}


def test_landscape_curvature_and_quadratic_model_on_a_quadratic():
    offsets = np.linspace(-0.3, 0.3, 7)
    a, b, c = np.array([[2.5], [-0.75]]), np.array([[0.4], [-1.0]]), 1.3
    values = {"train_loss": c + b * offsets + a * offsets ** 2}  # second derivative 2a
    landscape = cw.Landscape(offsets, ("x", "y"), np.array([5.0, -1.5]), "line", values)
    np.testing.assert_allclose(landscape.curvature_at_zero(), 2 * a[:, 0], rtol=1e-10)
    assert landscape.centre == 3
    np.testing.assert_allclose(landscape.quadratic_model(), c + 0.5 * np.array([[5.0], [-1.5]]) * offsets ** 2,
                               rtol=1e-14)
    # uneven spacing around t = 0 is still exact for a quadratic
    uneven = np.array([-0.5, -0.1, 0.0, 0.3, 0.45])
    skewed = cw.Landscape(uneven, ("x",), np.array([np.nan]), "line",
                          {"train_loss": (1 + 0.2 * uneven + 3.0 * uneven ** 2)[None]})
    assert skewed.curvature_at_zero()[0] == pytest.approx(6.0, rel=1e-10)
    with pytest.raises(ValueError, match="both sides"):
        cw.Landscape(np.linspace(0, 1, 3), ("x",), np.array([1.0]), "line",
                     {"train_loss": np.ones((1, 3))}).curvature_at_zero()


def test_landscape_rejects_a_bad_shape_or_metric():
    with pytest.raises(ValueError, match="train_loss must have shape"):
        cw.Landscape(np.zeros(3), ("a",), np.array([np.nan]), "line", {"train_loss": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="unknown landscape metric"):
        cw.Landscape(np.zeros(3), ("a",), np.array([np.nan]), "line", {"val_loss": np.zeros((1, 3))})
    with pytest.raises(ValueError, match="kind must be"):
        cw.Landscape(np.zeros(3), ("a",), np.array([np.nan]), "cube", {})


def test_npz_path_adds_the_suffix_only_when_missing(tmp_path):
    assert npz_path(tmp_path / "spectrum-00300-ggn_lanczos") == tmp_path / "spectrum-00300-ggn_lanczos.npz"
    assert npz_path(tmp_path / "a.npz") == tmp_path / "a.npz"
    assert npz_path("run.v2/spectrum") == npz_path("run.v2/spectrum.npz")


# ---- damaged and foreign files ------------------------------------------------------------------------------

def saved_spectrum(problem, folder):
    return problem["spectrum"].save(folder / "spectrum.npz")


@pytest.mark.parametrize("keep", [0, 64, 0.5, -1])
def test_a_truncated_or_empty_file_is_a_clear_error(problem, tmp_path, keep):
    written = saved_spectrum(problem, tmp_path)
    content = written.read_bytes()
    size = int(len(content) * keep) if isinstance(keep, float) else (len(content) + keep if keep < 0 else keep)
    written.write_bytes(content[:size])
    for reader in (cw.Spectrum.load, load_result):
        with pytest.raises(ResultFileError) as raised:
            reader(written)
        assert str(written) in str(raised.value)
        assert isinstance(raised.value, ValueError)


def test_random_bytes_are_a_clear_error(tmp_path):
    target = tmp_path / "noise.npz"
    target.write_bytes(np.random.default_rng(0).bytes(3000))
    for reader in (cw.Spectrum.load, cw.Landscape.load, cw.Diagonal.load, load_result):
        with pytest.raises(ResultFileError, match="noise.npz"):
            reader(target)


def test_an_npz_of_pickled_objects_is_refused_without_advice_to_unpickle_it(tmp_path):
    target = tmp_path / "objects.npz"
    np.savez(target, **{"meta.json": np.array([{"format": "curvwidgets.Spectrum"}], dtype=object)})
    for reader in (cw.Spectrum.load, cw.Landscape.load):
        with pytest.raises(ResultFileError, match="objects.npz") as raised:
            reader(target)
        assert "pickled objects" in str(raised.value) and "allow_pickle" not in str(raised.value)


def write_npz_by_hand(path, header, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **{"meta.json": np.array(json.dumps(header))}, **arrays)


def test_a_newer_format_version_is_a_clear_error(problem, tmp_path):
    run = problem["run"]
    target = tmp_path / "future.npz"
    write_npz_by_hand(target, {"format": "curvwidgets.Spectrum", "version": 99, "meta": {"dim": P}},
                      alpha=run.alpha, beta=run.beta, residual_norm=run.residual_norm, num_steps=run.num_steps)
    for reader in (cw.Spectrum.load, load_result):
        with pytest.raises(ResultFileError) as raised:
            reader(target)
        message = str(raised.value)
        assert str(target) in message and "99" in message and "newer" in message
    landscape = tmp_path / "future-landscape.npz"
    write_npz_by_hand(landscape, {"format": "curvwidgets.Landscape", "version": 3, "meta": {"kind": "line"}},
                      offsets=np.zeros(3))
    with pytest.raises(ResultFileError, match="version 3, newer"):
        cw.Landscape.load(landscape)


def test_a_foreign_npz_is_a_clear_error(tmp_path):
    foreign = tmp_path / "weights.npz"
    np.savez(foreign, x=np.arange(3))
    for reader in (cw.Spectrum.load, cw.Diagonal.load, cw.Landscape.load, load_result):
        with pytest.raises(ResultFileError) as raised:
            reader(foreign)
        assert str(foreign) in str(raised.value)
    other = tmp_path / "other.npz"
    write_npz_by_hand(other, {"format": "somebody.Else", "version": 1, "meta": {}}, x=np.zeros(2))
    with pytest.raises(ResultFileError, match="somebody.Else"):
        cw.Spectrum.load(other)
    with pytest.raises(ResultFileError, match="somebody.Else"):
        load_result(other)
    not_json = tmp_path / "not-json.npz"
    np.savez(not_json, **{"meta.json": np.array("{oops")})
    with pytest.raises(ResultFileError, match="not-json.npz"):
        cw.Spectrum.load(not_json)


def test_a_result_of_another_kind_is_refused_by_name(problem, tmp_path):
    landscape = landscape_example().save(tmp_path / "land.npz")
    with pytest.raises(ResultFileError, match="curvwidgets.Landscape"):
        cw.Spectrum.load(landscape)
    spectrum = saved_spectrum(problem, tmp_path)
    with pytest.raises(ResultFileError, match="curvwidgets.Spectrum"):
        cw.Landscape.load(spectrum)


def test_a_file_missing_its_arrays_is_a_clear_error(tmp_path):
    target = tmp_path / "hollow.npz"
    write_npz_by_hand(target, {"format": "curvwidgets.Spectrum", "version": 1, "meta": {"dim": 4}}, alpha=np.ones((1, 2)))
    with pytest.raises(ResultFileError, match=r"hollow.npz.*without the arrays"):
        cw.Spectrum.load(target)


def test_a_missing_file_is_file_not_found(tmp_path):
    for reader in (cw.Spectrum.load, load_result):
        with pytest.raises(FileNotFoundError, match="nothing-here"):
            reader(tmp_path / "nothing-here")


def test_a_write_that_fails_midway_leaves_no_partial_file(problem, tmp_path, monkeypatch):
    from numpy.lib import _npyio_impl

    original = _npyio_impl.format.write_array
    calls = []

    def failing(handle, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 3:  # two entries are in the archive already
            handle.write(b"\x00" * 100)
            raise OSError("disk full")
        return original(handle, array, *args, **kwargs)

    monkeypatch.setattr(_npyio_impl.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        problem["spectrum"].save(tmp_path / "spectrum")
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []
    # over an existing file: the old one stays whole
    monkeypatch.setattr(_npyio_impl.format, "write_array", original)
    landscape = landscape_example()
    target = landscape.save(tmp_path / "land")
    before = target.read_bytes()
    calls.clear()
    monkeypatch.setattr(_npyio_impl.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        problem["spectrum"].save(target)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]
    assert isinstance(load_result(target), cw.Landscape)


def test_saved_files_are_plain_npz_without_pickles(problem, tmp_path):
    written = saved_spectrum(problem, tmp_path)
    with zipfile.ZipFile(written) as archive:
        names = sorted(archive.namelist())
    assert "meta.json.npy" in names and "ritz_vectors.npy" in names
    with np.load(written, allow_pickle=False) as content:
        header = json.loads(str(content["meta.json"]))
    assert header["format"] == "curvwidgets.Spectrum" and header["version"] == 1 and header["meta"]["dim"] == P


# ---- checkpoints -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One epoch of the named MLP on a tiny synthetic set: a real checkpoint to damage."""
    folder = tmp_path_factory.mktemp("run")
    data = cw.data.load("synthetic", num_samples=64, num_test=32, num_classes=3, batch_size=32)
    history = cw.train("MLP", data, 1, out_dir=folder, device="cpu", optimizer_kwargs={"lr": 0.01})
    return folder / "checkpoint-00001.pt", history


def test_load_trained_rebuilds_the_model_exactly(tiny_run):
    checkpoint, history = tiny_run
    for source in (checkpoint, checkpoint.parent):  # a file, or the run's folder (its latest checkpoint)
        trained = cw.load_trained(source, device="cpu", data=False)
        assert trained.checkpoint == str(checkpoint) and trained.epoch == 1 and trained.name == "MLP"
        assert trained.data is None and not trained.swa and not trained.model.training
        assert isinstance(trained.model, cw.models.MLP)
        expected = history.model.state_dict()
        loaded = trained.model.state_dict()
        assert sorted(loaded) == sorted(expected)
        for name, tensor in expected.items():
            assert torch.equal(loaded[name], tensor), name
        assert trained.history.rows == history.rows
        assert trained.metadata() == {"model": "MLP", "checkpoint": str(checkpoint), "epoch": 1, "data": "synthetic",
                                      "seed": 0}


def test_load_trained_reloads_the_data_set_it_was_trained_on(tiny_run):
    """The checkpoint names ``synthetic`` with 64 samples of 3 classes: that is the data a user expects back."""
    checkpoint, history = tiny_run
    trained = cw.load_trained(checkpoint, device="cpu")
    assert trained.data.num_classes == 3
    assert trained.data.train.num_samples == 64


def damaged_copies(checkpoint, folder):
    content = checkpoint.read_bytes()
    files = {"truncated": content[: len(content) // 2], "empty": b"",
             "random": np.random.default_rng(1).bytes(5000), "tail-cut": content[:-20]}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(data)
    paths["foreign"] = folder / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, paths["foreign"])
    paths["list"] = folder / "list.pt"
    torch.save([1, 2, 3], paths["list"])
    return paths


def test_damaged_or_foreign_checkpoints_are_clear_errors(tiny_run, tmp_path):
    checkpoint, _ = tiny_run
    for name, path in damaged_copies(checkpoint, tmp_path).items():
        with pytest.raises(CheckpointError) as raised:
            cw.load_trained(path, device="cpu", data=False)
        message = str(raised.value)
        assert str(path) in message, name
        assert "weights_only=False" not in message and "weights_only" not in message.replace("weights_only=True", ""), \
            name
        assert isinstance(raised.value, ValueError)


def rewritten(checkpoint, target, change):
    state = torch.load(checkpoint, weights_only=True)
    change(state)
    torch.save(state, target)
    return target


def test_a_newer_checkpoint_version_is_a_clear_error(tiny_run, tmp_path):
    checkpoint, _ = tiny_run
    target = rewritten(checkpoint, tmp_path / "checkpoint-00001.pt", lambda state: state.update(version=7))
    with pytest.raises(CheckpointError) as raised:
        cw.load_trained(target, device="cpu", data=False)
    assert str(target) in str(raised.value) and "7" in str(raised.value) and "newer" in str(raised.value)


def test_an_unknown_model_name_is_a_clear_error(tiny_run, tmp_path):
    checkpoint, _ = tiny_run

    def rename(state):
        state["config"]["architecture"]["name"] = "ResNet9000"

    target = rewritten(checkpoint, tmp_path / "renamed.pt", rename)
    with pytest.raises(ValueError) as raised:
        cw.load_trained(target, device="cpu", data=False)
    assert str(target) in str(raised.value) and "ResNet9000" in str(raised.value)


def test_weights_that_do_not_fit_are_a_clear_error(tiny_run, tmp_path):
    checkpoint, _ = tiny_run

    def widen(state):
        state["config"]["architecture"]["num_classes"] = 5  # the rebuilt head has 5 outputs, the weights 3

    target = rewritten(checkpoint, tmp_path / "wider.pt", widen)
    with pytest.raises(ValueError) as raised:
        cw.load_trained(target, device="cpu", data=False)
    assert str(target) in str(raised.value) and "does not fit" in str(raised.value)


def test_a_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint-00009.pt"):
        cw.load_trained(tmp_path / "checkpoint-00009.pt", device="cpu")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        cw.load_trained(tmp_path, device="cpu")

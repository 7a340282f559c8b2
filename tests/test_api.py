"""The paper's functions: its snippets run as printed (smaller), write its files, and the figures draw those files.

The snippets are those of ``../shared/paper.md`` (appendix A and section 6),
executed after ``from curvwidgets import *`` in a fresh namespace, with the
relative ``result/...`` paths landing in a temporary folder.
"""

import copy
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.landscape import eigen_directions
from curvwidgets.results import ResultFileError

matplotlib.use("Agg")

RUN = "result/VGG16-CIFAR100"

# The paper's snippets with exactly these changes, because VGG-16 on CIFAR-100 for 100-300 epochs takes hours
# on a CPU and CIFAR is not embedded:
#   dataset 'CIFAR100' -> 'digits' (embedded; data_path is then unused but kept as printed),
#   model 'VGG16' -> 'MLP',
#   epochs 100 -> 2 (so checkpoint-00100.pt -> checkpoint-00002.pt and spectrum-00100-... -> spectrum-00002-...;
#     losslandscape-00300.npz -> losslandscape-00002.npz),
#   lanczos_iters 20 -> 5,
#   n_points 21 -> 5,
#   results assigned to names (history, ggn, landscape, figure_*) so the test can look at them.
# Everything else (the folder names, the argument names and the other values) is as printed. The paper's
# "change accordingly, if considering the Hessian matrix" variant (curvature_matrix='hessian_lanczos') runs in
# test_plot_spectrum_draws_figure_6, on a subset of the samples (num_samples=64) to save time.
PAPER_SNIPPETS = textwrap.dedent("""
    from curvwidgets import *
    import matplotlib.pyplot as plt

    history = train_network(
        dir='result/VGG16-CIFAR100/',
        dataset='digits',
        data_path='data/',
        epochs=2,
        model='MLP',
        optimizer='SGD',
        schedule='linear',
        optimizer_kwargs={
            'lr': 0.03,
            'momentum': 0.9,
            'weight_decay': 5e-4
        }
    )
    figure_training = plot_training('result/VGG16-CIFAR100/')

    ggn = compute_eigenspectrum(
        dataset='digits',
        data_path='data/',
        model='MLP',
        checkpoint_path='result/VGG16-CIFAR100/checkpoint-00002.pt',
        save_spectrum_path='result/VGG16-CIFAR100/spectra/spectrum-00002-ggn_lanczos',
        save_eigvec=True,
        lanczos_iters=5,
        curvature_matrix='ggn_lanczos',
    )
    figure_spectrum = plot_spectrum('result/VGG16-CIFAR100/spectra/spectrum-00002-ggn_lanczos')

    landscape = build_loss_landscape(
        dataset='digits',
        data_path='data/',
        model='MLP',
        dist=0.25,
        n_points=5,
        spectrum_path='result/VGG16-CIFAR100/spectra/spectrum-00002-ggn_lanczos',
        checkpoint_path='result/VGG16-CIFAR100/checkpoint-00002.pt',
        save_path='result/VGG16-CIFAR100/losslandscape-00002.npz',
    )
    figure_landscape = plot_loss_landscape('result/VGG16-CIFAR100/losslandscape-00002.npz')
    plt.close('all')
""")


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """The snippets run once in a fresh folder; the folder and the names they defined."""
    folder = tmp_path_factory.mktemp("paper")
    namespace = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        exec(compile(PAPER_SNIPPETS, "paper.md snippets", "exec"), namespace)
    return folder, namespace


@pytest.fixture(scope="module")
def trained(paper):
    folder, _ = paper
    return cw.load_trained(folder / RUN / "checkpoint-00002.pt", device="cpu")


def files_under(folder: Path):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


# ---- the paper's snippets ------------------------------------------------------------------------------------

def test_the_snippets_write_the_files_the_paper_describes(paper):
    folder, names = paper
    assert files_under(folder) == [f"{RUN}/checkpoint-00002.pt", f"{RUN}/history.json", f"{RUN}/losslandscape-00002.npz",
                                   f"{RUN}/spectra/spectrum-00002-ggn_lanczos.npz"]
    for name in ("train_network", "compute_eigenspectrum", "build_loss_landscape", "plot_training", "plot_spectrum",
                 "plot_loss_landscape", "compute_loss_stats"):
        assert callable(names[name])  # all exported by ``from curvwidgets import *``
    for name in ("figure_training", "figure_spectrum", "figure_landscape"):
        assert isinstance(names[name], matplotlib.figure.Figure)


def test_the_training_files(paper):
    folder, names = paper
    history = cw.TrainingHistory.load(folder / RUN / "history.json")
    assert len(history) == 2 and history.rows == names["history"].rows
    config = history.config
    assert config["architecture"]["name"] == "MLP" and config["data"] == "digits" and config["epochs"] == 2
    assert config["optimizer"] == "SGD" and config["schedule"] == "linear"
    assert config["optimizer_kwargs"]["lr"] == 0.03 and config["optimizer_kwargs"]["momentum"] == 0.9
    assert config["optimizer_kwargs"]["weight_decay"] == 5e-4
    assert history["lr"][0] == pytest.approx(0.03)  # eq. 19 keeps the initial rate for the first half
    assert history.checkpoints[-1].endswith(f"{RUN}/checkpoint-00002.pt")


def test_the_spectrum_file_holds_what_was_computed(paper, trained):
    folder, names = paper
    dim = sum(p.numel() for p in trained.model.parameters())
    computed = names["ggn"]
    loaded = cw.Spectrum.load(folder / RUN / "spectra" / "spectrum-00002-ggn_lanczos")
    assert loaded.ritz_vectors.dtype == np.float32 and loaded.ritz_vectors.shape == (1, 5, dim)
    assert loaded.ritz_vectors.tobytes() == computed.ritz_vectors.tobytes()
    assert loaded.ritz_values.tobytes() == computed.ritz_values.tobytes()
    assert loaded.meta == computed.meta
    meta = loaded.meta
    assert meta["matrix"] == "ggn" and meta["curvature_matrix"] == "ggn_lanczos"
    assert meta["model"] == "MLP" and meta["epoch"] == 2 and meta["data"] == "digits"
    assert meta["checkpoint"].endswith(f"{RUN}/checkpoint-00002.pt")
    assert meta["steps"] == 5 and meta["num_vectors"] == 1 and loaded.dim == dim
    assert meta["bn_mode"] == "train" and meta["num_samples"] == trained.data.train.num_samples


def test_the_ggn_ritz_pairs_of_the_file_are_ritz_pairs_of_the_checkpoint(paper, trained):
    """``v^T G v = theta`` for a Ritz vector, and ``||G v - theta v||`` is its residual estimate."""
    folder, _ = paper
    spectrum = cw.Spectrum.load(folder / RUN / "spectra" / "spectrum-00002-ggn_lanczos.npz")
    # the whole training set in one batch (the product does not depend on the batching)
    op = cw.GGN(trained.model, nn.CrossEntropyLoss(), trained.data.evaluation_loader("train", batch_size=2048),
                backend="double-backward")
    top = int(np.argmax(spectrum.ritz_values[0]))
    v = torch.from_numpy(spectrum.ritz_vectors[0, top]).to(op.dtype)
    theta = spectrum.ritz_values[0, top]
    product = op.matvec(v)
    assert float(v @ product) == pytest.approx(theta, rel=2e-4)
    residual = float((product - theta * v).norm())
    assert residual == pytest.approx(spectrum.residual_estimates[0, top], rel=2e-2, abs=1e-4 * theta)


def test_the_landscape_file_walks_the_ggn_eigenvectors(paper, trained):
    folder, names = paper
    landscape = cw.Landscape.load(folder / RUN / "losslandscape-00002.npz")
    computed = names["landscape"]
    for name, array in computed.values.items():
        assert landscape[name].tobytes() == array.tobytes()
    spectrum = names["ggn"]
    # the paper's three largest and three most negative: five distinct Ritz values of a 5-step run
    expected = eigen_directions(spectrum, largest=3, smallest=3)
    assert landscape.labels == tuple(d.label for d in expected) and len(expected) == 5
    np.testing.assert_array_equal(landscape.curvatures, [d.curvature for d in expected])
    np.testing.assert_array_equal(landscape.offsets, np.linspace(-0.25, 0.25, 5))
    assert landscape.kind == "line" and landscape.done.all()
    assert sorted(landscape.values) == ["test_accuracy", "test_loss", "train_accuracy", "train_loss"]
    assert landscape.meta["spectrum"].endswith("spectrum-00002-ggn_lanczos") and landscape.meta["matrix"] == "ggn"
    assert landscape.meta["bn"] == "keep" and landscape.meta["epoch"] == 2

    # at t = 0 every line is the checkpoint itself: the test loss and accuracy training recorded after epoch 2
    last = names["history"].rows[-1]
    c = landscape.centre
    np.testing.assert_allclose(landscape["test_loss"][:, c], last["test_loss"], rtol=1e-5)
    np.testing.assert_allclose(landscape["test_accuracy"][:, c], last["test_top1"], atol=1e-12)
    # one point against the plain loop: a copy of the model holding w + t v, over the unaugmented training set
    model = copy.deepcopy(trained.model)
    t, direction = landscape.offsets[0], expected[0].vector
    with torch.no_grad():
        flat = torch.nn.utils.parameters_to_vector(model.parameters())
        torch.nn.utils.vector_to_parameters(flat + t * direction, model.parameters())
        total, count = 0.0, 0
        for inputs, targets in trained.data.evaluation_loader("train"):
            total += float(nn.functional.cross_entropy(model(inputs), targets, reduction="sum"))
            count += len(targets)
    assert landscape["train_loss"][0, 0] == pytest.approx(total / count, rel=1e-5)


# ---- figures draw the files' arrays --------------------------------------------------------------------------

def test_plot_training_draws_the_history(paper):
    folder, names = paper
    history = names["history"]
    for source in (folder / RUN, folder / RUN / "history.json", history):
        figure = cw.plot_training(source)
        loss_axis, accuracy_axis = figure.axes[:2]
        for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "top1")):
            lines = {line.get_label(): line for line in axis.get_lines()}
            for split in ("train", "test"):
                np.testing.assert_array_equal(lines[split].get_xdata(), history["epoch"])
                np.testing.assert_array_equal(lines[split].get_ydata(), history[f"{split}_{metric}"])
        matplotlib.pyplot.close(figure)


def stems_of(axis):
    """``{label: (nodes, weights)}`` of the stem plots on ``axis``."""
    found = {}
    for container in axis.containers:
        if isinstance(container, matplotlib.container.StemContainer):
            markers = container.markerline
            found[container.get_label()] = (np.asarray(markers.get_xdata()), np.asarray(markers.get_ydata()))
    return found


def test_plot_spectrum_draws_figure_6(paper, trained, tmp_path):
    folder, names = paper
    spectra = folder / RUN / "spectra"
    checkpoint = folder / RUN / "checkpoint-00002.pt"
    hessian_path = tmp_path / "spectrum-00002-hessian_lanczos"
    # a subset of 64 samples in one batch: the cost of a product here is mostly per batch, not per sample
    hessian = cw.compute_eigenspectrum(dataset="digits", model="MLP", checkpoint_path=checkpoint,
                                       save_spectrum_path=hessian_path, save_eigvec=True, lanczos_iters=5,
                                       curvature_matrix="hessian_lanczos", num_samples=64, batch_size=2048,
                                       device="cpu")
    assert hessian.meta["matrix"] == "hessian" and hessian.meta["num_samples"] == 64 and hessian.steps == 5
    diagonal_path = tmp_path / "spectrum-00002-ggn_diag"
    diagonal = cw.compute_eigenspectrum(checkpoint_path=checkpoint, save_spectrum_path=diagonal_path,
                                        curvature_matrix="ggn_diag", num_samples=48, batch_size=2048, device="cpu")
    assert isinstance(diagonal, cw.Diagonal) and (tmp_path / "spectrum-00002-ggn_diag.npz").is_file()
    dim = sum(p.numel() for p in trained.model.parameters())
    assert diagonal.values.shape == (dim,) and diagonal.values.dtype == np.float32
    assert (diagonal.values >= 0).all() and diagonal.values.max() > 0  # a mean of squares
    assert diagonal.meta["matrix"] == "ggn_diag" and diagonal.meta["bn_mode"] == "eval"

    image = tmp_path / "figure6.png"
    figure = cw.plot_spectrum([hessian_path, spectra / "spectrum-00002-ggn_lanczos", diagonal_path], save_path=image)
    assert image.is_file() and image.stat().st_size > 0
    axis = figure.axes[0]
    stems = stems_of(axis)
    assert sorted(stems) == ["Lanc-GGN", "Lanc-Hess"]
    for label, spectrum in (("Lanc-Hess", hessian), ("Lanc-GGN", names["ggn"])):
        nodes, weights = spectrum.stem()
        np.testing.assert_array_equal(stems[label][0], nodes)
        np.testing.assert_array_equal(stems[label][1], weights)
    fractions, edges = cw.Diagonal.load(diagonal_path).histogram(80)
    assert len(axis.patches) == 80
    np.testing.assert_allclose([patch.get_height() for patch in axis.patches], fractions, rtol=1e-12)
    np.testing.assert_allclose([patch.get_x() for patch in axis.patches], edges[:-1], rtol=1e-12)
    assert "Diag-GGN" in [text.get_text() for text in axis.get_legend().get_texts()]
    assert axis.get_yscale() == "log"
    matplotlib.pyplot.close(figure)


def test_plot_loss_landscape_draws_the_lines(paper, tmp_path):
    folder, names = paper
    landscape = names["landscape"]
    for metric in ("loss", "accuracy"):
        image = tmp_path / f"landscape-{metric}.png"
        figure = cw.plot_loss_landscape(folder / RUN / "losslandscape-00002.npz", save_path=image, metric=metric)
        assert image.is_file()
        assert [axis.get_title() for axis in figure.axes] == [f"train {metric}", f"test {metric}"]
        for axis, split in zip(figure.axes, ("train", "test")):
            lines = axis.get_lines()
            assert [line.get_label() for line in lines] == list(landscape.labels)
            for line, values in zip(lines, landscape[f"{split}_{metric}"]):
                np.testing.assert_array_equal(line.get_xdata(), landscape.offsets)
                np.testing.assert_array_equal(line.get_ydata(), values)
        matplotlib.pyplot.close(figure)
    with pytest.raises(ValueError, match="metric must be one of"):
        cw.plot_loss_landscape(landscape, metric="top5")


def test_a_plane_of_filter_normalised_directions_and_its_figure(paper, tmp_path):
    folder, _ = paper
    target = tmp_path / "plane.npz"
    plane = cw.build_loss_landscape(checkpoint_path=folder / RUN, directions="filter-normalised", plane=True,
                                    n_points=3, dist=0.5, save_path=target, batch_size=2048, device="cpu")
    loaded = cw.Landscape.load(target)
    assert loaded.kind == "plane" and loaded["train_loss"].shape == (3, 3) and loaded.done.all()
    assert loaded.labels == ("filter-normalised 1", "filter-normalised 2")
    assert loaded.meta["direction_kind"] == "filter-normalised" and loaded.meta["spectrum"] is None
    assert loaded["train_loss"].tobytes() == plane["train_loss"].tobytes()
    figure = cw.plot_loss_landscape(loaded)
    for axis, split in zip(figure.axes[:2], ("train", "test")):  # the two panels (their colour bars follow)
        contours = [c for c in axis.collections if hasattr(c, "levels")][0]
        values = loaded[f"{split}_loss"]
        assert contours.zmin == pytest.approx(values.min()) and contours.zmax == pytest.approx(values.max())
        assert axis.get_xlabel() == "filter-normalised 1" and axis.get_ylabel() == "filter-normalised 2"
    matplotlib.pyplot.close(figure)


# ---- bad input: a clear error and no file -------------------------------------------------------------------

def assert_empty(folder: Path) -> None:
    assert list(folder.iterdir()) == []


def test_a_spectrum_without_eigenvectors_is_refused(paper, tmp_path):
    folder, names = paper
    bare = cw.Spectrum(names["ggn"].lanczos, None, names["ggn"].meta).save(tmp_path / "bare-spectrum")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError) as raised:
        cw.build_loss_landscape(spectrum_path=bare, checkpoint_path=folder / RUN / "checkpoint-00002.pt",
                                save_path=out / "landscape.npz", device="cpu")
    assert "bare-spectrum.npz" in str(raised.value) and "save_eigvec=True" in str(raised.value)
    assert_empty(out)
    with pytest.raises(ValueError, match="save_eigvec=True"):
        eigen_directions(cw.Spectrum.load(bare))
    with pytest.raises(ValueError, match="spectrum_path is required"):
        cw.build_loss_landscape(checkpoint_path=folder / RUN, save_path=out / "landscape.npz")
    assert_empty(out)


@pytest.mark.parametrize("options, argument", [({"dist": 0}, "dist"), ({"dist": -0.25}, "dist"),
                                               ({"n_points": 1}, "n_points"), ({"n_points": 0}, "n_points")])
def test_bad_landscape_sizes_are_refused(paper, tmp_path, options, argument):
    folder, _ = paper
    with pytest.raises(ValueError, match=f"^{argument} must be"):
        cw.build_loss_landscape(spectrum_path=folder / RUN / "spectra" / "spectrum-00002-ggn_lanczos",
                                checkpoint_path=folder / RUN / "checkpoint-00002.pt", save_path=tmp_path / "x.npz",
                                device="cpu", **options)
    assert_empty(tmp_path)


def test_an_eigenvector_of_another_model_is_refused(paper, tmp_path):
    folder, _ = paper
    matrix = np.diag(np.arange(1.0, 11.0))
    other = cw.Spectrum.from_lanczos(cw.lanczos(matrix, 4, store_vectors=True), {"matrix": "hessian"},
                                     save_vectors=True).save(tmp_path / "spectrum-of-another-model")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError) as raised:
        cw.build_loss_landscape(spectrum_path=other, checkpoint_path=folder / RUN / "checkpoint-00002.pt",
                                save_path=out / "landscape.npz", device="cpu")
    message = str(raised.value)
    assert "of 10 parameters" in message and "another model" in message and str(other) in message
    assert_empty(out)


def test_a_checkpoint_of_another_model_is_refused(paper, tmp_path):
    folder, _ = paper
    checkpoint = folder / RUN / "checkpoint-00002.pt"
    with pytest.raises(ValueError) as raised:
        cw.compute_eigenspectrum(model="VGG16", checkpoint_path=checkpoint,
                                 save_spectrum_path=tmp_path / "spectrum-00002-ggn_lanczos", lanczos_iters=2,
                                 curvature_matrix="ggn_lanczos", device="cpu")
    assert "VGG16" in str(raised.value) and str(checkpoint) in str(raised.value) and "'MLP'" in str(raised.value)
    with pytest.raises(ValueError, match="model='VGG16'"):
        cw.build_loss_landscape(model="VGG16", spectrum_path=folder / RUN / "spectra" / "spectrum-00002-ggn_lanczos",
                                checkpoint_path=checkpoint, save_path=tmp_path / "landscape.npz", device="cpu")
    assert_empty(tmp_path)


def test_an_unknown_curvature_matrix_is_refused(paper, tmp_path):
    folder, _ = paper
    with pytest.raises(ValueError) as raised:
        cw.compute_eigenspectrum(checkpoint_path=folder / RUN, save_spectrum_path=tmp_path / "spectrum",
                                 curvature_matrix="fisher_lanczos")
    assert "curvature_matrix" in str(raised.value) and "ggn_lanczos" in str(raised.value)
    with pytest.raises(ValueError, match="checkpoint_path is required"):
        cw.compute_eigenspectrum(save_spectrum_path=tmp_path / "spectrum")
    assert_empty(tmp_path)


def test_a_damaged_spectrum_file_is_refused_by_the_landscape(paper, tmp_path):
    folder, _ = paper
    damaged = tmp_path / "spectrum.npz"
    damaged.write_bytes((folder / RUN / "spectra" / "spectrum-00002-ggn_lanczos.npz").read_bytes()[:1000])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ResultFileError, match="spectrum.npz"):
        cw.build_loss_landscape(spectrum_path=damaged, checkpoint_path=folder / RUN, save_path=out / "l.npz")
    with pytest.raises(ValueError, match="directions must be one of"):
        cw.build_loss_landscape(checkpoint_path=folder / RUN, directions="pca", save_path=out / "l.npz")
    assert_empty(out)


def test_a_save_path_that_cannot_be_written_fails_before_the_computation(paper, tmp_path):
    folder, _ = paper
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    events = []
    calls = [
        lambda: cw.compute_eigenspectrum(checkpoint_path=folder / RUN, save_spectrum_path=blocker / "spectrum",
                                         lanczos_iters=2, device="cpu", progress=events.append),
        lambda: cw.compute_loss_stats(checkpoint_path=folder / RUN, save_path=blocker / "stats.json", device="cpu",
                                      progress=events.append),
        lambda: cw.build_loss_landscape(spectrum_path=folder / RUN / "spectra" / "spectrum-00002-ggn_lanczos",
                                        checkpoint_path=folder / RUN, save_path=blocker / "sub" / "landscape.npz",
                                        n_points=3, device="cpu", progress=events.append),
    ]
    for call in calls:
        with pytest.raises(NotADirectoryError, match=r"cannot write '.*a-file/.*': '.*a-file' is a file, not a folder"):
            call()
    assert events == []  # refused before any work
    assert [path.name for path in tmp_path.iterdir()] == ["a-file"]


def test_check_writable_finds_what_the_write_would_find(tmp_path, monkeypatch):
    from curvwidgets._atomic import check_writable

    check_writable(tmp_path / "new" / "folders" / "result.npz")  # missing folders are fine: the write creates them
    assert list(tmp_path.iterdir()) == []  # and the check creates nothing
    for folder in (tmp_path, "/"):
        with pytest.raises(IsADirectoryError, match=r"it is a folder; give a file's path"):
            check_writable(folder)
    monkeypatch.setenv("HOME", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"a-file/result.json'.*a-file' is a file, not a folder"):
        check_writable("~/result.json")  # ~ expanded, as the writers do
    monkeypatch.setattr("os.access", lambda path, mode: False)
    with pytest.raises(PermissionError, match=r"cannot write .*: the folder .* is not writable"):
        check_writable(tmp_path / "result.npz")


def test_diagonal_files_keep_each_entrys_standard_error(trained, tmp_path):
    """hessian_diag: Hutchinson's per-entry standard errors over its 10 * num_mc probes, kept in the file; ggn_diag
    (all draws in one pass) has none."""
    from curvwidgets.curvature.diagonal import hutchinson_diagonal
    from curvwidgets.curvature.spectrum import curvature_operator

    checkpoint = trained.checkpoint
    path = tmp_path / "hessian_diag"
    kept = cw.compute_eigenspectrum(checkpoint_path=checkpoint, save_spectrum_path=path, curvature_matrix="hessian_diag",
                                    num_samples=32, batch_size=2048, device="cpu", bn_mode="eval")
    operator = curvature_operator(trained.model, trained.data, "hessian", bn_mode="eval", num_samples=32, seed=0)
    values, error = hutchinson_diagonal(operator, num_samples=10, seed=0, with_error=True)
    loaded = cw.Diagonal.load(path)
    np.testing.assert_array_equal(loaded.standard_error, kept.standard_error)  # the file holds what was returned
    for kept_array, expected in ((loaded.values, values), (loaded.standard_error, error)):  # float32 products: rounding
        np.testing.assert_allclose(kept_array, expected.numpy(), rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    assert (loaded.standard_error > 0).any()
    draws = cw.compute_eigenspectrum(checkpoint_path=checkpoint, curvature_matrix="ggn_diag", num_samples=32,
                                     batch_size=2048, device="cpu", num_mc=2)
    assert draws.standard_error is None
    with pytest.raises(ValueError, match=r"standard_error must be None or a floating-point array of shape \(3,\)"):
        cw.Diagonal(np.ones(3), standard_error=np.array([1.0, -1.0, 0.0]))

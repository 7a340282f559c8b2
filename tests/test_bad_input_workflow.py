"""Bad input to the workflow layer: one clear error naming the argument in the caller's words, before any work.

The audit of issue 17, written as tables over the layers a user drives a
workflow with: :func:`curvwidgets.loss_landscape` and its directions, the
results classes (constructors and methods), :func:`curvwidgets.load_trained`,
the command line (``main(argv)``: one line on stderr naming the option,
exit status 2) and the widgets (bad constructor arguments, and bad values in
their fields, shown in the widget's error area when a run starts).

Every case asserts the exception type (or exit status), a message naming the
argument and what is accepted, that the message is the package's own (none of
the words of numpy, torch, ipywidgets or the standard library in
:data:`LEAKS`, and the error raised inside ``curvwidgets``), that nothing was
computed (no progress event) and that no file was left, not even a temporary
``.partial`` one. The last tests pin valid unusual input to the exact answer
of the usual one.
"""

import html
import os
import re
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
import curvwidgets.widgets as widgets
from curvwidgets.cli import main
from curvwidgets.landscape import Direction, eigen_directions, loss_landscape, random_directions
from curvwidgets.linalg.lanczos import LanczosResult
from curvwidgets.results import ResultFileError, load_result
from curvwidgets.training.checkpoint import CheckpointError

#: Words of messages that come from inside numpy, torch, ipywidgets or the standard library, not from curvwidgets.
LEAKS = ("unsupported operand", "object of type", "can't convert", "NoneType", "Expected all tensors",
         "not subscriptable", "not iterable", "has no attribute", "ufunc", "could not convert", "argument must be",
         "expected str, bytes", "values to unpack", "Invalid selection", "trait of", "[Errno", "Traceback",
         "is not callable", "unexpected keyword", "multiple values for", "Unable to allocate", "codec can't",
         "not supported between", "PosixPath(")
PACKAGE = Path(cw.__file__).parent


def assert_clear(message: str, pattern: str) -> None:
    """``message`` matches ``pattern`` and holds none of the :data:`LEAKS`."""
    assert re.search(pattern, message), f"{pattern!r} does not match {message!r}"
    leaked = [words for words in LEAKS if words in message]
    assert not leaked, f"{leaked} in {message!r}"


def assert_raised_here(error: BaseException) -> None:
    """The error was raised by curvwidgets' own code (its last frame is in the package)."""
    where = traceback.extract_tb(error.__traceback__)[-1].filename
    assert Path(where).resolve().is_relative_to(PACKAGE.resolve()), f"raised in {where}"


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) and its content."""
    return {os.fspath(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


# ---- what the cases work on --------------------------------------------------------------------------------

def tiny_model(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).to(dtype)


def tiny_batches(dtype: torch.dtype = torch.float32, seed: int = 0) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 4, generator=generator).to(dtype), torch.randint(0, 3, (6,), generator=generator)),
            (torch.randn(5, 4, generator=generator).to(dtype), torch.randint(0, 3, (5,), generator=generator))]


DIM = 4 * 3 + 3 + 3 * 3 + 3  # parameters of tiny_model


@pytest.fixture(scope="module")
def tiny() -> SimpleNamespace:
    """A tiny MLP, its data, a 4-step spectrum with Ritz vectors and two random directions."""
    model, data = tiny_model(), tiny_batches()
    spectrum = cw.spectrum(model, data, "hessian", steps=4, save_vectors=True, bn_mode="eval",
                           backend="double-backward")
    run = LanczosResult(alpha=np.array([[1.0, 2.0, 3.0], [0.5, 1.5, 2.5]]), beta=np.array([[0.5, 0.4], [0.2, 0.2]]),
                        residual_norm=np.array([0.1, 0.05]), num_steps=np.array([3, 3]), dim=5, orthogonality=0.0)
    return SimpleNamespace(model=model, data=data, spectrum=spectrum, directions=random_directions(model, 2),
                           lanczos=run, bare=cw.Spectrum(run, None, {"matrix": "hessian"}),
                           diagonal=cw.Diagonal(np.array([0.5, 1.0, 2.0], np.float32)))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Dict[str, Path]:
    """A one-epoch MLP run on the digits and its results files: spectrum (with Ritz vectors), diagonal, landscape."""
    folder = tmp_path_factory.mktemp("workflow")
    cw.train_network(folder / "run", dataset="digits", model="MLP", epochs=1, batch_size=256, device="cpu")
    checkpoint = folder / "run" / "checkpoint-00001.pt"
    cw.compute_eigenspectrum(checkpoint_path=checkpoint, save_spectrum_path=folder / "spectrum.npz", save_eigvec=True,
                             lanczos_iters=3, num_samples=64, batch_size=2048, device="cpu")
    cw.compute_eigenspectrum(checkpoint_path=checkpoint, save_spectrum_path=folder / "diagonal.npz",
                             curvature_matrix="ggn_diag", num_samples=64, batch_size=2048, device="cpu")
    cw.build_loss_landscape(checkpoint_path=checkpoint, spectrum_path=folder / "spectrum.npz", n_points=3, largest=1,
                            smallest=0, save_path=folder / "landscape.npz", batch_size=2048, device="cpu")
    return {"run": folder / "run", "checkpoint": checkpoint, "history": folder / "run" / "history.json",
            "spectrum": folder / "spectrum.npz", "diagonal": folder / "diagonal.npz",
            "landscape": folder / "landscape.npz"}


class Case(SimpleNamespace):
    """What a case's call gets: ``tiny``, ``files``, its own empty folder ``tmp`` (with a file ``tmp/a-file``) and
    ``events``, the list its progress callbacks append to."""


def walk(c: Case, **overrides) -> cw.Landscape:
    """``loss_landscape`` of the tiny model along its first random direction, 3 points, with ``overrides``."""
    arguments = {"model": c.tiny.model, "data": c.tiny.data, "directions": c.tiny.directions[:1], "dist": 0.5,
                 "n_points": 3, "progress": c.events.append, **overrides}
    return loss_landscape(**arguments)


def landscape(**overrides) -> cw.Landscape:
    """A two-line landscape of three points, with ``overrides`` of its constructor's arguments."""
    arguments = {"offsets": np.linspace(-1.0, 1.0, 3), "labels": ("largest 1", "random 1"),
                 "curvatures": np.array([2.0, np.nan]), "kind": "line",
                 "values": {"train_loss": np.ones((2, 3)), "train_accuracy": np.full((2, 3), 0.5)}, **overrides}
    return cw.Landscape(**arguments)


def vector(c: Case) -> torch.Tensor:
    return c.tiny.directions[0].vector


def load_trained(path, **options):
    return cw.load_trained(path, **{"device": "cpu", "data": False, **options})


def a_file(c: Case) -> Path:
    return c.tmp / "a-file"


WANT_DIRECTIONS = r"directions must be a non-empty list of Direction objects or flat vectors"
WANT_DATA = r"^data must be a DataSet, a \(train, test\) pair or a re-iterable of \(inputs, targets\) batches; got "
PATH = r"must be a path \(str or os\.PathLike\); got "
META = r"must be None, bool, int, float, str, a path"

#: id -> (call(case), exception, regex of the message)
CORE_CASES: Dict[str, tuple] = {
    # loss_landscape: its numbers and switches
    "loss_landscape dist str": (lambda c: walk(c, dist="0.5"), ValueError, r"^dist must be a finite number > 0; got '0\.5'"),
    "loss_landscape dist None": (lambda c: walk(c, dist=None), ValueError, r"^dist must be a finite number > 0; got None"),
    "loss_landscape dist tensor": (lambda c: walk(c, dist=torch.tensor(0.5)), ValueError,
                                   r"^dist must be a finite number > 0; got tensor\(0\.5"),
    "loss_landscape dist complex": (lambda c: walk(c, dist=0.5j), ValueError, r"^dist must be a finite number > 0; got 0\.5j"),
    "loss_landscape dist bool": (lambda c: walk(c, dist=True), ValueError, r"^dist must be a finite number > 0; got True"),
    "loss_landscape n_points str": (lambda c: walk(c, n_points="3"), ValueError, r"^n_points must be an int >= 2; got '3'"),
    "loss_landscape n_points None": (lambda c: walk(c, n_points=None), ValueError,
                                     r"^n_points must be an int >= 2; got None"),
    "loss_landscape n_points numpy float": (lambda c: walk(c, n_points=np.float64(3.0)), ValueError,
                                            r"^n_points must be an int >= 2; got np\.float64\(3\.0\)"),
    "loss_landscape n_points negative": (lambda c: walk(c, n_points=-3), ValueError,
                                         r"^n_points must be an int >= 2; got -3"),
    "loss_landscape bn None": (lambda c: walk(c, bn=None), ValueError, r"^bn must be one of \('keep', 'recompute'\); got None"),
    "loss_landscape bn capitalised": (lambda c: walk(c, bn="Keep"), ValueError, r"^bn must be one of .*; got 'Keep'"),
    "loss_landscape points_per_pass float": (lambda c: walk(c, points_per_pass=2.0), ValueError,
                                             r"^points_per_pass must be an int >= 1; got 2\.0"),
    "loss_landscape points_per_pass bool": (lambda c: walk(c, points_per_pass=True), ValueError,
                                            r"^points_per_pass must be an int >= 1; got True"),
    "loss_landscape points_per_pass negative": (lambda c: walk(c, points_per_pass=-1), ValueError,
                                                r"^points_per_pass must be an int >= 1; got -1"),
    "loss_landscape loss_fn a class": (lambda c: walk(c, loss_fn=nn.CrossEntropyLoss), TypeError,
                                       r"^loss_fn must be a loss function or module, e\.g\. nn\.CrossEntropyLoss\(\); "
                                       r"got the class CrossEntropyLoss itself"),
    "loss_landscape meta pairs": (lambda c: walk(c, meta=(("model", "tiny"),)), TypeError,
                                  r"^meta must be None or a mapping of metadata; got tuple"),
    "loss_landscape meta object": (lambda c: walk(c, meta={"run": object()}), TypeError, rf"^meta\['run'\] {META}"),
    "loss_landscape meta int key": (lambda c: walk(c, meta={1: "one"}), TypeError,
                                    r"^meta must have str keys; got the key 1 of type int"),
    "loss_landscape meta array": (lambda c: walk(c, meta={"losses": np.ones(3)}), TypeError,
                                  rf"^meta\['losses'\] {META}.*got an array of shape \(3,\)"),
    "loss_landscape params no match": (lambda c: walk(c, params="encoder.*"), ValueError,
                                       r"^params pattern 'encoder\.\*' matches no trainable parameter; names are e\.g\. "
                                       r"\['0\.weight'"),
    "loss_landscape params int": (lambda c: walk(c, params=3), TypeError,
                                  r"^params must be None, a glob pattern or list of patterns, a submodule, or a list of "
                                  r"parameter tensors; got int"),
    "loss_landscape device float": (lambda c: walk(c, device=0.5), ValueError,
                                    r"^device must name a device such as 'cpu', 'cuda' or 'cuda:1'; got 0\.5"),
    "loss_landscape allow_other_weights str": (lambda c: walk(c, allow_other_weights="yes"), ValueError,
                                               r"^allow_other_weights must be True or False; got 'yes'"),
    "loss_landscape plane of three": (lambda c: walk(c, plane=True, directions=random_directions(c.tiny.model, 3)),
                                      ValueError, r"^plane=True needs exactly two directions; got 3"),
    # loss_landscape: the model and the data
    "loss_landscape model None": (lambda c: walk(c, model=None), TypeError,
                                  r"^model must be a torch\.nn\.Module; got None"),
    "loss_landscape model a state_dict": (lambda c: walk(c, model=c.tiny.model.state_dict()), TypeError,
                                          r"^model must be a torch\.nn\.Module; got OrderedDict"),
    "loss_landscape model frozen": (lambda c: walk(c, model=tiny_model().requires_grad_(False)), ValueError,
                                    r"^model has no trainable parameters \(none with requires_grad=True\)"),
    "loss_landscape data None": (lambda c: walk(c, data=None), TypeError, WANT_DATA + "None"),
    "loss_landscape data a tensor": (lambda c: walk(c, data=c.tiny.data[0][0]), TypeError, WANT_DATA + "Tensor"),
    "loss_landscape data a name": (lambda c: walk(c, data="digits"), TypeError, WANT_DATA + "str"),
    "loss_landscape data a dict": (lambda c: walk(c, data={"train": c.tiny.data}), TypeError, WANT_DATA + "dict"),
    "loss_landscape data one batch not in a list": (
        lambda c: walk(c, data=c.tiny.data[0]), TypeError,
        r"^data: the first batch is a tensor of shape \(6, 4\), not an \(inputs, targets\) pair; give batches as a "
        r"list of pairs, e\.g\. \[\(inputs, targets\)\]"),
    "loss_landscape data a list of tensors": (
        lambda c: walk(c, data=[inputs for inputs, _ in c.tiny.data]), TypeError,
        r"^data: the first batch is a tensor of shape \(6, 4\), not an \(inputs, targets\) pair"),
    "loss_landscape data batches of three": (
        lambda c: walk(c, data=[(inputs, targets, targets) for inputs, targets in c.tiny.data]), TypeError,
        r"^data: the first batch must be an \(inputs, targets\) pair of tensors; got a tuple of 3"),
    "loss_landscape data numpy batches": (
        lambda c: walk(c, data=[(inputs.numpy(), targets.numpy()) for inputs, targets in c.tiny.data]), TypeError,
        r"^data: the first batch must be an \(inputs, targets\) pair of tensors; got \(ndarray, ndarray\) "
        r"\(torch\.from_numpy turns an array into a tensor\)"),
    "loss_landscape test split of numpy batches": (
        lambda c: walk(c, data=(c.tiny.data, [(x.numpy(), y) for x, y in c.tiny.data])), TypeError,
        r"^data: the first test batch must be an \(inputs, targets\) pair of tensors; got \(ndarray, Tensor\)"),
    "loss_landscape data empty": (lambda c: walk(c, data=[]), ValueError,
                                  r"^data: the train batches hold no samples the loss counts"),
    # loss_landscape: the directions
    "loss_landscape directions None": (lambda c: walk(c, directions=None), ValueError, WANT_DIRECTIONS),
    "loss_landscape directions a spectrum": (lambda c: walk(c, directions=c.tiny.spectrum), ValueError, WANT_DIRECTIONS),
    "loss_landscape directions a name": (lambda c: walk(c, directions="eigen"), ValueError, WANT_DIRECTIONS),
    "loss_landscape directions a generator": (lambda c: walk(c, directions=iter(c.tiny.directions)), ValueError,
                                              WANT_DIRECTIONS),
    "loss_landscape direction of objects": (lambda c: walk(c, directions=[np.array([None] * DIM)]), TypeError,
                                            r"^direction 'vector 1' must hold real numbers; got an array of dtype object"),
    "loss_landscape direction of text": (lambda c: walk(c, directions=[np.array(["0.1"] * DIM)]), TypeError,
                                         r"^direction 'vector 1' must hold real numbers; got an array of dtype <U3"),
    "loss_landscape direction of two rows": (lambda c: walk(c, directions=torch.ones(2, DIM)), ValueError,
                                             rf"^direction 'vector 1' has {2 * DIM} entries but the model's selected "
                                             rf"parameters have {DIM}"),
    "loss_landscape direction zero": (lambda c: walk(c, directions=[torch.zeros(DIM)]), ValueError,
                                      r"^direction 'vector 1' is zero everywhere: it moves no weight"),
    "loss_landscape direction on the meta device": (lambda c: walk(c, directions=[torch.ones(DIM, device="meta")]),
                                                    ValueError, r"^direction 'vector 1' is a tensor on the 'meta' "
                                                                r"device, which holds no numbers"),
    "loss_landscape Direction of a list": (lambda c: walk(c, directions=[Direction([0.1] * DIM, "mine")]), TypeError,
                                           r"^direction 'mine': its vector must be a torch\.Tensor or a numpy array; "
                                           r"got list"),
    "loss_landscape Direction of None": (lambda c: walk(c, directions=[Direction(None, "mine")]), TypeError,
                                         r"^direction 'mine': its vector must be a torch\.Tensor or a numpy array; "
                                         r"got None"),
    "loss_landscape Direction label int": (lambda c: walk(c, directions=[Direction(vector(c), 1)]), TypeError,
                                           r"^directions\[0\]\.label must be a str; got 1"),
    "loss_landscape Direction label None": (lambda c: walk(c, directions=[Direction(vector(c), None)]), TypeError,
                                            r"^directions\[0\]\.label must be a str; got None"),
    "loss_landscape Direction curvature str": (lambda c: walk(c, directions=[Direction(vector(c), "x", "6.9")]),
                                               TypeError, r"^direction 'x': its curvature must be a real number \(NaN "
                                                          r"when unknown\); got '6\.9'"),
    "loss_landscape Direction curvature None": (lambda c: walk(c, directions=[Direction(vector(c), "x", None)]),
                                                TypeError, r"^direction 'x': its curvature must be a real number"),
    "loss_landscape Direction curvature inf": (lambda c: walk(c, directions=[Direction(vector(c), "x", np.inf)]),
                                               ValueError, r"^direction 'x': its curvature must be finite, or NaN when "
                                                           r"unknown; got inf"),
    "loss_landscape Direction curvature of a vector": (
        lambda c: walk(c, directions=[Direction(vector(c), "x", torch.ones(2))]), TypeError,
        r"^direction 'x': its curvature must be a real number"),
    # random_directions and eigen_directions
    "random_directions model None": (lambda c: random_directions(None), TypeError,
                                     r"^model must be a torch\.nn\.Module; got None"),
    "random_directions count float": (lambda c: random_directions(c.tiny.model, 2.0), ValueError,
                                      r"^count must be an int >= 1; got 2\.0"),
    "random_directions count None": (lambda c: random_directions(c.tiny.model, None), ValueError,
                                     r"^count must be an int >= 1; got None"),
    "random_directions seed too large": (lambda c: random_directions(c.tiny.model, seed=2**63), ValueError,
                                         r"^seed must be an int in \[0, 2\*\*63\); got 9223372036854775808"),
    "random_directions seed None": (lambda c: random_directions(c.tiny.model, seed=None), ValueError,
                                    r"^seed must be an int in \[0, 2\*\*63\); got None"),
    "random_directions params int": (lambda c: random_directions(c.tiny.model, params=3), TypeError,
                                     r"^params must be None, a glob pattern"),
    "random_directions filter-normalised biases": (
        lambda c: random_directions(c.tiny.model, params="*.bias", filter_normalized=True), ValueError,
        r"^filter_normalized=True: the selected parameters all have one axis \(biases, BatchNorm\), where "
        r"filter-normalised directions are zero"),
    "random_directions filter_normalized None": (lambda c: random_directions(c.tiny.model, filter_normalized=None),
                                                 ValueError, r"^filter_normalized must be True or False; got None"),
    "eigen_directions spectrum None": (lambda c: eigen_directions(None), TypeError,
                                       r"^spectrum must be a curvwidgets Spectrum; got None"),
    "eigen_directions spectrum a path": (lambda c: eigen_directions(str(c.files["spectrum"])), TypeError,
                                         r"^spectrum must be a curvwidgets Spectrum; got str"),
    "eigen_directions spectrum without vectors": (lambda c: eigen_directions(c.tiny.bare), ValueError,
                                                  r"^spectrum has no Ritz vectors: compute it with save_vectors=True"),
    "eigen_directions largest str": (lambda c: eigen_directions(c.tiny.spectrum, largest="2"), ValueError,
                                     r"^largest must be an int >= 0; got '2'"),
    "eigen_directions smallest None": (lambda c: eigen_directions(c.tiny.spectrum, smallest=None), ValueError,
                                       r"^smallest must be an int >= 0; got None"),
    "eigen_directions nearest_zero float": (lambda c: eigen_directions(c.tiny.spectrum, nearest_zero=1.5), ValueError,
                                            r"^nearest_zero must be an int >= 0; got 1\.5"),
    "eigen_directions run str": (lambda c: eigen_directions(c.tiny.spectrum, run="0"), ValueError,
                                 r"^run must be an int in \[0, 1\); got '0'"),
    "eigen_directions run float": (lambda c: eigen_directions(c.tiny.spectrum, run=0.0), ValueError,
                                   r"^run must be an int in \[0, 1\); got 0\.0"),
    "eigen_directions run bool": (lambda c: eigen_directions(c.tiny.spectrum, run=False), ValueError,
                                  r"^run must be an int in \[0, 1\); got False"),
    "eigen_directions none picked": (lambda c: eigen_directions(c.tiny.spectrum, 0, 0, 0), ValueError,
                                     r"^pick at least one direction: largest, smallest or nearest_zero must be > 0"),

    # Spectrum: constructor and methods
    "Spectrum lanczos None": (lambda c: cw.Spectrum(None), TypeError,
                              r"^lanczos must be a LanczosResult \(of curvwidgets\.lanczos\); got None"),
    "Spectrum lanczos a dict": (lambda c: cw.Spectrum({"alpha": [1.0]}), TypeError,
                                r"^lanczos must be a LanczosResult .*; got dict"),
    "Spectrum ritz_vectors a list": (lambda c: cw.Spectrum(c.tiny.lanczos, [[0.0]]), TypeError,
                                     r"^ritz_vectors must be None or a numpy array of shape \(2, 3, 5\) \(start vectors, "
                                     r"steps, parameters\); got list"),
    "Spectrum ritz_vectors a tensor": (lambda c: cw.Spectrum(c.tiny.lanczos, torch.ones(2, 3, 5)), TypeError,
                                       r"^ritz_vectors must be None or a numpy array .*; got Tensor"),
    "Spectrum ritz_vectors of another dim": (lambda c: cw.Spectrum(c.tiny.lanczos, np.ones((2, 3, 4))), ValueError,
                                             r"^ritz_vectors must be a floating-point array of shape \(2, 3, 5\) .*; got "
                                             r"an array of dtype float64 and shape \(2, 3, 4\)"),
    "Spectrum ritz_vectors of ints": (lambda c: cw.Spectrum(c.tiny.lanczos, np.ones((2, 3, 5), int)), ValueError,
                                      r"^ritz_vectors must be a floating-point array .*; got an array of dtype int64"),
    "Spectrum meta None": (lambda c: cw.Spectrum(c.tiny.lanczos, None, None), TypeError,
                           r"^meta must be a dict with str keys; got None"),
    "Spectrum.from_lanczos None": (lambda c: cw.Spectrum.from_lanczos(None), TypeError,
                                   r"^result must be a LanczosResult \(of curvwidgets\.lanczos\); got None"),
    "Spectrum.from_lanczos save_vectors str": (lambda c: cw.Spectrum.from_lanczos(c.tiny.lanczos, save_vectors="yes"),
                                               ValueError, r"^save_vectors must be True or False; got 'yes'"),
    "Spectrum.from_lanczos save_vectors without a basis": (
        lambda c: cw.Spectrum.from_lanczos(c.tiny.lanczos, save_vectors=True), ValueError,
        r"^save_vectors needs a Lanczos run with store_vectors=True \(it kept no basis\)"),
    "Spectrum.from_lanczos vector_dtype unknown": (
        lambda c: cw.Spectrum.from_lanczos(c.tiny.lanczos, vector_dtype="fp32"), ValueError,
        r"^vector_dtype must be a floating-point dtype such as np\.float32 or np\.float64; got 'fp32'"),
    "Spectrum.from_lanczos vector_dtype int": (
        lambda c: cw.Spectrum.from_lanczos(c.tiny.lanczos, vector_dtype=np.int32), ValueError,
        r"^vector_dtype must be a floating-point dtype .*; got <class 'numpy\.int32'>"),
    "Spectrum.truncate 0": (lambda c: c.tiny.bare.truncate(0), ValueError, r"^k must be an int in \[1, 3\]; got 0"),
    "Spectrum.truncate past the steps": (lambda c: c.tiny.bare.truncate(4), ValueError,
                                         r"^k must be an int in \[1, 3\]; got 4"),
    "Spectrum.truncate float": (lambda c: c.tiny.bare.truncate(2.0), ValueError, r"^k must be an int in \[1, 3\]; got 2\.0"),
    "Spectrum.truncate str": (lambda c: c.tiny.bare.truncate("2"), ValueError, r"^k must be an int in \[1, 3\]; got '2'"),
    "Spectrum.truncate None": (lambda c: c.tiny.bare.truncate(None), ValueError, r"^k must be an int in \[1, 3\]; got None"),
    "Spectrum.smooth sigma str": (lambda c: c.tiny.bare.smooth(sigma="0.1"), ValueError,
                                  r"^sigma must be a finite number > 0; got '0\.1'"),
    "Spectrum.smooth sigma negative": (lambda c: c.tiny.bare.smooth(sigma=-0.1), ValueError,
                                       r"^sigma must be a finite number > 0; got -0\.1"),
    "Spectrum.smooth num_points 0": (lambda c: c.tiny.bare.smooth(num_points=0), ValueError,
                                     r"^num_points must be an int >= 1; got 0"),
    "Spectrum.smooth num_points float": (lambda c: c.tiny.bare.smooth(num_points=100.0), ValueError,
                                         r"^num_points must be an int >= 1; got 100\.0"),
    "Spectrum.smooth grid text": (lambda c: c.tiny.bare.smooth(grid="0:1"), ValueError,
                                  r"^grid must hold real numbers .*; got str"),
    "Spectrum.smooth grid with NaN": (lambda c: c.tiny.bare.smooth(grid=[0.0, np.nan]), ValueError,
                                      r"^grid must be a non-empty 1-D array of finite numbers"),
    "Spectrum.smooth grid 2-D": (lambda c: c.tiny.bare.smooth(grid=np.zeros((2, 2))), ValueError,
                                 r"^grid must be a non-empty 1-D array of finite numbers; got shape \(2, 2\)"),
    "Spectrum.negative_mass str": (lambda c: c.tiny.bare.negative_mass("0"), ValueError,
                                   r"^below must be a finite number; got '0'"),
    "Spectrum.negative_mass None": (lambda c: c.tiny.bare.negative_mass(None), ValueError,
                                    r"^below must be a finite number; got None"),
    "Spectrum.negative_mass NaN": (lambda c: c.tiny.bare.negative_mass(float("nan")), ValueError,
                                   r"^below must be a finite number; got nan"),
    "Spectrum.negative_mass array": (lambda c: c.tiny.bare.negative_mass(np.zeros(2)), ValueError,
                                     r"^below must be a finite number; got array"),
    "Spectrum.converged str": (lambda c: c.tiny.bare.converged("1e-3"), ValueError,
                               r"^tolerance must be a finite number >= 0; got '1e-3'"),
    "Spectrum.converged negative": (lambda c: c.tiny.bare.converged(-1e-3), ValueError,
                                    r"^tolerance must be a finite number >= 0; got -0\.001"),
    "Spectrum.converged NaN": (lambda c: c.tiny.bare.converged(float("nan")), ValueError,
                               r"^tolerance must be a finite number >= 0; got nan"),
    "Spectrum.converged bool": (lambda c: c.tiny.bare.converged(True), ValueError,
                                r"^tolerance must be a finite number >= 0; got True"),
    "Spectrum.save None": (lambda c: c.tiny.bare.save(None), TypeError, rf"^path {PATH}None"),
    "Spectrum.save int": (lambda c: c.tiny.bare.save(3), TypeError, rf"^path {PATH}int 3"),
    "Spectrum.save empty": (lambda c: c.tiny.bare.save(""), ValueError, r"^path must be a path; got ''"),
    "Spectrum.save a folder": (lambda c: c.tiny.bare.save(c.tmp), IsADirectoryError,
                               r"^cannot write '.*': it is a folder; give a file's path \(\.npz is added when missing\)"),
    "Spectrum.load None": (lambda c: cw.Spectrum.load(None), TypeError, rf"^path {PATH}None"),
    "Spectrum.load a folder": (lambda c: cw.Spectrum.load(c.tmp), IsADirectoryError,
                               r"^'.*' is a folder; give the path of a results file \(\.npz\)"),
    "Spectrum.load a checkpoint": (lambda c: cw.Spectrum.load(c.files["checkpoint"]), ResultFileError,
                                   r"^'.*checkpoint-00001\.pt' is an npz file but not a curvwidgets\.Spectrum file"),
    "Spectrum.load a history": (lambda c: cw.Spectrum.load(c.files["history"]), ResultFileError,
                                r"^'.*history\.json' is not a readable curvwidgets\.Spectrum file"),
    # Diagonal
    "Diagonal values a list": (lambda c: cw.Diagonal([0.5, 1.0]), TypeError,
                               r"^values must be a 1-D numpy array of floats \(the diagonal entries\); got list"),
    "Diagonal values None": (lambda c: cw.Diagonal(None), TypeError, r"^values must be a 1-D numpy array .*; got None"),
    "Diagonal values a tensor": (lambda c: cw.Diagonal(torch.ones(3)), TypeError,
                                 r"^values must be a 1-D numpy array .*; got Tensor"),
    "Diagonal values 2-D": (lambda c: cw.Diagonal(np.ones((2, 2))), ValueError,
                            r"^values must be a non-empty 1-D floating-point array of finite numbers; got an array of "
                            r"dtype float64 and shape \(2, 2\)"),
    "Diagonal values of ints": (lambda c: cw.Diagonal(np.arange(3)), ValueError,
                                r"^values must be a non-empty 1-D floating-point array .*; got an array of dtype int64"),
    "Diagonal values empty": (lambda c: cw.Diagonal(np.ones(0)), ValueError,
                              r"^values must be a non-empty 1-D floating-point array .*shape \(0,\)"),
    "Diagonal values with NaN": (lambda c: cw.Diagonal(np.array([1.0, np.nan, np.inf])), ValueError,
                                 r"^values must be .* of finite numbers; got .* with 2 entries NaN or inf"),
    "Diagonal.histogram bins 0": (lambda c: c.tiny.diagonal.histogram(0), ValueError, r"^bins must be an int >= 1; got 0"),
    "Diagonal.histogram bins float": (lambda c: c.tiny.diagonal.histogram(2.5), ValueError,
                                      r"^bins must be an int >= 1 or at least two finite, increasing bin edges; got 2\.5"),
    "Diagonal.histogram bins a name": (lambda c: c.tiny.diagonal.histogram("auto"), ValueError,
                                       r"^bins must hold real numbers .*; got str"),
    "Diagonal.histogram decreasing edges": (lambda c: c.tiny.diagonal.histogram(np.array([2.0, 1.0, 0.0])),
                                            ValueError, r"^bins must be an int >= 1 or at least two finite, increasing "
                                                        r"bin edges"),
    "Diagonal.histogram bins bool": (lambda c: c.tiny.diagonal.histogram(True), ValueError,
                                     r"^bins must be an int >= 1 or at least two finite, increasing bin edges; got True"),
    "Diagonal.save None": (lambda c: c.tiny.diagonal.save(None), TypeError, rf"^path {PATH}None"),
    "Diagonal.load a spectrum": (lambda c: cw.Diagonal.load(c.files["spectrum"]), ResultFileError,
                                 r"^'.*spectrum\.npz' holds a 'curvwidgets\.Spectrum' result, not a "
                                 r"curvwidgets\.Diagonal"),
    # Landscape
    "Landscape kind None": (lambda c: landscape(kind=None), ValueError, r"^kind must be 'line' or 'plane'; got None"),
    "Landscape offsets a list": (lambda c: landscape(offsets=[-1.0, 0.0, 1.0]), TypeError,
                                 r"^offsets must be a non-empty 1-D numpy array of floats \(the steps t\); got list"),
    "Landscape offsets of ints": (lambda c: landscape(offsets=np.array([-1, 0, 1])), TypeError,
                                  r"^offsets must be .*; got an array of dtype int64 and shape \(3,\)"),
    "Landscape offsets 2-D": (lambda c: landscape(offsets=np.zeros((1, 3))), TypeError,
                              r"^offsets must be .*; got an array of dtype float64 and shape \(1, 3\)"),
    "Landscape offsets decreasing": (lambda c: landscape(offsets=np.array([1.0, 0.0, -1.0])), ValueError,
                                     r"^offsets must hold finite, strictly increasing steps; got \[1\.0, 0\.0, -1\.0\]"),
    "Landscape offsets with NaN": (lambda c: landscape(offsets=np.array([-1.0, np.nan, 1.0])), ValueError,
                                   r"^offsets must hold finite, strictly increasing steps"),
    "Landscape labels a str": (lambda c: landscape(labels="ab"), TypeError,
                               r"^labels must be a tuple of str, one per direction; got 'ab'"),
    "Landscape labels of ints": (lambda c: landscape(labels=(1, 2)), TypeError,
                                 r"^labels must be a tuple of str, one per direction; got \(1, 2\)"),
    "Landscape labels empty": (lambda c: landscape(labels=(), curvatures=np.ones(0),
                                                   values={"train_loss": np.ones((0, 3))}), ValueError,
                               r"^labels must name one direction at least"),
    "Landscape curvatures a list": (lambda c: landscape(curvatures=[2.0, 1.0]), TypeError,
                                    r"^curvatures must be a numpy array of floats, one per direction \(NaN where "
                                    r"unknown\); got list"),
    "Landscape curvatures of three": (lambda c: landscape(curvatures=np.ones(3)), ValueError,
                                      r"^curvatures must hold one finite number \(or NaN\) per label, shape \(2,\); got "
                                      r"\[1\.0, 1\.0, 1\.0\]"),
    "Landscape curvature infinite": (lambda c: landscape(curvatures=np.array([np.inf, 1.0])), ValueError,
                                     r"^curvatures must hold one finite number \(or NaN\) per label"),
    "Landscape values a list": (lambda c: landscape(values=[np.ones((2, 3))]), TypeError,
                                r"^values must be a dict of one or more of \('train_loss', .*\) to arrays"),
    "Landscape values empty": (lambda c: landscape(values={}), TypeError,
                               r"^values must be a dict of one or more of .* to arrays; got \{\}"),
    "Landscape values of lists": (lambda c: landscape(values={"train_loss": [[1.0] * 3] * 2}), TypeError,
                                  r"^values\['train_loss'\] must be a numpy array of floats \(NaN where not computed\); "
                                  r"got list"),
    "Landscape values of ints": (lambda c: landscape(values={"train_loss": np.ones((2, 3), int)}), TypeError,
                                 r"^values\['train_loss'\] must be a numpy array of floats .*dtype int64"),
    "Landscape accuracy above 1": (lambda c: landscape(values={"train_accuracy": np.full((2, 3), 1.5)}), ValueError,
                                   r"^values\['train_accuracy'\] must lie in \[0, 1\] \(or be NaN\); 6 values do not"),
    "Landscape plane of three labels": (lambda c: landscape(kind="plane", labels=("a", "b", "c"), curvatures=np.ones(3),
                                                            values={"train_loss": np.ones((3, 3))}), ValueError,
                                        r"^a plane has two directions: labels must hold 2; got 3"),
    "Landscape metric not computed": (lambda c: landscape()["test_loss"], KeyError,
                                      r"metric must be one of \('train_loss', 'train_accuracy'\); got 'test_loss'"),
    "Landscape.curvature_at_zero of a plane": (
        lambda c: landscape(kind="plane", values={"train_loss": np.ones((3, 3))}).curvature_at_zero(), ValueError,
        r"^curvature_at_zero is defined for a line landscape"),
    "Landscape.curvature_at_zero one-sided": (
        lambda c: landscape(offsets=np.array([0.0, 0.5, 1.0])).curvature_at_zero(), ValueError,
        r"^curvature_at_zero needs points on both sides of t = 0"),
    "Landscape.quadratic_model unknown metric": (lambda c: landscape().quadratic_model("test_accuracy"), KeyError,
                                                 r"metric must be one of .*; got 'test_accuracy'"),
    "Landscape.save a folder": (lambda c: landscape().save(c.tmp), IsADirectoryError,
                                r"^cannot write '.*': it is a folder; give a file's path"),
    "Landscape.load a folder": (lambda c: cw.Landscape.load(c.tmp), IsADirectoryError,
                                r"^'.*' is a folder; give the path of a results file \(\.npz\)"),
    "load_result None": (lambda c: load_result(None), TypeError, rf"^path {PATH}None"),
    "load_result a history": (lambda c: load_result(c.files["history"]), ResultFileError,
                              r"^'.*history\.json' is not a readable curvwidgets result file"),
    "TrainingHistory unknown column": (lambda c: cw.TrainingHistory()["loss"], KeyError,
                                       r"column must be one of \('epoch', 'lr', .*\); got 'loss'"),
    "TrainingHistory rows not a list": (lambda c: cw.TrainingHistory(rows=5), TypeError,
                                        r"^rows must be a list of dicts, one per epoch; got int"),
    "TrainingHistory rows of numbers": (lambda c: cw.TrainingHistory(rows=[1.0, 2.0]), TypeError,
                                        r"^rows must be a list of dicts, one per epoch; got a list holding float"),
    "TrainingHistory config a list": (lambda c: cw.TrainingHistory(config=[("model", "MLP")]), TypeError,
                                      r"^config must be a dict; got list"),
    "TrainingHistory checkpoints a str": (lambda c: cw.TrainingHistory(checkpoints="checkpoint-00001.pt"), TypeError,
                                         r"^checkpoints must be a list of paths; got str"),
    "TrainingHistory.save None": (lambda c: cw.TrainingHistory().save(None), TypeError, rf"^path {PATH}None"),
    "TrainingHistory.save a folder": (lambda c: cw.TrainingHistory().save(c.tmp), IsADirectoryError,
                                      r"^cannot write '.*': it is a folder; give a file's path \(such as "
                                      r"history\.json\)"),
    "TrainingHistory.save a config JSON cannot hold": (
        lambda c: cw.TrainingHistory(config={"loss_fn": nn.MSELoss()}).save(c.tmp / "history.json"), TypeError,
        rf"^config\['loss_fn'\] {META}.*; got MSELoss"),
    "TrainingHistory.load None": (lambda c: cw.TrainingHistory.load(None), TypeError, rf"^path {PATH}None"),

    # load_trained
    "load_trained checkpoint None": (lambda c: load_trained(None), TypeError, rf"^checkpoint {PATH}None"),
    "load_trained checkpoint int": (lambda c: load_trained(3), TypeError, rf"^checkpoint {PATH}int 3"),
    "load_trained checkpoint empty": (lambda c: load_trained(""), ValueError, r"^checkpoint must be a path; got ''"),
    "load_trained checkpoint bytes": (lambda c: load_trained(os.fsencode(c.files["checkpoint"])), TypeError,
                                      rf"^checkpoint {PATH}bytes"),
    "load_trained an empty folder": (lambda c: load_trained(c.tmp), FileNotFoundError,
                                     r"^checkpoint: the folder '.*' holds no checkpoint-XXXXX\.pt files; give a "
                                     r"checkpoint file or the folder of a training run"),
    "load_trained a missing file": (lambda c: load_trained(c.tmp / "checkpoint-00300.pt"), FileNotFoundError,
                                    r"^checkpoint '.*checkpoint-00300\.pt' does not exist"),
    "load_trained a spectrum file": (lambda c: load_trained(c.files["spectrum"]), CheckpointError,
                                     r"^'.*spectrum\.npz' is not a readable curvwidgets checkpoint"),
    "load_trained a history": (lambda c: load_trained(c.files["history"]), CheckpointError,
                               r"^'.*history\.json' is not a readable curvwidgets checkpoint"),
    "load_trained root int": (lambda c: load_trained(c.files["checkpoint"], root=3), TypeError, rf"^root {PATH}int 3"),
    "load_trained batch_size 0": (lambda c: load_trained(c.files["checkpoint"], batch_size=0), ValueError,
                                  r"^batch_size must be an int >= 1; got 0"),
    "load_trained model a name": (lambda c: load_trained(c.files["checkpoint"], model="MLP"), TypeError,
                                  r"^model must be None or a torch\.nn\.Module of the checkpoint's architecture; got str"),
    "load_trained model of another architecture": (
        lambda c: load_trained(c.files["checkpoint"], model=nn.Linear(64, 10)), ValueError,
        r"^checkpoint '.*checkpoint-00001\.pt' does not fit the model \(Linear\); missing in the checkpoint: bias, "
        r"weight"),
    "load_trained device float": (lambda c: load_trained(c.files["checkpoint"], device=0.0), ValueError,
                                  r"^device must name a device such as 'cpu'"),
    "load_trained swa of a run without": (lambda c: load_trained(c.files["checkpoint"], swa=True), ValueError,
                                          r"^swa=True, but '.*checkpoint-00001\.pt' is from a run without stochastic "
                                          r"weight averaging"),
}


@pytest.mark.parametrize("case", list(CORE_CASES))
def test_bad_input_is_one_clear_error_and_nothing_is_computed_or_written(case, tiny, files, tmp_path):
    call, error, pattern = CORE_CASES[case]
    (tmp_path / "a-file").write_text("keep")
    context = Case(tiny=tiny, files=files, tmp=tmp_path, events=[])
    before, results_before = snapshot(tmp_path), snapshot(files["run"].parent)
    with pytest.raises(error) as raised:
        call(context)
    assert_clear(str(raised.value.args[0]) if error is KeyError else str(raised.value), pattern)
    assert_raised_here(raised.value)
    assert context.events == []  # nothing was computed
    assert snapshot(tmp_path) == before and snapshot(files["run"].parent) == results_before


# ---- the command line ------------------------------------------------------------------------------------

def cli_run(argv: List[str]) -> int:
    try:
        return main([str(item) for item in argv])
    except SystemExit as stop:
        return stop.code


CHECKPOINT = ["--checkpoint", "{checkpoint}", "--device", "cpu"]
TRAIN = ["train", "--data", "digits", "--model", "MLP", "--epochs", "1", "--device", "cpu"]
LANDSCAPE = ["landscape", *CHECKPOINT, "--spectrum", "{spectrum}", "--points", "3"]

#: id -> (argv with {placeholders}, exit status, regex of the error line's message)
CLI_CASES: Dict[str, tuple] = {
    # train
    "train --out a file": ([*TRAIN, "--out", "{file}"], 2, r"^--out '.*a-file' cannot be a folder: '.*a-file' is a file"),
    "train --out under a file": ([*TRAIN, "--out", "{file}/run"], 2, r"^--out '.*a-file/run' cannot be a folder"),
    "train --out unwritable": ([*TRAIN, "--out", "/proc/curvwidgets-run"], 2,
                               r"^--out: cannot write '/proc/curvwidgets-run': creating a file in '/proc' fails"),
    "train --out empty": ([*TRAIN, "--out", ""], 2, r"^--out must be a path; got ''"),
    "train --epochs text": ([*TRAIN, "--out", "{out}/run", "--epochs", "ten"], 2,
                            r"argument --epochs: invalid int value: 'ten'"),
    "train --lr infinite": ([*TRAIN, "--out", "{out}/run", "--lr", "inf"], 2, r"^--lr must be a finite number > 0; got inf"),
    "train --lr negative": ([*TRAIN, "--out", "{out}/run", "--lr", "-0.1"], 2, r"--lr must be > 0; got -0\.1"),
    "train --momentum 1.5": ([*TRAIN, "--out", "{out}/run", "--momentum", "1.5"], 2,
                             r"^--momentum must be a number in \[0, 1\); got 1\.5"),
    "train --weight-decay negative": ([*TRAIN, "--out", "{out}/run", "--weight-decay", "-1"], 2,
                                      r"^--weight-decay must be a finite number >= 0; got -1\.0"),
    "train --final-ratio 2": ([*TRAIN, "--out", "{out}/run", "--final-ratio", "2"], 2,
                              r"^--final-ratio must be a number in \[0, 1\]; got 2\.0"),
    "train --swa-start 0": ([*TRAIN, "--out", "{out}/run", "--epochs", "2", "--swa-start", "0", "--swa-lr", "0.01"], 2,
                            r"^--swa-start must be an int >= 1; got 0"),
    "train --swa-lr without --swa-start": ([*TRAIN, "--out", "{out}/run", "--swa-lr", "0.01"], 2,
                                           r"^--swa-lr 0\.01 needs --swa-start"),
    "train --swa-lr negative": ([*TRAIN, "--out", "{out}/run", "--epochs", "2", "--swa-start", "1", "--swa-lr", "-1"], 2,
                                r"^--swa-lr must be a finite number > 0; got -1\.0"),
    "train --seed negative": ([*TRAIN, "--out", "{out}/run", "--seed", "-1"], 2,
                              r"^--seed must be an int in \[0, 2\*\*63\); got -1"),
    "train --model unknown": ([*TRAIN, "--out", "{out}/run", "--model", "ResNet1000"], 2,
                              r"^--model must be one of \(.*'MLP'.*\) \(any letter case\); got 'ResNet1000'"),
    "train --data unknown": ([*TRAIN, "--out", "{out}/run", "--data", "mnist"], 2,
                             r"^--data must be one of \(.*'digits'.*\) \(any letter case\); got 'mnist'"),
    "train --optimizer unknown": ([*TRAIN, "--out", "{out}/run", "--optimizer", "Adagrad"], 2,
                                  r"^--optimizer must be one of \(.*'SGD'.*\); got 'Adagrad'"),
    "train --schedule unknown": ([*TRAIN, "--out", "{out}/run", "--schedule", "exponential"], 2,
                                 r"^--schedule must be one of \(.*'linear'.*\); got 'exponential'"),
    "train --resume missing": ([*TRAIN, "--out", "{out}/run", "--resume", "{out}/checkpoint-00001.pt"], 2,
                               r"^--resume '.*checkpoint-00001\.pt' does not exist"),
    "train --resume a spectrum": ([*TRAIN, "--out", "{out}/run", "--resume", "{spectrum}"], 2,
                                  r"^--resume: '.*spectrum\.npz' is not a readable curvwidgets checkpoint"),
    # spectrum
    "spectrum --checkpoint a spectrum": (["spectrum", "--checkpoint", "{spectrum}", "--out", "{out}/s.npz"], 2,
                                         r"^--checkpoint: '.*spectrum\.npz' is not a readable curvwidgets checkpoint"),
    "spectrum --checkpoint a history": (["spectrum", "--checkpoint", "{history}", "--out", "{out}/s.npz"], 2,
                                        r"^--checkpoint: '.*history\.json' is not a readable curvwidgets checkpoint"),
    "spectrum --checkpoint an empty folder": (["spectrum", "--checkpoint", "{out}", "--out", "{out}/s.npz"], 2,
                                              r"^--checkpoint: the folder '.*' holds no checkpoint-XXXXX\.pt files"),
    "spectrum --out a folder": (["spectrum", *CHECKPOINT, "--out", "{out}", "--steps", "2"], 2,
                                r"^--out: cannot write '.*': it is a folder; give the path of a file"),
    "spectrum --out under a file": (["spectrum", *CHECKPOINT, "--out", "{file}/s.npz"], 2,
                                    r"^--out: cannot write '.*a-file/s\.npz': '.*a-file' is a file, not a folder"),
    "spectrum --out unwritable": (["spectrum", *CHECKPOINT, "--out", "/proc/curvwidgets-spectrum"], 2,
                                  r"^--out: cannot write '/proc/curvwidgets-spectrum': creating a file in '/proc' fails"),
    "spectrum --out empty": (["spectrum", *CHECKPOINT, "--out", ""], 2, r"^--out must be a path; got ''"),
    "spectrum --steps text": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--steps", "many"], 2,
                              r"argument --steps: invalid int value: 'many'"),
    "spectrum --vectors 0": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--vectors", "0"], 2,
                             r"--vectors must be >= 1; got 0"),
    "spectrum --samples beyond the data": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--samples", "100000"], 2,
                                           r"^--samples must be an int in \[1, \d+\] \(the size of data\); got 100000"),
    "spectrum --seed negative": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--seed", "-1"], 2,
                                 r"^--seed must be an int in \[0, 2\*\*63\); got -1"),
    "spectrum --params matching nothing": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--params", "encoder.*"], 2,
                                           r"^--params pattern 'encoder\.\*' matches no trainable parameter"),
    "spectrum --data unknown": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--data", "mnist"], 2,
                                r"^--data must be one of .*; got 'mnist'"),
    "spectrum --swa of a run without": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--swa"], 2,
                                        r"^--swa, but '.*checkpoint-00001\.pt' is from a run without stochastic weight "
                                        r"averaging"),
    "spectrum --bn-mode train of a diagonal": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--matrix", "ggn_diag",
                                                "--bn-mode", "train"], 2,
                                               r"^--bn-mode must be 'eval' for --matrix 'ggn_diag'"),
    "spectrum --bn-mode unknown": (["spectrum", *CHECKPOINT, "--out", "{out}/s", "--bn-mode", "batch"], 2,
                                   r"argument --bn-mode: invalid choice: 'batch'"),
    "spectrum --device unknown": (["spectrum", "--checkpoint", "{checkpoint}", "--out", "{out}/s", "--device", "tpu"], 2,
                                  r"argument --device: device must name a device such as 'cpu', 'cuda' or 'cuda:1'; "
                                  r"got 'tpu'"),
    # stats
    "stats --out a folder": (["stats", *CHECKPOINT, "--out", "{out}"], 2,
                             r"^--out: cannot write '.*': it is a folder; give the path of a file"),
    "stats --out under a file": (["stats", *CHECKPOINT, "--out", "{file}/stats.json"], 2,
                                 r"^--out: cannot write '.*a-file/stats\.json': '.*a-file' is a file, not a folder"),
    "stats --checkpoint a landscape": (["stats", "--checkpoint", "{landscape}", "--device", "cpu"], 2,
                                       r"^--checkpoint: '.*landscape\.npz' is not a readable curvwidgets checkpoint"),
    "stats --probes 0": (["stats", *CHECKPOINT, "--probes", "0"], 2, r"--probes must be >= 1; got 0"),
    "stats --curvature unknown": (["stats", *CHECKPOINT, "--curvature", "fisher"], 2,
                                  r"argument --curvature: invalid choice: 'fisher'"),
    "stats --seed negative": (["stats", *CHECKPOINT, "--seed", "-5"], 2, r"^--seed must be an int in \[0, 2\*\*63\); got -5"),
    # landscape
    "landscape --points 1": ([*LANDSCAPE, "--out", "{out}/l.npz", "--points", "1"], 2, r"^--points must be an int >= 2; got 1"),
    "landscape --dist infinite": ([*LANDSCAPE, "--out", "{out}/l.npz", "--dist", "inf"], 2,
                                  r"^--dist must be a finite number > 0; got inf"),
    "landscape --dist text": ([*LANDSCAPE, "--out", "{out}/l.npz", "--dist", "far"], 2,
                              r"argument --dist: invalid float value: 'far'"),
    "landscape --largest negative": ([*LANDSCAPE, "--out", "{out}/l.npz", "--largest", "-1"], 2,
                                     r"^--largest must be an int >= 0; got -1"),
    "landscape no eigenvector": ([*LANDSCAPE, "--out", "{out}/l.npz", "--largest", "0", "--smallest", "0"], 2,
                                 r"^--largest, --smallest and --nearest-zero are all 0: pick at least one eigenvector"),
    "landscape --spectrum a landscape": (["landscape", *CHECKPOINT, "--spectrum", "{landscape}", "--out", "{out}/l.npz"],
                                         2, r"^--spectrum: '.*landscape\.npz' holds a 'curvwidgets\.Landscape' result, "
                                            r"not a curvwidgets\.Spectrum"),
    "landscape --spectrum a diagonal": (["landscape", *CHECKPOINT, "--spectrum", "{diagonal}", "--out", "{out}/l.npz"],
                                        2, r"^--spectrum: '.*diagonal\.npz' holds a 'curvwidgets\.Diagonal' result"),
    "landscape --spectrum a checkpoint": (["landscape", *CHECKPOINT, "--spectrum", "{checkpoint}", "--out",
                                           "{out}/l.npz"], 2,
                                          r"^--spectrum: '.*checkpoint-00001\.pt' is an npz file but not a "
                                          r"curvwidgets\.Spectrum file"),
    "landscape --spectrum a folder": (["landscape", *CHECKPOINT, "--spectrum", "{out}", "--out", "{out}/l.npz"], 2,
                                      r"^--spectrum: '.*' is a folder; give the path of a results file"),
    "landscape --spectrum missing": (["landscape", *CHECKPOINT, "--spectrum", "{out}/spectrum.npz", "--out",
                                      "{out}/l.npz"], 2,
                                     r"^--spectrum: curvwidgets\.Spectrum file '.*spectrum\.npz' does not exist"),
    "landscape without --spectrum": (["landscape", *CHECKPOINT, "--out", "{out}/l.npz"], 2,
                                     r"^--spectrum is required: a path"),
    "landscape --checkpoint a spectrum": (["landscape", "--checkpoint", "{spectrum}", "--spectrum", "{spectrum}",
                                           "--out", "{out}/l.npz", "--device", "cpu"], 2,
                                          r"^--checkpoint: '.*spectrum\.npz' is not a readable curvwidgets checkpoint"),
    "landscape --out a folder": ([*LANDSCAPE, "--out", "{out}"], 2,
                                 r"^--out: cannot write '.*': it is a folder; give the path of a file"),
    "landscape --out unwritable": ([*LANDSCAPE, "--out", "/proc/curvwidgets-landscape.npz"], 2,
                                   r"^--out: cannot write '/proc/curvwidgets-landscape\.npz': creating a file in '/proc' "
                                   r"fails"),
    "landscape --bn unknown": ([*LANDSCAPE, "--out", "{out}/l.npz", "--bn", "fresh"], 2,
                               r"argument --bn: invalid choice: 'fresh'"),
    # plot
    "plot a missing file": (["plot", "{out}/spectrum.npz", "--out", "{out}/figure.png"], 2,
                            r"^inputs: result file '.*spectrum\.npz' does not exist"),
    "plot a checkpoint": (["plot", "{checkpoint}", "--out", "{out}/figure.png"], 2,
                          r"^inputs: '.*checkpoint-00001\.pt' is not a readable curvwidgets result file"),
    "plot a text file": (["plot", "{file}", "--out", "{out}/figure.png"], 2,
                         r"^inputs: '.*a-file' is not a readable curvwidgets result file"),
    "plot a folder without a history": (["plot", "{out}", "--out", "{out}/figure.png"], 2,
                             r"^inputs: training history '.*history\.json' does not exist"),
    "plot a spectrum and a landscape": (["plot", "{spectrum}", "{landscape}", "--out", "{out}/figure.png"], 2,
                                        r"^inputs must name at least one Spectrum and at most one Diagonal; got a "
                                        r"Spectrum .*, a Landscape"),
    "plot two diagonals": (["plot", "{spectrum}", "{diagonal}", "{diagonal}", "--out", "{out}/figure.png"], 2,
                           r"^inputs must name at least one Spectrum and at most one Diagonal"),
    "plot --out a folder": (["plot", "{spectrum}", "--out", "{out}"], 2,
                            r"^--out: cannot write '.*': it is a folder; give the path of a file"),
    "plot --out without a suffix": (["plot", "{spectrum}", "--out", "{out}/figure"], 2,
                                    r"^--out '.*figure' needs a suffix naming the image format, such as \.png, \.pdf "
                                    r"or \.svg"),
    "plot --out under a file": (["plot", "{spectrum}", "--out", "{file}/figure.png"], 2,
                                r"^--out: cannot write '.*a-file/figure\.png': '.*a-file' is a file, not a folder"),
    "plot --metric unknown": (["plot", "{landscape}", "--out", "{out}/figure.png", "--metric", "top5"], 2,
                              r"argument --metric: invalid choice: 'top5'"),
    # synthetic, reproduce, demo
    "synthetic --out a file": (["synthetic", "--out", "{file}", "--size", "small", "--steps", "2"], 2,
                               r"^--out '.*a-file' cannot be a folder: '.*a-file' is a file"),
    "synthetic --out unwritable": (["synthetic", "--out", "/proc/curvwidgets-figures", "--size", "small"], 2,
                                   r"^--out: cannot write '/proc/curvwidgets-figures': creating a file in '/proc' fails"),
    "synthetic --seed negative": (["synthetic", "--out", "{out}/figures", "--size", "small", "--seed", "-1"], 2,
                                  r"^--seed must be an int in \[0, 2\*\*63\); got -1"),
    "synthetic --size unknown": (["synthetic", "--out", "{out}/figures", "--size", "huge"], 2,
                                 r"argument --size: invalid choice: 'huge'"),
    "synthetic --steps 0": (["synthetic", "--out", "{out}/figures", "--steps", "0"], 2, r"--steps must be >= 1; got 0"),
    "reproduce --out a file": (["reproduce", "--out", "{file}", "00_quickstart"], 2,
                               r"^--out '.*a-file' cannot be a folder: '.*a-file' is a file"),
    "reproduce --out unwritable": (["reproduce", "--out", "/proc/curvwidgets-notebooks", "00_quickstart"], 2,
                                   r"^--out: cannot write '/proc/curvwidgets-notebooks': creating a file in '/proc'"),
    "demo --out under a file": (["demo", "--out", "{file}/demo", "--epochs", "1"], 2,
                                r"^--out '.*a-file/demo' cannot be a folder: '.*a-file' is a file"),
    "demo --seed negative": (["demo", "--out", "{out}/demo", "--epochs", "1", "--seed", "-1"], 2,
                             r"^--seed must be an int in \[0, 2\*\*63\); got -1"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_a_bad_command_line_is_one_error_line_naming_the_option_and_writes_nothing(case, files, tmp_path, capsys):
    argv, status, pattern = CLI_CASES[case]
    (tmp_path / "a-file").write_text("keep")
    fill = {name: os.fspath(path) for name, path in files.items()}
    fill.update(out=os.fspath(tmp_path), file=os.fspath(tmp_path / "a-file"))
    before, results_before = snapshot(tmp_path), snapshot(files["run"].parent)
    assert cli_run([item.format(**fill) for item in argv]) == status
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0] == captured.err.strip().splitlines()[-1], captured.err
    message = errors[0].split("error: ", 1)[1]
    assert_clear(message, pattern)
    assert snapshot(tmp_path) == before and snapshot(files["run"].parent) == results_before
    for path in ("/proc/curvwidgets-run", "/proc/curvwidgets-spectrum.npz", "/proc/curvwidgets-figures"):
        assert not os.path.exists(path)


# ---- the widgets -------------------------------------------------------------------------------------------

def spectrum_widget(c: Case, **options):
    return widgets.SpectrumWidget(c.tiny.model, c.tiny.data, **{"steps": 3, "bn_mode": "eval",
                                                                 "backend": "double-backward", **options})


def landscape_widget(c: Case, **options):
    return widgets.LandscapeWidget(c.tiny.model, c.tiny.data, **{"directions": "random", "n_points": 3, "dist": 0.5,
                                                                  "points_per_pass": 1, **options})


def training_widget(c: Case, **options):
    return widgets.TrainingWidget(**{"out_dir": os.fspath(c.tmp / "run"), "epochs": 1, **options})


def synthetic_widget(c: Case, **options):
    return widgets.SyntheticSpectrumWidget(**{"P": 20, "steps": 3, **options})


def dashboard(c: Case, **options):
    return widgets.Dashboard(**{"out_dir": os.fspath(c.tmp / "dashboard"), "epochs": 1, **options})


#: id -> (make(case): the widget, with a bad argument, exception, regex of the message)
WIDGET_ARGUMENT_CASES: Dict[str, tuple] = {
    "SpectrumWidget matrix unknown": (lambda c: spectrum_widget(c, matrix="fisher"), ValueError,
                                      r"^matrix must be one of \('hessian', 'ggn'\); got 'fisher'"),
    "SpectrumWidget bn_mode unknown": (lambda c: spectrum_widget(c, bn_mode="batch"), ValueError,
                                       r"^bn_mode must be one of \('eval', 'train'\); got 'batch'"),
    "SpectrumWidget steps str": (lambda c: spectrum_widget(c, steps="30"), ValueError, r"^steps must be an int; got '30'"),
    "SpectrumWidget steps float": (lambda c: spectrum_widget(c, steps=2.5), ValueError, r"^steps must be an int; got 2\.5"),
    "SpectrumWidget num_vectors None": (lambda c: spectrum_widget(c, num_vectors=None), ValueError,
                                        r"^num_vectors must be an int; got None"),
    "SpectrumWidget num_samples float": (lambda c: spectrum_widget(c, num_samples=64.0), ValueError,
                                         r"^num_samples must be an int; got 64\.0"),
    "SpectrumWidget seed str": (lambda c: spectrum_widget(c, seed="0"), ValueError, r"^seed must be an int; got '0'"),
    "SpectrumWidget tolerance negative": (lambda c: spectrum_widget(c, tolerance=-1e-3), ValueError,
                                          r"^tolerance must be a finite number >= 0; got -0\.001"),
    "SpectrumWidget tolerance str": (lambda c: spectrum_widget(c, tolerance="1e-3"), ValueError,
                                     r"^tolerance must be a finite number >= 0; got '1e-3'"),
    "SpectrumWidget backend unknown": (lambda c: spectrum_widget(c, backend="fast"), ValueError,
                                       r"^backend must be one of \('auto', 'forward-over-reverse', 'double-backward'\); "
                                       r"got 'fast'"),
    "SpectrumWidget backend of the other matrix": (lambda c: spectrum_widget(c, matrix="ggn", backend="forward-over-reverse"),
                                                   ValueError, r"^backend must be one of \('auto', 'forward-mode', "
                                                               r"'double-backward'\)"),
    "SpectrumWidget device unknown": (lambda c: spectrum_widget(c, device="gpu"), ValueError,
                                      r"^device must name a device such as 'cpu', 'cuda' or 'cuda:1'; got 'gpu'"),
    "SpectrumWidget save_vectors str": (lambda c: spectrum_widget(c, save_vectors="yes"), ValueError,
                                        r"^save_vectors must be True or False; got 'yes'"),
    "SpectrumWidget checkpoint None": (lambda c: spectrum_widget(c, checkpoint=None), TypeError,
                                       r"^checkpoint must be a str or os\.PathLike; got None"),
    "SpectrumWidget checkpoint bytes": (lambda c: spectrum_widget(c, checkpoint=b"runs/a"), TypeError,
                                       r"^checkpoint must be a str or os\.PathLike; got bytes b'runs/a'"),
    "SpectrumWidget params a list": (lambda c: spectrum_widget(c, params=["fc2.*"]), TypeError,
                                     r"^params must be a str; got list \['fc2\.\*'\]"),
    "SpectrumWidget save_path None": (lambda c: spectrum_widget(c, save_path=None), TypeError,
                                      r"^save_path must be a str or os\.PathLike; got None"),
    "SpectrumWidget model a name": (lambda c: widgets.SpectrumWidget("MLP", c.tiny.data), TypeError,
                                    r"^model must be None or a torch\.nn\.Module; got str"),
    "SpectrumWidget loss_fn a name": (lambda c: spectrum_widget(c, loss_fn="cross_entropy"), TypeError,
                                      r"^loss_fn must be None or callable as loss_fn\(outputs, targets\); got str"),
    "LandscapeWidget dist str": (lambda c: landscape_widget(c, dist="1"), ValueError, r"^dist must be a number; got '1'"),
    "LandscapeWidget n_points float": (lambda c: landscape_widget(c, n_points=2.5), ValueError,
                                       r"^n_points must be an int; got 2\.5"),
    "LandscapeWidget count None": (lambda c: landscape_widget(c, count=None), ValueError,
                                   r"^count must be an int; got None"),
    "LandscapeWidget seed float": (lambda c: landscape_widget(c, seed=1.5), ValueError, r"^seed must be an int; got 1\.5"),
    "LandscapeWidget plane str": (lambda c: landscape_widget(c, plane="yes"), ValueError,
                                  r"^plane must be True or False; got 'yes'"),
    "LandscapeWidget points_per_pass 0": (lambda c: landscape_widget(c, points_per_pass=0), ValueError,
                                          r"^points_per_pass must be an int >= 1; got 0"),
    "LandscapeWidget device unknown": (lambda c: landscape_widget(c, device="gpu"), ValueError,
                                       r"^device must name a device such as 'cpu'"),
    "LandscapeWidget checkpoint int": (lambda c: landscape_widget(c, checkpoint=3), TypeError,
                                       r"^checkpoint must be a str or os\.PathLike; got int 3"),
    "LandscapeWidget loss_fn a name": (lambda c: landscape_widget(c, loss_fn="mse"), TypeError,
                                       r"^loss_fn must be None or callable"),
    "LandscapeWidget model a state_dict": (lambda c: widgets.LandscapeWidget(c.tiny.model.state_dict(), c.tiny.data),
                                           TypeError, r"^model must be None or a torch\.nn\.Module; got OrderedDict"),
    "LandscapeWidget spectrum a diagonal": (lambda c: landscape_widget(c, spectrum=c.tiny.diagonal), TypeError,
                                            r"^spectrum must be a curvwidgets Spectrum, the path of a spectrum file, or "
                                            r"None; got Diagonal"),
    "LandscapeWidget spectrum file of a landscape": (lambda c: landscape_widget(c, spectrum=c.files["landscape"]),
                                                     ResultFileError, r"^'.*landscape\.npz' holds a "
                                                                      r"'curvwidgets\.Landscape' result, not a "
                                                                      r"curvwidgets\.Spectrum"),
    "LandscapeWidget spectrum without vectors": (lambda c: landscape_widget(c, spectrum=c.tiny.bare), ValueError,
                                                 r"^spectrum has no Ritz vectors"),
    "TrainingWidget lr str": (lambda c: training_widget(c, lr="0.1"), ValueError, r"^lr must be a number; got '0\.1'"),
    "TrainingWidget epochs float": (lambda c: training_widget(c, epochs=2.5), ValueError,
                                    r"^epochs must be an int; got 2\.5"),
    "TrainingWidget swa_start str": (lambda c: training_widget(c, swa_start="5"), ValueError,
                                     r"^swa_start must be an int; got '5'"),
    "TrainingWidget swa_lr None": (lambda c: training_widget(c, swa_lr=None), ValueError,
                                   r"^swa_lr must be a number; got None"),
    "TrainingWidget save_every float": (lambda c: training_widget(c, save_every=1.0), ValueError,
                                        r"^save_every must be an int; got 1\.0"),
    "TrainingWidget out_dir None": (lambda c: training_widget(c, out_dir=None), TypeError,
                                    r"^out_dir must be a str or os\.PathLike \(empty for no files\); got None"),
    "TrainingWidget device unknown": (lambda c: training_widget(c, device="gpu"), ValueError,
                                      r"^device must name a device such as 'cpu'"),
    "TrainingWidget dataset unknown": (lambda c: training_widget(c, dataset="mnist"), ValueError,
                                       r"^dataset must be one of \(.*'digits'.*\); got 'mnist'"),
    "TrainingWidget optimizer unknown": (lambda c: training_widget(c, optimizer="Adagrad"), ValueError,
                                         r"^optimizer must be one of \(.*'SGD'.*\); got 'Adagrad'"),
    "SyntheticSpectrumWidget ensemble unknown": (lambda c: synthetic_widget(c, ensemble="gue"), ValueError,
                                                 r"^ensemble must be one of \('wigner', 'marchenko-pastur', 'typed', "
                                                 r"'section53'\); got 'gue'"),
    "SyntheticSpectrumWidget P str": (lambda c: synthetic_widget(c, P="20"), ValueError, r"^P must be an int; got '20'"),
    "SyntheticSpectrumWidget ratio None": (lambda c: synthetic_widget(c, ratio=None), ValueError,
                                           r"^ratio must be a number; got None"),
    "SyntheticSpectrumWidget bins 0": (lambda c: synthetic_widget(c, bins=0), ValueError, r"^bins must be an int >= 1; got 0"),
    "SyntheticSpectrumWidget bins str": (lambda c: synthetic_widget(c, bins="60"), ValueError,
                                         r"^bins must be an int >= 1; got '60'"),
    "SyntheticSpectrumWidget eigenvalues a list": (lambda c: synthetic_widget(c, ensemble="typed", eigenvalues=[1, 2]),
                                                   TypeError, r"^eigenvalues must be a str of comma-separated numbers, "
                                                              r"e\.g\. '0, 1, 2\.5'; got list \[1, 2\]"),
    "Dashboard matrix unknown": (lambda c: dashboard(c, matrix="fisher"), ValueError,
                                 r"^matrix must be one of \('hessian', 'ggn'\); got 'fisher'"),
    "Dashboard steps float": (lambda c: dashboard(c, steps=20.0), ValueError, r"^steps must be an int; got 20\.0"),
    "Dashboard dist str": (lambda c: dashboard(c, dist="1"), ValueError, r"^dist must be a number; got '1'"),
    "Dashboard device unknown": (lambda c: dashboard(c, device="gpu"), ValueError,
                                 r"^device must name a device such as 'cpu'"),
    "Dashboard data a list": (lambda c: dashboard(c, data=c.tiny.data), TypeError,
                              r"^data must be a DataSet \(cw\.data\.load\(\.\.\.\)\) or None; got list"),
}


def assert_refused(cases: Dict[str, tuple], case: str, tiny, files, tmp_path) -> None:
    """``cases[case]`` raises its error, clear (see :func:`assert_clear`) and raised in curvwidgets."""
    make, error, pattern = cases[case]
    context = Case(tiny=tiny, files=files, tmp=tmp_path, events=[])
    with pytest.raises(error) as raised:
        make(context)
    assert_clear(str(raised.value), pattern)
    assert_raised_here(raised.value)


@pytest.mark.parametrize("case", list(WIDGET_ARGUMENT_CASES))
def test_a_bad_widget_argument_is_refused_by_name(case, tiny, files, tmp_path):
    assert_refused(WIDGET_ARGUMENT_CASES, case, tiny, files, tmp_path)
    assert list(tmp_path.iterdir()) == []


def set_fields(**values) -> Callable[[Any, Case], None]:
    """Set the widget's fields (``widget.<name>.value``) as code or a user typing in them does."""
    def setter(widget, _case: Case) -> None:
        for name, value in values.items():
            getattr(widget, name).value = value
    return setter


def set_path(field: str, path: Callable[[Case], Path]) -> Callable[[Any, Case], None]:
    """Set the widget's text field ``field`` to the path ``path(case)``."""
    return lambda widget, case: setattr(getattr(widget, field), "value", os.fspath(path(case)))


#: id -> (make(case), set(widget, case) or None, exception of the run, regex of the message shown in the error area)
WIDGET_RUN_CASES: Dict[str, tuple] = {
    "SpectrumWidget steps 0": (lambda c: spectrum_widget(c, steps=0), None, ValueError, r"steps must be an int >= 1; got 0"),
    "SpectrumWidget field steps -2": (spectrum_widget, set_fields(steps=-2), ValueError,
                                      r"steps must be an int >= 1; got -2"),
    "SpectrumWidget field vectors 0": (spectrum_widget, set_fields(num_vectors=0), ValueError,
                                       r"num_vectors must be an int >= 1; got 0"),
    "SpectrumWidget field samples -1": (spectrum_widget, set_fields(num_samples=-1), ValueError,
                                        r"num_samples must be an int >= 0; got -1"),
    "SpectrumWidget field seed -1": (spectrum_widget, set_fields(seed=-1), ValueError,
                                     r"seed must be an int in \[0, 2\*\*63\); got -1"),
    "SpectrumWidget field params matching nothing": (spectrum_widget, set_fields(params="encoder.*"), ValueError,
                                                     r"params pattern 'encoder\.\*' matches no trainable parameter"),
    "SpectrumWidget field checkpoint missing": (spectrum_widget, set_fields(checkpoint="/nonexistent/run"),
                                                FileNotFoundError, r"checkpoint '/nonexistent/run' does not exist"),
    "SpectrumWidget field checkpoint a spectrum": (spectrum_widget, set_path("checkpoint", lambda c: c.files["spectrum"]),
                                                   CheckpointError,
                                                   r"'.*spectrum\.npz' is not a readable curvwidgets checkpoint"),
    "SpectrumWidget field checkpoint an empty folder": (spectrum_widget, set_path("checkpoint", lambda c: c.tmp),
                                                        FileNotFoundError, r"checkpoint: the folder '.*' holds no "
                                                                           r"checkpoint-XXXXX\.pt files"),
    "SpectrumWidget data a tensor": (lambda c: widgets.SpectrumWidget(c.tiny.model, c.tiny.data[0][0], steps=3),
                                     None, TypeError, r"data must be a re-iterable of \(inputs, targets\) batches"),
    "LandscapeWidget dist 0": (lambda c: landscape_widget(c, dist=0.0), None, ValueError,
                               r"dist must be a finite number > 0; got 0\.0"),
    "LandscapeWidget field dist NaN": (landscape_widget, set_fields(dist=float("nan")), ValueError,
                                       r"dist must be a finite number > 0; got nan"),
    "LandscapeWidget field points 1": (landscape_widget, set_fields(n_points=1), ValueError,
                                       r"n_points must be an int >= 2; got 1"),
    "LandscapeWidget field seed -1": (landscape_widget, set_fields(seed=-1), ValueError,
                                      r"seed must be an int in \[0, 2\*\*63\); got -1"),
    "LandscapeWidget field plane of one direction": (landscape_widget, set_fields(plane=True, count=1), ValueError,
                                                     r"plane=True needs exactly two directions; got 1"),
    "LandscapeWidget eigenvectors without a spectrum": (lambda c: landscape_widget(c, directions="eigen"), None,
                                                        ValueError, r"spectrum: eigenvector directions need a "
                                                                    r"Spectrum with Ritz vectors"),
    "TrainingWidget epochs 0": (lambda c: training_widget(c, epochs=0), None, ValueError,
                                r"epochs must be an int >= 1; got 0"),
    "TrainingWidget field lr -1": (training_widget, set_fields(lr=-1.0), ValueError,
                                   r"lr must be a finite number > 0; got -1\.0"),
    "TrainingWidget field save every 0": (training_widget, set_fields(save_every=0), ValueError,
                                          r"save_every must be an int >= 1; got 0"),
    "TrainingWidget field SWA from 5 of 1 epoch": (training_widget, set_fields(swa_start=5), ValueError,
                                                   r"swa_start must be an int in \[1, epochs\); got 5 with epochs=1"),
    "TrainingWidget field out_dir a file": (training_widget, set_path("out_dir", a_file), ValueError,
                                            r"out_dir '.*a-file' cannot be a folder: '.*a-file' is a file"),
    "SyntheticSpectrumWidget P 0": (lambda c: synthetic_widget(c, P=0), None, ValueError, r"P must be an int >= 1; got 0"),
    "SyntheticSpectrumWidget field ratio 0": (lambda c: synthetic_widget(c, ensemble="marchenko-pastur"),
                                              set_fields(ratio=0.0), ValueError,
                                              r"ratio must be a finite number > 0; got 0\.0"),
    "SyntheticSpectrumWidget field vectors 0": (synthetic_widget, set_fields(num_vectors=0), ValueError,
                                                r"num_vectors must be an int >= 1; got 0"),
    "SyntheticSpectrumWidget field eigenvalues not numbers": (
        lambda c: synthetic_widget(c, ensemble="typed", eigenvalues="1, 2"), set_fields(eigenvalues="1, two"),
        ValueError, r"eigenvalues must be comma-separated numbers; 'two' is not a number"),
}


def shown(widget) -> str:
    """The text of the widget's error area."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.runner.error_message.value))


@pytest.mark.parametrize("case", list(WIDGET_RUN_CASES))
def test_a_bad_setting_is_shown_in_the_widgets_error_area_when_a_run_starts(case, tiny, files, tmp_path):
    make, change, error, pattern = WIDGET_RUN_CASES[case]
    (tmp_path / "a-file").write_text("keep")
    context = Case(tiny=tiny, files=files, tmp=tmp_path, events=[])
    widget = make(context)
    if change is not None:
        change(widget, context)
    before = snapshot(tmp_path)
    with pytest.raises(error) as raised:
        widget.run(block=True)
    assert_clear(str(raised.value), pattern)
    assert_clear(shown(widget), pattern)  # not lost: shown in the widget, its type named
    assert shown(widget).startswith(type(raised.value).__name__) and widget.runner.error_box.layout.display == ""
    assert widget.runner.outcome == "failed" and widget.result is None
    assert snapshot(tmp_path) == before


#: id -> (make(case), action(widget), exception, regex of the message)
WIDGET_METHOD_CASES: Dict[str, tuple] = {
    "SpectrumWidget.eigenvalue_range text": (spectrum_widget, lambda w: setattr(w, "eigenvalue_range", "0, 1"),
                                             ValueError, r"^eigenvalue_range must be None or finite \(low, high\) with "
                                                         r"low < high; got '0, 1'"),
    "SpectrumWidget.eigenvalue_range of three": (spectrum_widget, lambda w: setattr(w, "eigenvalue_range", (0, 1, 2)),
                                                 ValueError, r"^eigenvalue_range must be None or finite"),
    "SpectrumWidget.eigenvalue_range with None": (spectrum_widget,
                                                  lambda w: setattr(w, "eigenvalue_range", (None, 1.0)), ValueError,
                                                  r"^eigenvalue_range must be None or finite .*; got \(None, 1\.0\)"),
    "SpectrumWidget.eigenvalue_range a number": (spectrum_widget, lambda w: setattr(w, "eigenvalue_range", 5.0),
                                                 ValueError, r"^eigenvalue_range must be None or finite .*; got 5\.0"),
    "SpectrumWidget.show None": (spectrum_widget, lambda w: w.show(None), TypeError,
                                 r"^spectrum must be a curvwidgets Spectrum; got None"),
    "SpectrumWidget.show a path": (spectrum_widget, lambda w: w.show("spectrum.npz"), TypeError,
                                   r"^spectrum must be a curvwidgets Spectrum; got str"),
    "LandscapeWidget.selected None": (landscape_widget, lambda w: setattr(w, "selected", None), ValueError,
                                      r"^selected must list stem positions, ints in \[0, 0\) for the 0 stems shown; got "
                                      r"None"),
    "LandscapeWidget.selected an int": (landscape_widget, lambda w: setattr(w, "selected", 2), ValueError,
                                        r"^selected must list stem positions, .*; got 2"),
    "LandscapeWidget.selected text": (landscape_widget, lambda w: setattr(w, "selected", "0"), ValueError,
                                      r"^selected must list stem positions, .*; got '0'"),
    "LandscapeWidget.spectrum a missing file": (landscape_widget,
                                                lambda w: setattr(w, "spectrum", "/nonexistent/spectrum.npz"),
                                                FileNotFoundError, r"^curvwidgets\.Spectrum file "
                                                                   r"'/nonexistent/spectrum\.npz' does not exist"),
    "LandscapeWidget.spectrum a folder": (landscape_widget, lambda w: setattr(w, "spectrum", "/"), IsADirectoryError,
                                          r"^'/' is a folder; give the path of a results file"),
}


@pytest.mark.parametrize("case", list(WIDGET_METHOD_CASES))
def test_a_bad_value_given_to_a_widget_by_code_is_refused_by_name(case, tiny, files, tmp_path):
    make, action, error, pattern = WIDGET_METHOD_CASES[case]
    widget = make(Case(tiny=tiny, files=files, tmp=tmp_path, events=[]))
    with pytest.raises(error) as raised:
        action(widget)
    assert_clear(str(raised.value), pattern)
    assert_raised_here(raised.value)


@pytest.mark.parametrize("target, pattern", [
    ("", r"^ValueError: save_path is empty: give the path of a file to write the spectrum to$"),
    ("{out}", r"^IsADirectoryError: cannot write '.*': it is a folder; give a file's path"),
    ("{out}/a-file/spectrum", r"^NotADirectoryError: cannot write '.*a-file/spectrum\.npz': '.*a-file' is a file, not a "
                              r"folder"),
], ids=["empty", "a folder", "under a file"])
def test_a_spectrum_saved_where_it_cannot_be_written_shows_why_and_writes_nothing(target, pattern, tiny, tmp_path):
    widget = spectrum_widget(Case(tiny=tiny))
    widget.show(tiny.bare)
    (tmp_path / "a-file").write_text("keep")
    before = snapshot(tmp_path)
    widget.save_path.value = target.format(out=tmp_path)
    assert widget.save() is None
    assert_clear(html.unescape(re.sub(r"<[^>]+>", "", widget.save_status.value)), pattern)
    assert snapshot(tmp_path) == before and not (tmp_path.parent / f"{tmp_path.name}.npz").exists()


# ---- the batches of a loader, and the Dashboard's option dicts ----------------------------------------------

LOADER_AND_DASHBOARD_CASES: Dict[str, tuple] = {
    # landscape.py, _Evaluator._sums_of: a batch of a loader that is not an (inputs, targets) pair of tensors
    "loss_landscape a loader of bare tensors": (
        lambda c: walk(c, data=torch.utils.data.DataLoader(torch.utils.data.TensorDataset(c.tiny.data[0][0]),
                                                           batch_size=3)),
        TypeError, r"^data: a train batch must be an \(inputs, targets\) pair of tensors; got a list of 1"),
    # dashboard.py: the options dicts
    "Dashboard training_options a list": (lambda c: dashboard(c, training_options=[("lr", 0.1)]), TypeError,
                                          r"^training_options must be None or a dict of TrainingWidget arguments; got "
                                          r"list"),
    "Dashboard spectrum_options naming a Dashboard argument": (
        lambda c: dashboard(c, spectrum_options={"steps": 5}), ValueError,
        r"^spectrum_options: 'steps' is an argument of Dashboard itself; give steps=5"),
}


@pytest.mark.parametrize("case", list(LOADER_AND_DASHBOARD_CASES))
def test_loader_batches_and_dashboard_options(case, tiny, files, tmp_path):
    assert_refused(LOADER_AND_DASHBOARD_CASES, case, tiny, files, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_tables_are_large_and_their_ids_unique():
    tables = (CORE_CASES, CLI_CASES, WIDGET_ARGUMENT_CASES, WIDGET_RUN_CASES, WIDGET_METHOD_CASES,
              LOADER_AND_DASHBOARD_CASES)
    assert sum(len(table) for table in tables) >= 180
    ids = [case for table in tables for case in table]
    assert len(ids) == len(set(ids))


# ---- valid unusual input gives exactly the usual answer ----------------------------------------------------

def test_numpy_integers_give_the_landscape_and_directions_of_python_ints(tiny):
    usual = loss_landscape(tiny.model, tiny.data, tiny.directions, dist=0.5, n_points=3, points_per_pass=1)
    unusual = loss_landscape(tiny.model, tiny.data, tiny.directions, dist=np.float32(0.5), n_points=np.int64(3),
                             points_per_pass=np.int32(1))
    assert unusual["train_loss"].tobytes() == usual["train_loss"].tobytes()
    assert unusual.meta["n_points"] == 3 and type(unusual.meta["n_points"]) is int
    picked = eigen_directions(tiny.spectrum, largest=np.int64(1), smallest=np.uint8(1), run=np.int16(0))
    for mine, plain in zip(picked, eigen_directions(tiny.spectrum, largest=1, smallest=1)):
        assert mine.label == plain.label and torch.equal(mine.vector, plain.vector)


def test_a_float64_direction_on_a_float32_model_walks_the_rounded_direction(tiny):
    """Directions are cast to the model's dtype: the float64 vector gives exactly the landscape of its float32 copy."""
    wide = torch.randn(DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    of_wide = loss_landscape(tiny.model, tiny.data, [wide.numpy()], dist=0.5, n_points=5, points_per_pass=1)
    of_narrow = loss_landscape(tiny.model, tiny.data, [wide.float()], dist=0.5, n_points=5, points_per_pass=1)
    assert of_wide["train_loss"].tobytes() == of_narrow["train_loss"].tobytes()
    direction = Direction(wide.numpy(), "mine", np.float32(2.5))  # a numpy vector and Ritz value in a Direction
    landscape_of = loss_landscape(tiny.model, tiny.data, [direction], dist=0.5, n_points=5, points_per_pass=1)
    assert landscape_of["train_loss"].tobytes() == of_narrow["train_loss"].tobytes()
    assert landscape_of.labels == ("mine",) and landscape_of.curvatures.tolist() == [2.5]


def test_a_float64_model_and_an_even_n_points(tiny):
    """A float64 model's landscape equals the plain loop; an even n_points has no t = 0 and offsets of its own."""
    model, data = tiny_model(torch.float64), tiny_batches(torch.float64)
    direction = random_directions(model, 1, seed=5)[0]
    result = loss_landscape(model, data, [direction], dist=0.6, n_points=4, points_per_pass=1)
    np.testing.assert_array_equal(result.offsets, np.linspace(-0.6, 0.6, 4))
    inputs, targets = torch.cat([x for x, _ in data]), torch.cat([y for _, y in data])
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    for index, t in enumerate(result.offsets):
        moved = tiny_model(torch.float64)
        torch.nn.utils.vector_to_parameters(flat + float(t) * direction.vector, moved.parameters())
        with torch.no_grad():
            loss = nn.functional.cross_entropy(moved(inputs), targets)
        assert result["train_loss"][0, index] == pytest.approx(float(loss), rel=1e-13)


def test_user_meta_keys_are_kept_and_the_computed_ones_win(tiny):
    meta = {"model": "tiny", "note": "audit", "dist": 99.0, "n_points": 1, "epoch": np.int64(3)}
    result = loss_landscape(tiny.model, tiny.data, tiny.directions[:1], dist=0.5, n_points=3, meta=meta)
    assert result.meta["model"] == "tiny" and result.meta["note"] == "audit" and result.meta["epoch"] == 3
    assert result.meta["dist"] == 0.5 and result.meta["n_points"] == 3
    assert meta["dist"] == 99.0  # the caller's dict is not changed


def test_results_take_lists_of_labels_and_numpy_integers(tiny):
    listed = landscape(labels=["largest 1", "random 1"])
    assert listed.labels == ("largest 1", "random 1") and isinstance(listed.labels, tuple)
    spectrum = tiny.bare
    assert spectrum.truncate(np.int64(2)).ritz_values.tobytes() == spectrum.truncate(2).ritz_values.tobytes()
    for mine, plain in zip(tiny.diagonal.histogram(np.int64(4)), tiny.diagonal.histogram(4)):
        assert mine.tobytes() == plain.tobytes()
    assert spectrum.negative_mass(np.float32(1.5)) == spectrum.negative_mass(1.5)
    assert np.array_equal(spectrum.converged(np.float64(0.0)), spectrum.converged(0))


def test_a_landscape_widget_given_numpy_numbers_computes_the_usual_landscape(tiny):
    widget = widgets.LandscapeWidget(tiny.model, tiny.data, directions="random", count=np.int64(1), seed=np.int32(0),
                                     dist=np.float32(0.5), n_points=np.int64(3), points_per_pass=1)
    assert widget.run(block=True) and widget.runner.outcome == "done"
    usual = loss_landscape(tiny.model, tiny.data, random_directions(tiny.model, 1, seed=0), dist=0.5, n_points=3,
                           points_per_pass=1)
    assert widget.result["train_loss"].tobytes() == usual["train_loss"].tobytes()


def test_widgets_take_paths_as_well_as_text_for_their_path_fields(tiny, files, tmp_path):
    spectrum = widgets.SpectrumWidget(checkpoint=files["run"], save_path=tmp_path / "spectrum.npz")
    assert spectrum.checkpoint.value == os.fspath(files["run"])
    assert spectrum.save_path.value == os.fspath(tmp_path / "spectrum.npz")
    assert widgets.LandscapeWidget(checkpoint=files["checkpoint"]).checkpoint.value == os.fspath(files["checkpoint"])
    assert widgets.TrainingWidget(out_dir=tmp_path / "run").out_dir.value == os.fspath(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []

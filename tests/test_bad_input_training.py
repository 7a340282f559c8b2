"""Bad input to the training layer: one clear error naming the argument or the file, raised before any work.

Every case of :data:`TRAIN_CASES` calls ``cw.train`` (or an optimiser) with one
bad value and asserts the exception type, a message naming the argument or
the file, and that nothing was written: no file under the test's folder
changed, and the run's ``out_dir`` is absent or empty.
"""

import json
import os
import socket
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.results import ResultFileError
from curvwidgets.training.checkpoint import CheckpointError, load_checkpoint
from curvwidgets.training.data import TensorLoader
from curvwidgets.training.distributed import JOIN_TIMEOUT_VARIABLE


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3))


def batches(count: int = 8, seed: int = 0) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(count, 4, generator=generator), torch.randint(0, 3, (count,), generator=generator))]


def data() -> tuple:
    return batches(seed=0), batches(seed=1)


def empty_loader() -> TensorLoader:
    return TensorLoader(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.int64), 4, shuffle=False, augment=False,
                        mean=(0.0,), std=(1.0,))


def train(folder: Path, **overrides) -> Callable[[], object]:
    """``cw.train`` of a small run into ``folder / "run"``, with ``overrides``."""
    arguments = {"model": model(), "data": data(), "epochs": 2, "out_dir": folder / "run", **overrides}
    return lambda: cw.train(**arguments)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    """The bytes of a real checkpoint: one epoch of SGD with momentum 0.9 and lr 0.05."""
    folder = tmp_path_factory.mktemp("good")
    cw.train(model(), data(), epochs=1, out_dir=folder)
    return (folder / "checkpoint-00001.pt").read_bytes()


#: Checkpoints edited into files that are not ours: each function changes the loaded dict in place.
EDITS = {"lacking entries": lambda state: (state.pop("config"), state.pop("optimizer")),
         "an epoch of text": lambda state: state.update(epoch="1"),
         "a history that is a list": lambda state: state.update(history=[1, 2])}


def damaged(kind: str, good: bytes, path: Path) -> Path:
    """Write a file at ``path`` that is not a readable curvwidgets checkpoint; ``kind`` says how."""
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes())
    elif kind == "a state_dict":
        torch.save(model().state_dict(), path)
    elif kind == "a pickled module":
        torch.save(model(), path)
    elif kind in EDITS:
        state = torch.load(_written(good, path), weights_only=True)
        EDITS[kind](state)
        torch.save(state, path)
    return path


def _written(content: bytes, path: Path) -> Path:
    path.write_bytes(content)
    return path


DAMAGE = ("truncated", "empty", "random bytes", "a state_dict", "a pickled module", *EDITS)
UNREADABLE = "is not a readable curvwidgets checkpoint"


def _unused_parameters_optimizer(folder: Path):
    return train(folder, optimizer=torch.optim.SGD(model().parameters(), lr=0.1))


def _saving_a_spectrum(path) -> Callable[[], object]:
    """Saving a two-step spectrum of ``diag(1, 2, 3)`` to ``path``."""
    spectrum = cw.Spectrum.from_lanczos(cw.lanczos(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)), 2))
    return lambda: spectrum.save(path)


def _npz(path: Path, kind: str, meta: dict, **arrays) -> Path:
    """An npz file laid out as curvwidgets writes its results: ``arrays`` and the ``meta.json`` header."""
    header = json.dumps({"format": kind, "version": 1, "meta": meta})
    with open(path, "wb") as handle:
        np.savez(handle, **{"meta.json": np.array(header)}, **arrays)
    return path


def _lanczos_file(path: Path, meta: dict, num_steps: list) -> Path:
    """A spectrum file of one two-step Lanczos run whose ``num_steps`` and ``meta`` are given."""
    return _npz(path, "curvwidgets.Spectrum", meta, alpha=np.ones((1, 2)), beta=np.ones((1, 1)),
                residual_norm=np.ones(1), num_steps=np.array(num_steps))


def _loading(result_class, path: Path) -> Callable[[], object]:
    return lambda: result_class.load(path)


def _loading_trained(folder: Path, checkpoint: bytes, **options) -> Callable[[], object]:
    """``cw.load_trained`` of ``checkpoint`` written into ``folder / "inputs"``, with ``options``."""
    path = _written(checkpoint, folder / "inputs" / "checkpoint-00001.pt")
    return lambda: cw.load_trained(path, **{"device": "cpu", "data": False, "model": model(), **options})


def _loader(**options) -> TensorLoader:
    """A loader of six one-channel 4 x 4 images, with ``options``."""
    arguments = {"shuffle": False, "augment": False, "mean": (0.0,), "std": (1.0,), **options}
    return TensorLoader(torch.zeros(6, 1, 4, 4), torch.arange(6) % 3, 2, **arguments)


def _zero_sample_batches() -> list:
    return [(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))]


TRAIN_CASES: Dict[str, tuple] = {
    # id: (build(folder, checkpoint bytes) -> call, exception, regex of the message)
    "epochs bool": (lambda f, c: train(f, epochs=True), ValueError, r"epochs must be an int >= 1; got True"),
    "epochs 0": (lambda f, c: train(f, epochs=0), ValueError, r"epochs must be an int >= 1; got 0"),
    "epochs float": (lambda f, c: train(f, epochs=2.5), ValueError, r"epochs must be an int >= 1; got 2\.5"),
    "save_every 0": (lambda f, c: train(f, save_every=0), ValueError, r"save_every must be an int >= 1; got 0"),
    "save_every without out_dir": (lambda f, c: train(f, save_every=1, out_dir=None), ValueError,
                                   r"save_every needs out_dir"),
    "seed str": (lambda f, c: train(f, seed="abc"), ValueError, r"seed must be an int in \[0, 2\*\*63\); got 'abc'"),
    "seed negative": (lambda f, c: train(f, seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*63\); got -1"),
    "progress str": (lambda f, c: train(f, progress="yes"), TypeError, r"progress must be None or a callable"),
    "cancel bool": (lambda f, c: train(f, cancel=True), TypeError, r"cancel must be None or an object with an is_set"),
    "swa_lr str": (lambda f, c: train(f, swa_start=1, swa_lr="0.01"), ValueError,
                   r"swa_lr must be a finite number > 0; got '0\.01'"),
    "swa_lr without swa_start": (lambda f, c: train(f, swa_lr=0.01), ValueError, r"swa_lr=0\.01 needs swa_start"),
    "swa_start without swa_lr": (lambda f, c: train(f, swa_start=1), ValueError,
                                 r"swa_lr must be a number > 0 when swa_start is set"),
    "swa_start at epochs": (lambda f, c: train(f, swa_start=2, swa_lr=0.01), ValueError,
                            r"swa_start must be an int in \[1, epochs\); got 2 with epochs=2"),
    "swa_start bool": (lambda f, c: train(f, swa_start=True, swa_lr=0.01), ValueError,
                       r"swa_start must be an int >= 1; got True"),
    "swa_lr above lr": (lambda f, c: train(f, swa_start=1, swa_lr=1.0), ValueError,
                        r"swa_lr \(1\.0\) must not exceed the initial learning rate \(0\.05\)"),
    "optimizer_kwargs unknown key": (lambda f, c: train(f, optimizer_kwargs={"betas": (0.9, 0.99), "lr": 0.1}),
                                     TypeError, r"optimizer_kwargs: SGD takes no keyword argument\(s\) \['betas'\]"),
    "optimizer_kwargs bad lr": (lambda f, c: train(f, optimizer_kwargs={"lr": -1.0}), ValueError,
                                r"optimizer_kwargs: lr must be a finite number > 0; got -1\.0"),
    "optimizer_kwargs bad momentum": (lambda f, c: train(f, optimizer="KFAC", optimizer_kwargs={"momentum": 1.5}),
                                      ValueError, r"momentum must be a number in \[0, 1\); got 1\.5"),
    "optimizer_kwargs not a dict": (lambda f, c: train(f, optimizer_kwargs="lr=0.1"), TypeError,
                                    r"optimizer_kwargs must be a dict of keyword arguments"),
    "optimizer_kwargs for an instance": (
        lambda f, c: train(f, optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1),
                           optimizer_kwargs={"lr": 0.1}),
        ValueError, r"optimizer_kwargs \['lr'\] apply to an optimiser given by name"),
    "optimizer unknown name": (lambda f, c: train(f, optimizer="Adagrad"), ValueError,
                               r"unknown optimiser 'Adagrad'; valid names are SGD, Adam"),
    "optimizer not an optimiser": (lambda f, c: train(f, optimizer=42), TypeError,
                                   r"optimizer must be a name of .* or a torch\.optim\.Optimizer; got int"),
    "optimizer over other parameters": (lambda f, c: _unused_parameters_optimizer(f), ValueError,
                                        r"optimizer: the SGD holds parameters that are not the model's"),
    "schedule_kwargs not a dict": (lambda f, c: train(f, schedule_kwargs=[0.1]), TypeError,
                                   r"schedule_kwargs must be a dict"),
    "schedule final_ratio str": (lambda f, c: train(f, schedule_kwargs={"final_ratio": "0.1"}), ValueError,
                                 r"final_ratio must be a number in \[0, 1\]; got '0\.1'"),
    "schedule milestones not a list": (lambda f, c: train(f, schedule="step", schedule_kwargs={"milestones": 0.5}),
                                       ValueError, r"milestones must be a list of fractions of the epochs in \(0, 1\]"),
    "schedule milestone above 1": (lambda f, c: train(f, schedule="step", schedule_kwargs={"milestones": [0.5, 2]}),
                                   ValueError, r"milestones\[1\] must be a number in \(0, 1\]; got 2"),
    "schedule gamma str": (lambda f, c: train(f, schedule="step", schedule_kwargs={"gamma": "0.5"}), ValueError,
                           r"gamma must be a finite number; got '0\.5'"),
    "amp str": (lambda f, c: train(f, amp="yes"), ValueError, r"amp must be True or False; got 'yes'"),
    "channels_last int": (lambda f, c: train(f, channels_last=1), ValueError,
                          r"channels_last must be True or False; got 1"),
    "loss_fn str": (lambda f, c: train(f, loss_fn="mse"), TypeError, r"loss_fn must be callable"),
    "out_dir a file": (lambda f, c: train(f, out_dir=_written(b"keep", f / "file.txt")), ValueError,
                       r"out_dir '.*file\.txt' cannot be a folder: '.*file\.txt' is a file"),
    "out_dir under a file": (lambda f, c: train(f, out_dir=_written(b"keep", f / "file.txt") / "run"), ValueError,
                             r"out_dir '.*file\.txt/run' cannot be a folder: '.*file\.txt' is a file"),
    "out_dir unwritable": (lambda f, c: train(f, out_dir="/proc/curvwidgets-run"), ValueError,
                           r"out_dir: cannot write '/proc/curvwidgets-run': creating a file in '/proc' fails"),
    "out_dir int": (lambda f, c: train(f, out_dir=3), TypeError, r"out_dir must be a path"),
    "data not a pair": (lambda f, c: train(f, data=(batches(),)), TypeError,
                        r"data must be a name of .*, a DataSet, or a pair \(training batches, test batches\)"),
    "data empty training loader": (lambda f, c: train(f, data=(empty_loader(), batches())), ValueError,
                                   r"data: the training batches are empty"),
    "data empty test list": (lambda f, c: train(f, data=(batches(), [])), ValueError,
                             r"data: the test batches are empty"),
    "data one-shot iterator": (lambda f, c: train(f, data=(iter(batches()), batches())), TypeError,
                               r"data: the training batches are a one-shot iterator"),
    "data zero-sample training batches": (lambda f, c: train(f, data=(_zero_sample_batches(), batches())),
                                          ValueError, r"data: the training batches hold no samples"),
    "data zero-sample test batches": (lambda f, c: train(f, data=(batches(), _zero_sample_batches())), ValueError,
                                      r"evaluate: the batches hold no samples"),
    "resume missing file": (lambda f, c: train(f, resume=f / "inputs" / "checkpoint-00001.pt"), FileNotFoundError,
                            r"checkpoint '.*inputs/checkpoint-00001\.pt' does not exist"),
    "resume folder without checkpoints": (lambda f, c: train(f, resume=f / "inputs"), FileNotFoundError,
                                          r"resume: no checkpoint-XXXXX\.pt files in '.*inputs'"),
    "resume other momentum": (lambda f, c: train(f, resume=_written(c, f / "inputs" / "checkpoint-00001.pt"),
                                                 optimizer_kwargs={"momentum": 0.5}), ValueError,
                              r"resume: optimizer_kwargs differ from the checkpoint's run \('.*checkpoint-00001\.pt'\) "
                              r"in momentum \(0\.5 given, 0\.9 in the checkpoint\); .* "
                              r"optimizer_kwargs=\{'lr': 0\.05, 'momentum': 0\.9, 'weight_decay': 0\.0005\}"),
    "resume other lr": (lambda f, c: train(f, resume=_written(c, f / "inputs" / "checkpoint-00001.pt"),
                                           optimizer_kwargs={"lr": 0.1, "nesterov": True}), ValueError,
                        r"in lr \(0\.1 given, 0\.05 in the checkpoint\), nesterov \(True given, unset in the "
                        r"checkpoint\)"),
    "resume other seed": (lambda f, c: train(f, resume=_written(c, f / "inputs" / "checkpoint-00001.pt"), seed=1),
                          ValueError, r"resume: seed=1 differs from the checkpoint's run \(0, in '.*checkpoint"),
    "resume other schedule": (lambda f, c: train(f, resume=_written(c, f / "inputs" / "checkpoint-00001.pt"),
                                                 schedule="constant"), ValueError,
                              r"resume: schedule='constant' differs from the checkpoint's run \('linear'"),
    **{f"resume {kind}": (lambda f, c, kind=kind: train(f, resume=damaged(kind, c, f / "inputs" / "bad.pt")),
                          CheckpointError, rf"'.*inputs/bad\.pt' {UNREADABLE}") for kind in DAMAGE},
    "lanczos seed str": (lambda f, c: train(f, optimizer="LanczosSFN", optimizer_kwargs={"seed": "abc"}), ValueError,
                         r"seed must be an int in \[0, 2\*\*63\); got 'abc'"),
    "kfac kl_clip str": (lambda f, c: train(f, optimizer="KFAC", optimizer_kwargs={"kl_clip": "0.001"}), ValueError,
                         r"kl_clip must be a finite number > 0; got '0\.001'"),
    "device not a device": (lambda f, c: train(f, device="gpu"), ValueError,
                            r"device must name a device such as 'cpu', 'cuda' or 'cuda:1'; got 'gpu'"),
    "device absent": (lambda f, c: train(f, device="cuda:99"), ValueError,
                      r"device 'cuda:99': (CUDA is not available on this machine|this machine has \d+ CUDA device)"),
    "out_dir empty": (lambda f, c: train(f, out_dir=""), ValueError, r"out_dir must name a folder; got ''"),
    "data targets out of range": (
        lambda f, c: train(f, data=([(torch.randn(8, 4), torch.full((8,), 5))], batches())), ValueError,
        r"data: the model or loss_fn failed on a batch of inputs of shape \(8, 4\) .*IndexError: Target 5 is out of"),
    "data inputs of another width": (
        lambda f, c: train(f, data=([(torch.randn(8, 6), torch.zeros(8).long())], batches())), ValueError,
        r"data: the model or loss_fn failed on a batch of inputs of shape \(8, 6\) \(torch\.float32\) and targets "
        r"of shape \(8,\).*mat1 and mat2"),
    "data test inputs of another width": (
        lambda f, c: train(f, data=(batches(), [(torch.randn(8, 6), torch.zeros(8).long())])), ValueError,
        r"data: the model or loss_fn failed on a batch of inputs of shape \(8, 6\)"),
    "load_trained device not a device": (lambda f, c: _loading_trained(f, c, device="gpu"), ValueError,
                                         r"device must name a device such as 'cpu', 'cuda' or 'cuda:1'; got 'gpu'"),
    "load_trained swa str": (lambda f, c: _loading_trained(f, c, swa="no"), ValueError,
                             r"swa must be True or False; got 'no'"),
    "load_trained data str": (lambda f, c: _loading_trained(f, c, data="no"), ValueError,
                              r"data must be True or False; got 'no'"),
    "data load device not a device": (lambda f, c: lambda: cw.data.load("digits", device="gpu"), ValueError,
                                      r"device must name a device such as 'cpu', 'cuda' or 'cuda:1'; got 'gpu'"),
    "loader shuffle str": (lambda f, c: lambda: _loader(shuffle="no"), ValueError,
                           r"shuffle must be True or False; got 'no'"),
    "loader mean NaN": (lambda f, c: lambda: _loader(mean=(float("nan"),)), ValueError,
                        r"mean\[0\] must be a finite number; got nan"),
    "loader std a number": (lambda f, c: lambda: _loader(std=1.0), ValueError,
                            r"mean and std need 1 values \(one per channel\); got \(0\.0,\), 1\.0"),
    "MLP hidden a number": (lambda f, c: lambda: cw.models.create("MLP", hidden=-5), ValueError,
                            r"hidden must be a sequence of ints >= 1; got -5"),
    "SmallCNN channel 0": (lambda f, c: lambda: cw.models.create("SmallCNN", channels=(8, 0)), ValueError,
                           r"channels\[1\] must be an int >= 1; got 0"),
    # results files that cannot be written name the file asked for, not the temporary one beside it
    "spectrum save under a file": (lambda f, c: _saving_a_spectrum(_written(b"keep", f / "file.txt") / "s.npz"),
                                   NotADirectoryError,
                                   r"cannot write '.*file\.txt/s\.npz': '.*file\.txt' is a file, not a folder"),
    "spectrum save unwritable": (lambda f, c: _saving_a_spectrum("/proc/curvwidgets-spectrum"), FileNotFoundError,
                                 r"cannot write '/proc/curvwidgets-spectrum\.npz': creating a file in '/proc' fails"),
    # results files whose parts do not fit together
    "spectrum file without dim": (lambda f, c: _loading(cw.Spectrum, _lanczos_file(f / "s.npz", {}, num_steps=[2])),
                                  ResultFileError, r"'.*s\.npz' is a curvwidgets\.Spectrum file whose contents do not "
                                                   r"fit together .*its metadata has no 'dim' entry$"),
    "spectrum file with more steps than arrays": (
        lambda f, c: _loading(cw.Spectrum, _lanczos_file(f / "s.npz", {"dim": 4, "orthogonality": 0.0}, num_steps=[5])),
        ResultFileError, r"'.*s\.npz' is a curvwidgets\.Spectrum file .*the arrays of the Lanczos run disagree"),
    "landscape file without kind": (
        lambda f, c: _loading(cw.Landscape, _npz(f / "l.npz", "curvwidgets.Landscape", {}, offsets=np.zeros(3),
                                                 labels=np.array(["a"]), curvatures=np.zeros(1))),
        ResultFileError, r"'.*l\.npz' is a curvwidgets\.Landscape file whose contents do not fit together .*'kind'"),
}


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` and its content."""
    return {os.fspath(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_bad_training_input_is_one_clear_error_and_nothing_is_written(case, tmp_path, checkpoint):
    build, error, pattern = TRAIN_CASES[case]
    (tmp_path / "inputs").mkdir()
    call = build(tmp_path, checkpoint)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=pattern) as raised:
        call()
    assert "weights_only=False" not in str(raised.value)
    assert snapshot(tmp_path) == before
    run = tmp_path / "run"
    assert not run.exists() or (run.is_dir() and not any(run.iterdir()))


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_checkpoint_is_one_error_naming_the_file_in_every_reader(kind, tmp_path, checkpoint):
    path = damaged(kind, checkpoint, tmp_path / "bad.pt")
    readers = {"load_checkpoint": lambda: load_checkpoint(path),
               "load_trained": lambda: cw.load_trained(path, device="cpu", data=False, model=model())}
    for reader, call in readers.items():
        with pytest.raises(CheckpointError, match=rf"^'{path}' {UNREADABLE}") as raised:
            call()
        assert "weights_only=False" not in str(raised.value), reader


@pytest.mark.parametrize("content", [b"", b"\x80\x02 not text", b'{"rows": [', b"[1, 2]", b'{"format": "other"}'])
def test_a_file_that_is_not_a_history_is_one_error_naming_it(content, tmp_path, checkpoint):
    path = _written(content, tmp_path / "history.json")
    with pytest.raises(ResultFileError, match=rf"^'{path}' is not a readable training history"):
        cw.TrainingHistory.load(path)
    checkpoint_path = _written(checkpoint, tmp_path / "checkpoint-00001.pt")
    with pytest.raises(ResultFileError, match=rf"^'{checkpoint_path}' is not a readable training history"):
        cw.TrainingHistory.load(checkpoint_path)
    with pytest.raises(FileNotFoundError, match="training history '.*missing.json' does not exist"):
        cw.TrainingHistory.load(tmp_path / "missing.json")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_stale_torchrun_environment_fails_fast_naming_the_variables(rank, tmp_path, monkeypatch):
    """WORLD_SIZE=2 with no second process: rank 0 waits for it, rank 1 for a store; neither waits forever."""
    port = free_port()
    for name, value in {"WORLD_SIZE": "2", "RANK": rank, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                        JOIN_TIMEOUT_VARIABLE: "1"}.items():
        monkeypatch.setenv(name, value)
    pattern = (rf"could not join the process group described by the environment \(WORLD_SIZE=2, RANK={rank}, "
               rf"LOCAL_RANK=.*, MASTER_ADDR=127\.0\.0\.1, MASTER_PORT={port}\) within 1 s: .*unset WORLD_SIZE, RANK "
               rf"and MASTER_ADDR; \${JOIN_TIMEOUT_VARIABLE}")
    with pytest.raises(TimeoutError, match=pattern):
        train(tmp_path)()
    assert not torch.distributed.is_initialized()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_a_bad_join_timeout_names_the_variable(value, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(JOIN_TIMEOUT_VARIABLE, value)
    with pytest.raises(ValueError, match=rf"\${JOIN_TIMEOUT_VARIABLE} must be a number of seconds > 0; got '{value}'"):
        train(tmp_path)()

"""From a checkpoint that :func:`~curvwidgets.train` wrote to a ready model and its data, in one call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn

from .._validate import boolean, device_value, path_value, positive_int, type_name
from ..results import TrainingHistory
from . import data as datasets
from . import models
from .checkpoint import CheckpointError, checkpoint_epoch, load_checkpoint, load_model_state
from .distributed import default_device

__all__ = ["Trained", "load_trained"]


@dataclass
class Trained:
    """A trained model rebuilt from its checkpoint.

    Attributes
    ----------
    model : nn.Module
        On the requested device, in eval mode, holding the checkpoint's weights
        (or their SWA average).
    data : DataSet or None
        The data set the run was trained on, loaded again (None with ``data=False``).
    checkpoint : str
        The file read.
    epoch : int
        Epochs finished when it was written.
    config : dict
        The training run's settings.
    history : TrainingHistory
        Per-epoch statistics up to ``epoch``.
    swa : bool
        Whether ``model`` holds the SWA average.
    """

    model: nn.Module
    data: Optional[datasets.DataSet]
    checkpoint: str
    epoch: int
    config: Dict[str, Any]
    history: TrainingHistory
    swa: bool = False

    @property
    def name(self) -> str:
        """The model's name in :func:`curvwidgets.models.names`, or its class name for a custom module."""
        architecture = self.config.get("architecture")
        return architecture["name"] if architecture else self.config.get("model", type(self.model).__name__)

    def metadata(self) -> Dict[str, Any]:
        """What a spectrum or landscape of this model records about it (plain values)."""
        return {"model": self.name, "checkpoint": self.checkpoint, "epoch": self.epoch,
                "data": self.config.get("data"), "seed": self.config.get("seed")}


def load_trained(
    checkpoint: Union[str, os.PathLike],
    device: Union[str, torch.device, None] = None,
    *,
    swa: bool = False,
    data: bool = True,
    root: Union[str, os.PathLike, None] = None,
    download: bool = False,
    batch_size: int = 256,
    model: Optional[nn.Module] = None,
) -> Trained:
    """Rebuild the model of a checkpoint (file, or a folder: its latest) and load its data set.

    Parameters
    ----------
    checkpoint : path
        ``checkpoint-00300.pt`` or the run's folder.
    device : optional
        Default: CUDA when available, else the CPU.
    swa : bool, default: False
        Load the stochastic weight average instead of the last weights; a
        model with BatchNorm then gets fresh running statistics from one pass
        over the training data without augmentation (as ``cw.train`` does at
        the end of an SWA run).
    data : bool, default: True
        Load the data set named in the checkpoint (``root``/``download`` as
        for :func:`curvwidgets.data.load`, the run's validation split, and
        ``batch_size``).
    model : nn.Module, optional
        For a checkpoint of a module that was not built by name: an
        instance of the same architecture to load the weights into.

    Raises
    ------
    FileNotFoundError
        No such file, or no checkpoint in the folder.
    CheckpointError
        Not a readable curvwidgets checkpoint, or of a newer format version.
    ValueError
        A model name this curvwidgets does not know, a checkpoint of a custom
        module without ``model=``, weights that do not fit ``model``, ``swa``
        for a run without SWA; ``device`` not a device of this machine, or
        ``swa``, ``data`` or ``download`` not a bool.
    """
    path = path_value("checkpoint", checkpoint)
    for name, flag in (("swa", swa), ("data", data), ("download", download)):
        boolean(name, flag)
    if root is not None:
        path_value("root", root)
    positive_int("batch_size", batch_size)
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be None or a torch.nn.Module of the checkpoint's architecture; got "
                        f"{type_name(model)}")
    device = device_value("device", device) if device is not None else default_device()
    if path.is_dir() and not _checkpoint_files(path):
        raise FileNotFoundError(f"checkpoint: the folder {os.fspath(path)!r} holds no checkpoint-XXXXX.pt files; give "
                                "a checkpoint file or the folder of a training run")
    state = load_checkpoint(path, map_location="cpu")
    source, config = state["path"], dict(state.get("config", {}))
    model = _build(config, model, source)
    weights = state["model"]
    if swa:
        if not state.get("swa"):
            raise ValueError(f"swa=True, but {source!r} is from a run without stochastic weight averaging")
        weights = {key[len("module."):]: value for key, value in state["swa"]["model"].items()
                   if key.startswith("module.")}
    load_model_state(model, weights, source)
    model = model.to(device).eval()
    dataset = None
    if data:
        name = config.get("data")
        if name not in datasets.names():
            raise ValueError(f"{source!r} was trained on data {name!r}, which cannot be loaded by name; pass data=False "
                             "and use your own batches")
        dataset = datasets.load(name, root=root, download=download, augment=False,
                                validation=config.get("validation", False), batch_size=batch_size, device=device,
                                **config.get("data_options", {}))
    if swa and any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()):
        if dataset is None:
            raise ValueError("swa=True for a model with BatchNorm needs data=True: its statistics are recomputed")
        torch.optim.swa_utils.update_bn(dataset.evaluation_loader("train"), model, device=device)
        model.eval()
    history = TrainingHistory.from_dict(state["history"]) if state.get("history") else TrainingHistory(config=config)
    return Trained(model, dataset, source, int(state["epoch"]), config, history, swa)


def _build(config: Dict[str, Any], model: Optional[nn.Module], source: str) -> nn.Module:
    """The module to load the weights into: ``model`` if given, else rebuilt from the checkpoint's architecture."""
    if model is not None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        return model
    architecture = config.get("architecture")
    if not architecture:
        raise ValueError(f"{source!r} holds a custom module ({config.get('model', 'unknown')}) that cannot be rebuilt "
                         "by name; pass model= with an instance of its architecture")
    try:
        name = models.canonical_name(architecture["name"])
    except ValueError as error:
        raise ValueError(f"{source!r}: {error}") from None
    try:
        return models.create(name, num_classes=architecture["num_classes"], in_channels=architecture["in_channels"],
                             **architecture.get("options", {}))
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{source!r}: its architecture entry {architecture!r} is damaged ({error})") from None


def _checkpoint_files(folder: Path) -> List[Path]:
    """The ``checkpoint-XXXXX.pt`` files in ``folder`` (any order)."""
    return [path for path in folder.glob("checkpoint-*.pt") if checkpoint_epoch(path) is not None]

"""The ``curvwidgets`` command line: one verb per step of the paper's workflow.

Arguments are parsed before anything heavy is imported, so ``--help`` is
instant; every long verb draws a tqdm bar from its first step and writes its
results as the files of :mod:`curvwidgets.api`. A bad value ends in one line
naming the option and exit status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from ._validate import device_value, writable_file, writable_folder

__all__ = ["main", "build_parser"]


def _bar(desc: str):
    """A tqdm bar that appears at the computation's first event: ``step=0``, sent once its inputs are checked."""
    from .progress import TqdmProgress

    return TqdmProgress(desc=desc)


def _synthetic(arguments: argparse.Namespace) -> int:
    from .synthetic_demo import format_summary, run_synthetic_demo

    summaries = run_synthetic_demo(Path(arguments.out), size=arguments.size, steps=arguments.steps, seed=arguments.seed)
    print()
    print(format_summary(summaries))
    print(f"\nW1 = Wasserstein-1 distance to the exact eigenvalues (eigenvalue units); figures in {arguments.out}/")
    return 0


def _demo(arguments: argparse.Namespace) -> int:
    from .demo import DemoSettings, format_demo_summary, run_demo

    settings = DemoSettings(model=arguments.model, epochs=arguments.epochs, steps=arguments.steps,
                            vectors=arguments.vectors, seed=arguments.seed, device=arguments.device or "cpu")
    summary = run_demo(Path(arguments.out), settings, bar=_bar)
    print()
    print(format_demo_summary(summary))
    print(f"results and figures in {arguments.out}/")
    return 0


def _train(arguments: argparse.Namespace) -> int:
    from . import api

    options = {key: value for key, value in (("lr", arguments.lr), ("momentum", arguments.momentum),
                                             ("weight_decay", arguments.weight_decay)) if value is not None}
    schedule_options = {"final_ratio": arguments.final_ratio} if arguments.final_ratio is not None else None
    monitor = None
    if arguments.monitor_every is not None:
        from .training.monitor import CurvatureMonitor

        monitor = CurvatureMonitor(every=arguments.monitor_every, num_samples=arguments.monitor_samples,
                                   unit=arguments.monitor_unit)
    with _bar("train") as bar:
        history = api.train_network(
            arguments.out, dataset=arguments.data, data_path=arguments.root, model=arguments.model,
            epochs=arguments.epochs, optimizer=arguments.optimizer, optimizer_kwargs=options,
            schedule=arguments.schedule, schedule_kwargs=schedule_options, batch_size=arguments.batch_size,
            save_freq=arguments.save_every, swa_start=arguments.swa_start, swa_lr=arguments.swa_lr,
            resume=arguments.resume, seed=arguments.seed, device=arguments.device, download=arguments.download,
            progress=_epoch_lines(bar), monitor=monitor)
    if history.final:
        print("SWA: " + ", ".join(f"{key} {value:.4f}" for key, value in history.final.items()))
    print(f"history and checkpoints in {arguments.out}/")
    return 0


def _epoch_lines(bar) -> Callable:
    """A progress callback that moves ``bar`` and prints one line per epoch (rank 0 only).

    A curvature monitor's measurements move a bar of their own, labelled with the newest sharpness and its step.
    """
    from tqdm.auto import tqdm

    from .curvature.data import world

    def show(event) -> None:
        bar(event)
        if event.stage == "curvature" and event.stage in getattr(bar, "bars", {}):
            newest = event.partial.measurements[-1]
            bar.bars[event.stage].set_postfix_str(f"step {newest['step']}: sharpness {newest['sharpness']:.4g}")
        if event.stage == "train" and event.step > 0 and world()[0] == 0:
            row = event.partial.rows[-1]
            sharpness = row.get("sharpness", float("nan"))
            threshold = row.get("stability_threshold", float("nan"))
            stable = f" (stable below {threshold:.4g})" if threshold == threshold else ""
            measured = f"  sharpness {sharpness:.4g}{stable}" if sharpness == sharpness else ""
            tqdm.write(f"epoch {row['epoch']:4d}/{event.total}  lr {row['lr']:.4g}  train loss "
                            f"{row['train_loss']:.4f} top-1 {row['train_top1']:.3f}  test loss {row['test_loss']:.4f} "
                            f"top-1 {row['test_top1']:.3f} top-5 {row['test_top5']:.3f}  {row['seconds']:.1f} s"
                            + measured)

    return show


def _spectrum(arguments: argparse.Namespace) -> int:
    from . import api

    lanczos = arguments.matrix.endswith("_lanczos")
    with _bar(arguments.matrix) as bar:
        result = api.compute_eigenspectrum(
            dataset=arguments.data, data_path=arguments.root, checkpoint_path=arguments.checkpoint,
            save_spectrum_path=arguments.out, save_eigvec=arguments.save_eigvec, lanczos_iters=arguments.steps,
            curvature_matrix=arguments.matrix, num_vectors=arguments.vectors, bn_mode=arguments.bn_mode,
            params=arguments.params, num_samples=arguments.samples, seed=arguments.seed, swa=arguments.swa,
            device=arguments.device, progress=bar if lanczos else None, tol=arguments.tol)
    if lanczos:
        print(result.describe())
    print(f"saved to {arguments.out}")
    return 0


def _stats(arguments: argparse.Namespace) -> int:
    from . import api

    with _bar("loss statistics") as bar:
        statistics = api.compute_loss_stats(
            dataset=arguments.data, data_path=arguments.root, checkpoint_path=arguments.checkpoint,
            save_path=arguments.out, curvature=arguments.curvature, num_probes=arguments.probes,
            batch_size=arguments.batch_size, seed=arguments.seed, device=arguments.device, progress=bar)
    for key, value in statistics.items():
        print(f"{key:<28} {value:.6g}")
    if arguments.out:
        print(f"saved to {arguments.out}")
    return 0


def _landscape(arguments: argparse.Namespace) -> int:
    from . import api
    from .curvature import OtherWeightsError

    with _bar("landscape") as bar:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a diverged sweep is reported below
                result = api.build_loss_landscape(
                    dataset=arguments.data, data_path=arguments.root, dist=arguments.dist, n_points=arguments.points,
                    spectrum_path=arguments.spectrum, checkpoint_path=arguments.checkpoint, save_path=arguments.out,
                    largest=arguments.largest, smallest=arguments.smallest, nearest_zero=arguments.nearest_zero,
                    directions=arguments.directions, one_axis=arguments.one_axis, states=arguments.states,
                    plane=arguments.plane, bn=arguments.bn, seed=arguments.seed,
                    device=arguments.device, allow_other_weights=arguments.allow_other_weights, progress=bar)
        except OtherWeightsError as error:
            raise OtherWeightsError(str(error).replace("allow_other_weights=True", "--allow-other-weights")) from None
    print(f"{len(result.labels)} direction(s), {result.offsets.size} points each; saved to {arguments.out}")
    if result.not_finite.any():
        print(f"warning: {result.not_finite_note()}")
    return 0


def _plot(arguments: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from . import api
    from .results import Landscape, load_result

    inputs = arguments.inputs
    runs = [item for item in inputs if Path(item).is_dir() or item.endswith(".json")]
    if runs and len(inputs) > 1:
        raise ValueError(f"a run folder or history.json is plotted alone; got {len(inputs)} inputs: {inputs}")
    if runs:
        api.plot_training(inputs[0], save_path=arguments.out)
    elif len(inputs) == 1 and isinstance(load_result(inputs[0]), Landscape):
        api.plot_loss_landscape(inputs[0], save_path=arguments.out, metric=arguments.metric)
    else:
        api.plot_spectrum(inputs, save_path=arguments.out)
    print(f"figure written to {arguments.out}")
    return 0


def _reproduce(arguments: argparse.Namespace) -> int:
    from .reproduce import format_runs, run_notebooks

    runs = run_notebooks(Path(arguments.out), preset=arguments.preset, names=arguments.notebooks or None)
    print(format_runs(runs))
    return 0 if all(run.error is None for run in runs) else 1


#: ``--directions``: :data:`curvwidgets.api.LANDSCAPE_DIRECTIONS`, named here so that ``--help`` imports no torch.
_LANDSCAPE_DIRECTIONS = ("eigenvectors", "random", "filter-normalised", "layer-normalised", "weight-normalised",
                         "dfilter-normalised", "dlayer-normalised")


def _device_option(text: str) -> str:
    """``--device``'s type: the name as given, once it names a device this machine has."""
    try:
        device_value("device", text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _checkpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run folder (its latest)")
    parser.add_argument("--data", default=None, help="data set to use instead of the checkpoint's")
    parser.add_argument("--root", default=None, help="where CIFAR lives (default: $CURVWIDGETS_DATA or ~/.cache)")
    parser.add_argument("--device", default=None, type=_device_option,
                        help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per verb; defaults equal those of :mod:`curvwidgets.api`."""
    parser = argparse.ArgumentParser(prog="curvwidgets", description="Curvature of neural-network loss surfaces: the "
                                     "workflow of the paper MLRG Deep Curvature.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    verbs = parser.add_subparsers(dest="verb", required=True)

    demo = verbs.add_parser("demo", help="train, spectra, landscapes and figures on the embedded digits (minutes, CPU)")
    demo.add_argument("--out", default="results", help="folder for results and figures (default: results)")
    demo.add_argument("--model", default="MLP", help="a model name (default: MLP)")
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    demo.add_argument("--steps", type=int, default=20, help="Lanczos steps (default: 20)")
    demo.add_argument("--vectors", type=int, default=4,
                      help="Lanczos start vectors, for error bars (default: 4)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--device", default=None, type=_device_option, help="cpu, cuda, ... (default: cpu)")
    demo.set_defaults(run=_demo)

    synthetic = verbs.add_parser("synthetic", help="reproduce the synthetic figures 1-5 and Table 1 as PNG files")
    synthetic.add_argument("--out", default="results", help="folder for the figures (default: results)")
    synthetic.add_argument("--size", choices=["paper", "small"], default="paper",
                           help="matrix sizes: the paper's (P up to 10000) or small (P up to 1000)")
    synthetic.add_argument("--steps", type=int, default=30, help="Lanczos steps m (default: 30)")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synthetic.set_defaults(run=_synthetic)

    fit = verbs.add_parser("train", help="train a named model on a named data set (train_network)")
    fit.add_argument("--out", required=True, help="folder for history.json and the checkpoints (the paper's dir)")
    fit.add_argument("--model", default="VGG16", help="a name of curvwidgets.models.names() (default: VGG16)")
    fit.add_argument("--data", default="CIFAR100", help="CIFAR100 (default), CIFAR10, digits (embedded), synthetic or "
                     "tinytext (generated text; its loss is the mean cross-entropy over tokens)")
    fit.add_argument("--epochs", type=int, default=300, help="epochs (default: 300)")
    fit.add_argument("--optimizer", default="SGD", help="a name of curvwidgets.optim.names() (default: SGD)")
    fit.add_argument("--lr", type=float, default=None, help="initial learning rate (default, curvwidgets.optim.DEFAULTS: "
                     "SGD 0.05, Adam 0.001, AdamW 0.001, SWATS 0.001, KFAC 0.01, LanczosSFN 0.1, LanczosGGN 0.1)")
    fit.add_argument("--momentum", type=float, default=None, help="momentum (default: SGD 0.9, KFAC 0.9, "
                     "LanczosSFN/LanczosGGN 0)")
    fit.add_argument("--weight-decay", type=float, default=None, help="weight decay (default: SGD 5e-4, else 0)")
    fit.add_argument("--schedule", default="linear", help="linear (the paper's eq. 19, default), constant, cosine, step")
    fit.add_argument("--final-ratio", type=float, default=None, help="r of the linear schedule (default: 0.01)")
    fit.add_argument("--batch-size", type=int, default=128, help="global batch size (default: 128)")
    fit.add_argument("--save-every", type=int, default=25, help="a checkpoint every this many epochs (default: 25)")
    fit.add_argument("--swa-start", type=int, default=None, help="average the weights from this epoch on (SWA)")
    fit.add_argument("--swa-lr", type=float, default=None, help="learning rate during SWA")
    fit.add_argument("--resume", default=None, help="a checkpoint file or a folder of them to continue from")
    fit.add_argument("--root", default=None, help="where CIFAR lives (the paper's data_path)")
    fit.add_argument("--download", action="store_true", help="let torchvision fetch CIFAR when it is missing")
    fit.add_argument("--device", default=None, type=_device_option,
                     help="cpu, cuda, ... (default: cuda when available)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    fit.add_argument("--monitor-every", type=int, default=None,
                     help="measure the sharpness (top Hessian eigenvalue) every this many epochs, or optimiser "
                          "steps with --monitor-unit step (default: never)")
    fit.add_argument("--monitor-unit", default="epoch", choices=["epoch", "step"],
                     help="what --monitor-every counts: epochs (default) or optimiser steps (the measurements "
                          "then also go into history.json's 'measurements')")
    fit.add_argument("--monitor-samples", type=int, default=256,
                     help="training samples of the sharpness measurement (default: 256)")
    fit.set_defaults(run=_train)

    spectrum = verbs.add_parser("spectrum", help="Lanczos spectrum (or diagonal) of a checkpoint (compute_eigenspectrum)")
    _checkpoint_options(spectrum)
    spectrum.add_argument("--out", required=True, help="the spectrum file (npz; the paper's save_spectrum_path)")
    spectrum.add_argument("--matrix", default="hessian_lanczos",
                          choices=["hessian_lanczos", "ggn_lanczos", "ggn_diag", "hessian_diag"],
                          help="curvature matrix (default: hessian_lanczos)")
    spectrum.add_argument("--steps", type=int, default=100, help="Lanczos iterations (default: 100)")
    spectrum.add_argument("--vectors", type=int, default=1,
                          help="random start vectors (default: 1; several give error bars)")
    spectrum.add_argument("--tol", type=float, default=None,
                          help="stop when the top Ritz value's residual is below tol times it (default: all steps)")
    spectrum.add_argument("--save-eigvec", action="store_true", help="keep the Ritz vectors (for landscapes)")
    spectrum.add_argument("--bn-mode", choices=["train", "eval"], default=None,
                          help="BatchNorm statistics: train (batch, the paper's; default) or eval (running)")
    spectrum.add_argument("--params", default=None, help="glob of the parameters to include (default: all)")
    spectrum.add_argument("--samples", type=int, default=None, help="a random subset of this many samples")
    spectrum.add_argument("--swa", action="store_true", help="use the checkpoint's SWA average")
    spectrum.set_defaults(run=_spectrum)

    stats = verbs.add_parser("stats", help="loss, gradient and curvature statistics of a checkpoint (compute_loss_stats)")
    _checkpoint_options(stats)
    stats.add_argument("--out", default=None, help="JSON file for the statistics")
    stats.add_argument("--curvature", nargs="*", default=["hessian", "ggn"], choices=["hessian", "ggn"],
                       help="curvature matrices to describe (default: hessian ggn)")
    stats.add_argument("--probes", type=int, default=10, help="Hutchinson probes (default: 10)")
    stats.add_argument("--batch-size", type=int, default=128, help="mini-batch size of the variances (default: 128)")
    stats.set_defaults(run=_stats)

    walk = verbs.add_parser("landscape", help="loss and accuracy along eigenvectors or random directions "
                                                     "(build_loss_landscape)")
    _checkpoint_options(walk)
    walk.add_argument("--spectrum", default=None, help="a spectrum saved with --save-eigvec")
    walk.add_argument("--out", required=True, help="the landscape file (npz; the paper's save_path)")
    walk.add_argument("--dist", type=float, default=0.25, help="largest step along a direction (default: 0.25)")
    walk.add_argument("--points", type=int, default=21, help="points per direction (default: 21)")
    walk.add_argument("--largest", type=int, default=3, help="eigenvectors of the largest Ritz values (default: 3)")
    walk.add_argument("--smallest", type=int, default=3, help="... of the most negative (default: 3)")
    walk.add_argument("--nearest-zero", type=int, default=0, help="... of those nearest zero (default: 0)")
    walk.add_argument("--directions", default="eigenvectors", choices=_LANDSCAPE_DIRECTIONS,
                      help="eigenvectors of --spectrum (default), or random directions from --seed: 'random' of unit "
                           "length, or normalised as Li et al. (2018): 'filter-normalised' scales each filter of a "
                           "weight tensor to the weights' filter norm, 'layer-normalised' the tensor to the weights' "
                           "norm, 'weight-normalised' multiplies it by the weights entrywise, 'dfilter-normalised' / "
                           "'dlayer-normalised' scale each filter / tensor to unit norm")
    walk.add_argument("--one-axis", default=None, choices=["zero", "weights"],
                      help="with a Li normalisation, the direction of biases and BatchNorm parameters: 'zero' "
                           "(default; their --xignore biasbn) or the parameter itself, 'weights' (their default)")
    walk.add_argument("--states", action="store_true",
                      help="also move the BatchNorm running statistics (Li et al.'s --dir_type states; with a Li "
                           "normalisation and --one-axis weights): each by itself times t, so a variance turns "
                           "negative, and the loss NaN, for t < -1")
    walk.add_argument("--plane", action="store_true", help="the plane of the first two directions")
    walk.add_argument("--allow-other-weights", action="store_true",
                      help="walk along eigenvectors of a spectrum computed on other weights than the checkpoint's")
    walk.add_argument("--bn", default="keep", choices=["keep", "recompute"],
                      help="BatchNorm statistics at each point (default: keep)")
    walk.set_defaults(run=_landscape)

    plot = verbs.add_parser("plot", help="a figure from results files (plot_training / plot_spectrum / "
                                         "plot_loss_landscape)")
    plot.add_argument("inputs", nargs="+", help="a run folder or history.json; a landscape file; or spectrum files "
                                                "(and one diagonal file)")
    plot.add_argument("--out", required=True, help="the image file (png, pdf, svg)")
    plot.add_argument("--metric", default="loss", choices=["loss", "accuracy"], help="landscape metric (default: loss)")
    plot.set_defaults(run=_plot)

    reproduce = verbs.add_parser("reproduce", help="run every notebook through papermill with a preset")
    reproduce.add_argument("--preset", choices=["small", "paper"], default="small",
                           help="small: embedded data, CPU minutes (default); paper: the paper's sizes (GPU)")
    reproduce.add_argument("--out", required=True, help="folder for the executed notebooks")
    reproduce.add_argument("notebooks", nargs="*", help="notebook names to run (default: all)")
    reproduce.set_defaults(run=_reproduce)
    return parser


def _positive_ints(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> None:
    """Reject counts < 1 at parse time, naming the option."""
    for name in ("epochs", "steps", "vectors", "points", "batch_size", "probes", "samples", "save_every"):
        value = getattr(arguments, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {value}")
    for name in ("dist", "lr"):
        value = getattr(arguments, name, None)
        if value is not None and not value > 0:
            parser.error(f"--{name} must be > 0; got {value}")


@contextlib.contextmanager
def _torch_internal_warnings_ignored() -> Iterator[None]:
    """Hide the FutureWarning that torch raises against itself on the first forward-mode product.

    ``torch.autograd.forward_ad`` then imports ``torch._decomp.decompositions_for_jvp``, which compiles
    its decompositions with ``torch.jit.script``, and ``torch.jit.script`` warns (from
    ``torch.jit._script``) that it is deprecated: nothing a user of the command can act on. Only that
    message, category and module are ignored, and only while the command runs.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning,
                                module=r"torch\.jit\._script$")
        yield


#: The options of each verb by the names the messages of :mod:`curvwidgets.api` give them (its arguments').
_OPTION_NAMES: Dict[str, Dict[str, str]] = {
    "train": {"dir": "--out", "out_dir": "--out", "dataset": "--data", "data_path": "--root", "model": "--model",
              "epochs": "--epochs", "optimizer": "--optimizer", "lr": "--lr", "momentum": "--momentum",
              "weight_decay": "--weight-decay", "schedule": "--schedule", "final_ratio": "--final-ratio",
              "batch_size": "--batch-size", "save_freq": "--save-every", "save_every": "--save-every",
              "swa_start": "--swa-start", "swa_lr": "--swa-lr", "resume": "--resume", "seed": "--seed",
              "device": "--device", "download": "--download"},
    "spectrum": {"checkpoint_path": "--checkpoint", "dataset": "--data", "data_path": "--root",
                 "save_spectrum_path": "--out", "lanczos_iters": "--steps", "curvature_matrix": "--matrix",
                 "num_vectors": "--vectors", "bn_mode": "--bn-mode", "params": "--params", "num_samples": "--samples",
                 "seed": "--seed", "swa": "--swa", "device": "--device"},
    "stats": {"checkpoint_path": "--checkpoint", "dataset": "--data", "data_path": "--root", "save_path": "--out",
              "curvature": "--curvature", "num_probes": "--probes", "batch_size": "--batch-size", "seed": "--seed",
              "device": "--device"},
    "landscape": {"checkpoint_path": "--checkpoint", "dataset": "--data", "data_path": "--root",
                  "spectrum_path": "--spectrum", "save_path": "--out", "dist": "--dist", "n_points": "--points",
                  "largest": "--largest", "smallest": "--smallest", "nearest_zero": "--nearest-zero",
                  "directions": "--directions", "one_axis": "--one-axis", "states": "--states", "plane": "--plane",
                  "bn": "--bn", "seed": "--seed", "device": "--device"},
    "plot": {"save_path": "--out", "metric": "--metric", "spectrum_path": "inputs", "path": "inputs", "dir": "inputs"},
    "synthetic": {"seed": "--seed", "steps": "--steps", "size": "--size"},
    "demo": {"dir": "--out", "model": "--model", "epochs": "--epochs", "steps": "--steps", "seed": "--seed",
             "device": "--device"},
    "reproduce": {"preset": "--preset"},
}
_FLAGS = ("--plane", "--swa", "--download", "--save-eigvec", "--states")
#: Options whose value is a path, per verb: a message that quotes the path gets the option's name.
_PATH_OPTIONS = {"train": ("--out", "--resume", "--root"), "spectrum": ("--checkpoint", "--out", "--root"),
                 "stats": ("--checkpoint", "--out", "--root"),
                 "landscape": ("--checkpoint", "--spectrum", "--out", "--root"), "plot": ("inputs", "--out"),
                 "synthetic": ("--out",), "demo": ("--out",), "reproduce": ("--out",)}


def _in_option_words(verb: str, message: str, arguments: argparse.Namespace) -> str:
    """An error message of :mod:`curvwidgets.api` with the verb's option names (``--points``) for its arguments'.

    A name at the start, ``name=value`` anywhere, and names with an underscore
    anywhere are replaced; a message about a file given to an option, which
    names the file but not the option, gets the option's name in front.
    """
    names = _OPTION_NAMES.get(verb, {})
    message = " ".join(message.splitlines())
    message = re.sub(r"^(?:optimizer|schedule)_kwargs: (?=\w+ must)", "", message)
    message = message.replace("largest, smallest and nearest_zero", "--largest, --smallest and --nearest-zero")

    def assignment(match: "re.Match[str]") -> str:
        option = names.get(match.group(1))
        if option is None:
            return match.group(0)
        return option if option in _FLAGS and match.group(2) == "True" else f"{option} {match.group(2)}"

    message = re.sub(r"(?:^|(?<=[^,] ))([a-z_]+)=('[^']*'|[^\s,;:)]+)", assignment, message)  # not in a call's list
    first = re.match(r"[a-z_]+\b", message)
    if first is not None and first.group() in names:
        message = names[first.group()] + message[first.end():]
    for name, option in names.items():
        if "_" in name:
            message = re.sub(rf"(?<![\w'/.-]){name}(?![\w'/])", option, message)
    option = _option_of_quoted_path(verb, message, arguments)
    if option is not None and not message.startswith(("--", option)):
        message = f"{option}: {message}"
    return message


def _option_of_quoted_path(verb: str, message: str, arguments: argparse.Namespace) -> Optional[str]:
    """The path option whose value (or the file it leads to: ``.npz`` added, a folder's file) the message quotes."""
    quoted = [Path(text) for text in re.findall(r"'([^']+)'", message)]
    found = []
    for option in _PATH_OPTIONS.get(verb, ()):
        values = getattr(arguments, option.lstrip("-").replace("-", "_"), None)
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, str) or not value:
                continue
            given = Path(value).expanduser()
            if any(path in (given, given.with_name(given.name + ".npz")) or path.parent == given for path in quoted):
                found.append(option)
    # one file given to two options: the option of the kind of file the message speaks of
    unquoted = re.sub(r"'[^']*'", "", message).lower()
    return next((option for option in found if option.lstrip("-") in unquoted), found[0] if found else None)


def _check_outputs(arguments: argparse.Namespace) -> None:
    """Refuse, before any work, an ``--out`` that cannot be written (a folder given for a file, a file under a file)."""
    out = getattr(arguments, "out", None)
    if out is None:
        return
    if arguments.verb in ("train", "synthetic", "demo", "reproduce"):
        writable_folder("--out", out)
        return
    writable_file("--out", out)
    if arguments.verb == "plot" and not Path(out).suffix:
        raise ValueError(f"--out {out!r} needs a suffix naming the image format, such as .png, .pdf or .svg")


def _text(error: BaseException) -> str:
    """The message of ``error`` without the ``[Errno 2]`` of an ``OSError`` or the quotes of a ``KeyError``."""
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return error.strerror + (f": {os.fspath(error.filename)!r}" if error.filename else "")
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``curvwidgets`` command."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    _positive_ints(parser, arguments)
    try:
        _check_outputs(arguments)
        with _torch_internal_warnings_ignored():
            return arguments.run(arguments)
    except (ValueError, TypeError, KeyError, OSError) as error:  # a bad value, file or folder
        if arguments.debug:
            raise
        print(f"curvwidgets {arguments.verb}: error: {_in_option_words(arguments.verb, _text(error), arguments)}",
              file=sys.stderr)
        return 2
    except Exception as error:  # anything else still ends in one line; --debug shows where it came from
        if arguments.debug:
            raise
        print(f"curvwidgets {arguments.verb}: error: {type(error).__name__}: {error} (--debug shows the traceback)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"curvwidgets {arguments.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

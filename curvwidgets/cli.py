"""The ``curvwidgets`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

__all__ = ["main"]


def _demo(arguments: argparse.Namespace) -> int:
    from .demo import format_summary, run_synthetic_demo

    summaries = run_synthetic_demo(Path(arguments.out), size=arguments.size, steps=arguments.steps, seed=arguments.seed)
    print()
    print(format_summary(summaries))
    print(f"\nW1 = Wasserstein-1 distance to the exact eigenvalues (eigenvalue units); figures in {arguments.out}/")
    return 0


def _train(arguments: argparse.Namespace) -> int:
    from .training import data, train
    from .training.distributed import default_device, join_process_group

    def show(event) -> None:
        if event.stage == "train" and rank == 0:
            row = event.partial.rows[-1]
            print(f"epoch {row['epoch']:4d}/{event.total}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
                  f"top-1 {row['train_top1']:.3f}  test loss {row['test_loss']:.4f} top-1 {row['test_top1']:.3f} "
                  f"top-5 {row['test_top5']:.3f}  {row['seconds']:.1f} s", flush=True)

    rank, world = join_process_group()  # under torchrun: this process's share of every batch
    device = arguments.device or default_device()
    dataset = data.load(arguments.data, root=arguments.root, download=arguments.download,
                        batch_size=arguments.batch_size, validation=arguments.validation, device=device,
                        seed=arguments.seed, rank=rank, world_size=world)
    options = {"lr": arguments.lr} if arguments.lr is not None else {}
    history = train(arguments.model, dataset, arguments.epochs, optimizer=arguments.optimizer, optimizer_kwargs=options,
                    schedule=arguments.schedule, out_dir=arguments.out, save_every=arguments.save_every,
                    resume=arguments.resume, device=device, seed=arguments.seed, progress=show)
    if history.final:
        print("SWA: " + ", ".join(f"{key} {value:.4f}" for key, value in history.final.items()))
    if arguments.out:
        print(f"history and checkpoints in {arguments.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per verb."""
    parser = argparse.ArgumentParser(prog="curvwidgets", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo = verbs.add_parser("demo", help="reproduce the synthetic figures of the paper as PNG files")
    demo.add_argument("--out", default="results", help="folder for the figures (default: results)")
    demo.add_argument("--size", choices=["paper", "small"], default="paper",
                      help="matrix sizes: the paper's (P up to 10000) or small (P up to 1000)")
    demo.add_argument("--steps", type=int, default=30, help="Lanczos steps m (default: 30)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=_demo)
    fit = verbs.add_parser("train", help="train a named model on a named data set (cw.train)")
    fit.add_argument("--model", default="SmallCNN", help="a name of curvwidgets.models.names() (default: SmallCNN)")
    fit.add_argument("--data", default="digits", help="digits (embedded, default), CIFAR10, CIFAR100 or synthetic")
    fit.add_argument("--epochs", type=int, default=8, help="epochs (default: 8)")
    fit.add_argument("--optimizer", default="SGD", help="a name of curvwidgets.optim.names() (default: SGD)")
    fit.add_argument("--lr", type=float, default=None, help="initial learning rate (default: the optimiser's)")
    fit.add_argument("--schedule", default="linear", help="linear (the paper's eq. 19), constant, cosine or step")
    fit.add_argument("--batch-size", type=int, default=128, help="global batch size (default: 128)")
    fit.add_argument("--validation", action="store_true", help="test on a held-out part of the training set")
    fit.add_argument("--out", default=None, help="folder for history.json and checkpoints")
    fit.add_argument("--save-every", type=int, default=None, help="a checkpoint every this many epochs")
    fit.add_argument("--resume", default=None, help="a checkpoint file or a folder of them to continue from")
    fit.add_argument("--root", default=None, help="where CIFAR lives (default: $CURVWIDGETS_DATA or ~/.cache)")
    fit.add_argument("--download", action="store_true", help="let torchvision fetch CIFAR when it is missing")
    fit.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    fit.set_defaults(run=_train)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``curvwidgets`` command."""
    arguments = build_parser().parse_args(argv)
    return arguments.run(arguments)


if __name__ == "__main__":
    raise SystemExit(main())

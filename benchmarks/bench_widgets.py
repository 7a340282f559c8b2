#!/usr/bin/env python
"""What the widgets add to the computations they wrap, and how fast a slider move redraws, in one process.

1. **synthetic**: ``SyntheticSpectrumWidget`` on the Wigner matrix (``--P``,
   default 10000, ``m = 30``) against the same core calls made directly
   (``cw.synthetic.wigner``, the diagonal, ``cw.lanczos``, the exact
   eigenvalues). The widget runs as a user runs it: a worker thread, the
   progress bar and the live stems, then ``join``.
2. **network**: ``SpectrumWidget`` against ``cw.spectrum`` on a small MLP
   (``P = 2410``, 512 samples, ``m = 30``).
3. **redraw**: one slider move on a 100-step, 10-start-vector result: the
   step slider of both widgets (stems; for the spectrum widget also the
   smoothed density and the summary), the smoothing width, the log/linear toggle.

For 1 and 2 the rounds alternate (direct, widget, direct, widget, ...) so that
machine load hits both alike, and the best round of each is kept; the ratio is
widget / direct. The time the widget spends in its own updates (progress bar,
label, marks; every update goes through its dispatcher, which is timed) is
reported too: it is the overhead itself, free of the run-to-run noise of the
computation. A redraw includes building the marks' data and serialising every
changed trait for the front end (the comm is ipywidgets' no-op stand-in, as
there is no kernel), not the browser's rendering.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_widgets.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_widgets.py --P 2000 --rounds 3 --json widgets.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable, Dict, List

import numpy as np
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.synthetic_demo import exact_eigenvalues
from curvwidgets.widgets import SpectrumWidget, SyntheticSpectrumWidget, TaskRunner


class UpdateClock:
    """Times every widget update a runner's dispatcher applies."""

    def __init__(self, runner: TaskRunner):
        self.seconds, self.updates = 0.0, 0
        dispatcher = runner._dispatch
        apply = dispatcher._apply

        def timed_apply(update):
            began = time.perf_counter()
            apply(update)
            self.seconds += time.perf_counter() - began
            self.updates += 1

        dispatcher._apply = timed_apply


def run_widget(widget, expected: Callable[[], np.ndarray]) -> Dict[str, float]:
    """Run ``widget`` in its worker thread and join; check it computed the Ritz values ``expected()`` did."""
    clock = UpdateClock(widget.runner)
    began = time.perf_counter()
    assert widget.run()
    assert widget.runner.join()
    seconds = time.perf_counter() - began
    assert widget.runner.outcome == "done", widget.runner.error
    np.testing.assert_allclose(widget.result.ritz_values, expected(), rtol=1e-6, atol=1e-9)
    return {"seconds": seconds, "update_seconds": clock.seconds, "updates": clock.updates}


def side_by_side(direct: Callable[[], None], widget: Callable[[], Dict[str, float]], rounds: int) -> Dict:
    directs, widgets_ = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        direct()
        directs.append(time.perf_counter() - began)
        widgets_.append(widget())
    best = min(widgets_, key=lambda row: row["seconds"])
    return {"direct_s": directs, "widget": widgets_, "ratio": best["seconds"] / min(directs),
            "update_share": best["update_seconds"] / min(directs), "load": os.getloadavg()}


def synthetic_section(P: int, steps: int, rounds: int) -> Dict:
    last = {}

    def direct() -> None:
        matrix = cw.synthetic.wigner(P, seed=0)
        cw.synthetic.diagonal_approximation(matrix)
        last["ritz"] = cw.lanczos(matrix, steps=steps, seed=0).ritz_values
        exact_eigenvalues(matrix)

    return side_by_side(direct, lambda: run_widget(SyntheticSpectrumWidget(P=P, steps=steps), lambda: last["ritz"]),
                        rounds)


def mlp_and_data(samples: int = 512):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    data = [(torch.randn(128, 64), torch.randint(0, 10, (128,))) for _ in range(samples // 128)]
    return model, data


def cnn_and_data(samples: int = 512):
    """The package's SmallCNN (57k parameters) on a fixed subset of the embedded digits: a small real network."""
    torch.manual_seed(0)
    dataset = cw.data.load("digits", augment=False, device="cpu")
    model = cw.models.create("SmallCNN", num_classes=dataset.num_classes).eval()
    batches = list(dataset.evaluation_loader("train", 128))
    return model, batches[: samples // 128]


def network_section(steps: int, rounds: int, network: str = "mlp") -> Dict:
    model, data = mlp_and_data() if network == "mlp" else cnn_and_data()
    options = dict(steps=steps, backend="double-backward")
    cw.spectrum(model, data, steps=2, backend="double-backward")  # warm-up
    last = {}

    def direct() -> None:
        last["ritz"] = cw.spectrum(model, data, **options).ritz_values

    return side_by_side(direct, lambda: run_widget(SpectrumWidget(model, data, **options), lambda: last["ritz"]),
                        rounds)


def time_moves(move: Callable[[int], None], values: List, repeats: int = 3) -> Dict[str, float]:
    timings = []
    for _ in range(repeats):
        for value in values:
            began = time.perf_counter()
            move(value)
            timings.append(time.perf_counter() - began)
    return {"median_ms": 1e3 * statistics.median(timings), "max_ms": 1e3 * max(timings), "moves": len(timings)}


def redraw_section(steps: int, vectors: int) -> Dict:
    ks = [int(k) for k in np.random.default_rng(0).integers(1, steps + 1, 20)]
    synthetic = SyntheticSpectrumWidget(P=2000, steps=steps, num_vectors=vectors)
    synthetic.run(block=True)
    model, data = mlp_and_data()
    spectrum = SpectrumWidget(model, data, steps=steps, num_vectors=vectors, backend="double-backward")
    spectrum.run(block=True)
    sigma = spectrum.sigma_slider.value

    def move(slider):
        return lambda value: setattr(slider, "value", value)

    return {
        "synthetic step slider": time_moves(move(synthetic.step_slider), ks),
        "spectrum step slider": time_moves(move(spectrum.step_slider), ks),
        "spectrum smoothing width": time_moves(move(spectrum.sigma_slider), [sigma * f for f in (0.3, 1, 3, 10)]),
        "spectrum log/linear": time_moves(move(spectrum.weight_scale), ["log", "linear"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--P", type=int, default=10000, help="size of the synthetic matrix")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of direct and widget runs")
    parser.add_argument("--sections", nargs="+", default=["synthetic", "network", "cnn", "redraw"],
                        help="network: an MLP of 2410 parameters; cnn: SmallCNN on 512 digits")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write every timing here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"P": args.P, "threads": torch.get_num_threads()}
    if "synthetic" in args.sections:
        results["synthetic"] = row = synthetic_section(args.P, 30, args.rounds)
        print(f"synthetic P = {args.P}: direct {min(row['direct_s']):.2f} s, widget / direct = {row['ratio']:.4f}, "
              f"widget updates = {100 * row['update_share']:.3f}% of the computation "
              f"({row['widget'][0]['updates']} updates), load {row['load']}", flush=True)
    if "network" in args.sections:
        results["network"] = row = network_section(30, max(args.rounds, 3))
        print(f"network MLP P = 2410: direct {min(row['direct_s']):.3f} s, widget / direct = {row['ratio']:.4f}, "
              f"widget updates = {100 * row['update_share']:.2f}% of the computation, load {row['load']}", flush=True)
    if "cnn" in args.sections:
        results["cnn"] = row = network_section(30, max(args.rounds, 2), network="cnn")
        print(f"network SmallCNN P = 57130, 512 digits: direct {min(row['direct_s']):.3f} s, widget / direct = "
              f"{row['ratio']:.4f}, widget updates = {100 * row['update_share']:.2f}% of the computation, "
              f"load {row['load']}", flush=True)
    if "redraw" in args.sections:
        results["redraw"] = rows = redraw_section(100, 10)
        for name, row in rows.items():
            print(f"redraw, 100 steps x 10 vectors, {name}: median {row['median_ms']:.1f} ms, "
                  f"max {row['max_ms']:.1f} ms over {row['moves']} moves", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=str)


if __name__ == "__main__":
    main()

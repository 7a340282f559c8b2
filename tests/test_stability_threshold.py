"""stability_threshold: torch.optim.SGD's own step on a 1-d quadratic is marginally stable exactly there."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curvwidgets.training.stability import stability_threshold

SETTINGS = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.02, "momentum": 0.5, "dampening": 0.3},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "momentum": 0.8, "weight_decay": 0.5},
    {"lr": 0.01, "momentum": 0.7, "nesterov": True, "weight_decay": 1e-3},
]


def step_matrix(curvature: float, settings: dict) -> np.ndarray:
    """The linear map of one SGD step on ``f(x) = curvature x^2 / 2``: the state ``(x, momentum buffer)`` in, out.

    Each column is one step of torch's own optimiser from a unit state (the
    buffer set, so the step is the steady one, not the first).
    """
    columns = []
    for state in ((1.0, 0.0), (0.0, 1.0)):
        weight = torch.nn.Parameter(torch.tensor([state[0]], dtype=torch.float64))
        optimizer = torch.optim.SGD([weight], **settings)
        if settings.get("momentum", 0):
            optimizer.state[weight]["momentum_buffer"] = torch.tensor([state[1]], dtype=torch.float64)
        (0.5 * curvature * weight.square()).sum().backward()
        optimizer.step()
        buffer = optimizer.state[weight].get("momentum_buffer", torch.zeros(1, dtype=torch.float64))
        columns.append([weight.item(), buffer.item()])
    matrix = np.array(columns).T
    return matrix if settings.get("momentum", 0) else matrix[:1, :1]


def spectral_radius(curvature: float, settings: dict) -> float:
    return float(np.abs(np.linalg.eigvals(step_matrix(curvature, settings))).max())


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_sgd_is_marginally_stable_at_the_threshold(settings):
    weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    threshold = stability_threshold(torch.optim.SGD([weight], **settings))
    assert spectral_radius(threshold, settings) == pytest.approx(1.0, abs=1e-9)
    assert spectral_radius(threshold * (1 - 1e-3), settings) < 1.0
    assert spectral_radius(threshold * (1 + 1e-3), settings) > 1.0


def test_closed_forms():
    weights = [torch.nn.Parameter(torch.zeros(1))]
    assert stability_threshold(torch.optim.SGD(weights, lr=0.05)) == pytest.approx(40.0)
    assert stability_threshold(torch.optim.SGD(weights, lr=0.05, momentum=0.9)) == pytest.approx(76.0)
    assert stability_threshold(torch.optim.SGD(weights, lr=0.05, momentum=0.9, nesterov=True)) == pytest.approx(76.0 / 2.8)
    assert math.isnan(stability_threshold(torch.optim.Adam(weights, lr=1e-3)))

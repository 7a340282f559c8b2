"""Seeded float64 models and data for the curvature tests, and dense references built with autograd."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def cnn(batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Conv2d(2, 3, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(3))
    layers += [nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3 * 2 * 2, 3)]
    model = nn.Sequential(*layers).double()
    if batch_norm:  # non-trivial running statistics and affine parameters
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.3, 0.3)
            model[1].running_var.uniform_(0.5, 1.5)
            model[1].weight.uniform_(0.5, 1.5)
            model[1].bias.uniform_(-0.2, 0.2)
    return model


def relu_mlp() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()


def inputs_for(model: nn.Module, count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (count, 2, 4, 4) if isinstance(model[0], nn.Conv2d) else (count, model[0].in_features)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def classification_data(model: nn.Module, sizes: Sequence[int] = (7, 5, 8, 4), seed: int = 0):
    """Batches of unequal sizes, and the concatenated inputs and targets."""
    inputs = inputs_for(model, sum(sizes), seed)
    targets = torch.randint(0, 3, (sum(sizes),), generator=torch.Generator().manual_seed(seed + 1))
    batches, start = [], 0
    for size in sizes:
        batches.append((inputs[start : start + size], targets[start : start + size]))
        start += size
    return batches, inputs, targets


def _functional(model: nn.Module, names: Sequence[str], inputs: torch.Tensor):
    params = dict(model.named_parameters())
    shapes = [params[name].shape for name in names]
    frozen = {name: p.detach() for name, p in params.items() if name not in names}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}

    def outputs_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, [shape.numel() for shape in shapes])
        values = {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return torch.func.functional_call(model, {**frozen, **buffers, **values}, (inputs,))

    flat = torch.cat([params[name].detach().reshape(-1) for name in names])
    return outputs_of, flat


def dense_hessian(model, loss_fn, inputs, targets, names) -> torch.Tensor:
    """``torch.autograd.functional.hessian`` of the loss over the flattened selected parameters (eval mode)."""
    model.eval()
    outputs_of, flat = _functional(model, names, inputs)
    return torch.autograd.functional.hessian(lambda p: loss_fn(outputs_of(p), targets), flat)


def dense_ggn(model, loss_fn, inputs, targets, names) -> torch.Tensor:
    """``J^T H_L J`` built explicitly from the full Jacobian and the dense output Hessian."""
    model.eval()
    outputs_of, flat = _functional(model, names, inputs)
    outputs = outputs_of(flat)
    jacobian = torch.autograd.functional.jacobian(outputs_of, flat).reshape(outputs.numel(), -1)
    output_hessian = torch.autograd.functional.hessian(lambda o: loss_fn(o.view_as(outputs), targets), outputs.detach().reshape(-1))
    return jacobian.T @ output_hessian @ jacobian


def snapshot(model: nn.Module) -> dict:
    """Every parameter, buffer and training flag of ``model``, for bit-for-bit comparison."""
    return {
        "state": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
        "flags": [module.training for module in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["flags"] == before["flags"]
    for name, tensor in before["state"].items():
        assert torch.equal(after["state"][name], tensor), name

"""Optimisers: exact references for K-FAC, SWATS and the Lanczos-Newton steps, training, checkpoints, errors."""

import copy
import inspect
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import curvwidgets as cw
from curvature_cases import dense_ggn, dense_hessian, mlp
from curvwidgets.training import optim

LOSS = nn.CrossEntropyLoss()


def classification_batch(count=64, features=10, classes=3, seed=0, dtype=torch.float32):
    """A fixed, learnable batch: labels of a noisy linear teacher."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(count, features, generator=generator, dtype=torch.float64)
    teacher = torch.randn(features, classes, generator=generator, dtype=torch.float64)
    targets = (inputs @ teacher + 0.3 * torch.randn(count, classes, generator=generator, dtype=torch.float64)).argmax(1)
    return inputs.to(dtype), targets


def small_net(seed=0, batch_norm=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(10, 16)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(inplace=True), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def train_step(model, opt, inputs, targets):
    opt.zero_grad()
    loss = LOSS(model(inputs), targets)
    loss.backward()
    if isinstance(opt, optim.CurvatureOptimizer):
        opt.set_batch(inputs, targets)
    opt.step()
    return loss.item()


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ---- names, create and argument checks ------------------------------------------------------------------


def test_names_and_case_insensitive_create():
    assert optim.names() == ("SGD", "Adam", "AdamW", "SWATS", "KFAC", "LanczosSFN", "LanczosGGN")
    model = small_net()
    sgd = optim.create("sgd", model, lr=0.1)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["lr"] == 0.1
    assert type(optim.create(" AdamW ", model, LOSS, weight_decay=0.01)) is torch.optim.AdamW
    assert isinstance(optim.create("lanczosggn", model, LOSS), optim.CurvatureOptimizer)
    assert not isinstance(optim.create("KFAC", model), optim.CurvatureOptimizer)
    assert optim.create("swats", model).param_groups[0]["lr"] == optim.DEFAULTS["SWATS"]["lr"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown optimiser 'adagrad'.*SGD, Adam, AdamW, SWATS, KFAC, LanczosSFN"):
        optim.create("adagrad", small_net())


@pytest.mark.parametrize("name, kwargs, argument", [
    ("sgd", {"lr": -0.1}, "lr"),
    ("sgd", {"momentum": 1.5}, "momentum"),
    ("sgd", {"nesterov": True, "momentum": 0.0}, "nesterov"),
    ("adam", {"betas": (1.0, 0.9)}, r"betas\[0\]"),
    ("adamw", {"eps": -1.0}, "eps"),
    ("swats", {"switch_tol": -1.0}, "switch_tol"),
    ("swats", {"lr": float("nan")}, "lr"),
    ("kfac", {"damping": 0.0}, "damping"),
    ("kfac", {"inverse_every": 0}, "inverse_every"),
    ("kfac", {"stat_every": 1.5}, "stat_every"),
    ("kfac", {"kl_clip": -1.0}, "kl_clip"),
    ("kfac", {"stat_decay": 1.0}, "stat_decay"),
    ("lanczossfn", {"lanczos_steps": 0}, "lanczos_steps"),
    ("lanczossfn", {"damping": -1.0}, "damping"),
    ("lanczosggn", {"start": "top"}, "start"),
    ("lanczosggn", {"residual": "keep"}, "residual"),
    ("lanczosggn", {"momentum": -0.5}, "momentum"),
])
def test_bad_values_name_the_argument(name, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        optim.create(name, small_net(), LOSS, **kwargs)


def test_unknown_keyword_and_missing_loss_fn():
    with pytest.raises(TypeError, match=r"SGD takes no keyword argument\(s\) \['betas'\].*momentum"):
        optim.create("sgd", small_net(), betas=(0.9, 0.99))
    for name in ("LanczosSFN", "LanczosGGN"):
        with pytest.raises(ValueError, match="needs loss_fn"):
            optim.create(name, small_net())
        with pytest.raises(ValueError, match="needs loss_fn"):
            getattr(optim, name)(small_net(), None)


def test_curvature_optimizer_needs_a_batch_per_step():
    model = small_net()
    inputs, targets = classification_batch()
    opt = optim.LanczosSFN(model, LOSS, lanczos_steps=3)
    LOSS(model(inputs), targets).backward()
    with pytest.raises(RuntimeError, match="set_batch"):
        opt.step()
    opt.set_batch(inputs, targets)
    opt.step()
    with pytest.raises(RuntimeError, match="set_batch"):  # a batch serves one step
        opt.step()
    with pytest.raises(ValueError, match="same number of samples"):
        opt.set_batch(inputs, targets[:-1])
    opt.zero_grad(set_to_none=True)
    opt.set_batch(inputs, targets)
    with pytest.raises(RuntimeError, match="loss.backward"):
        opt.step()


@pytest.mark.parametrize("name", optim.names())
def test_one_set_of_defaults_for_create_train_and_the_command_line(name):
    """``optim.DEFAULTS`` is what create builds, what cw.train records, and what ``train --help`` states."""
    from curvwidgets.cli import build_parser

    model = small_net()
    built = optim.create(name, model, LOSS)
    for key, value in optim.DEFAULTS[name].items():
        assert built.param_groups[0][key] == value, key
    batches = [classification_batch(count=16)]
    history = cw.train(model, (batches, batches), epochs=1, optimizer=name.lower())
    assert history.config["optimizer"] == name
    assert history.config["optimizer_kwargs"] == optim.DEFAULTS[name] == optim.resolve_options(name)
    assert history.rows[0]["lr"] == optim.DEFAULTS[name]["lr"]  # one epoch of the linear schedule: the initial rate
    if hasattr(optim, name):  # curvwidgets' own classes: their signature agrees with the registry
        assert inspect.signature(getattr(optim, name)).parameters["lr"].default == optim.DEFAULTS[name]["lr"]
    train_verb = build_parser()._subparsers._group_actions[0].choices["train"]
    lr_help = next(action.help for action in train_verb._actions if "--lr" in action.option_strings)
    assert f"{name} {optim.DEFAULTS[name]['lr']:g}" in lr_help


def test_sgd_defaults_are_the_papers_and_explicit_options_replace_them():
    sgd = optim.create("SGD", small_net())
    assert {key: sgd.param_groups[0][key] for key in ("lr", "momentum", "weight_decay")} == \
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    plain = optim.create("SGD", small_net(), lr=0.1, momentum=0.0, weight_decay=0.0)
    assert {key: plain.param_groups[0][key] for key in ("lr", "momentum", "weight_decay")} == \
        {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}


# ---- K-FAC against explicit factors ------------------------------------------------------------------


def kfac_reference_direction(A, G, gradient, damping, pi_damping):
    """``(G + sqrt(damping)/pi I)^-1 gradient (A + pi sqrt(damping) I)^-1``, densely."""
    pi = math.sqrt((torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0])) if pi_damping else 1.0
    root = math.sqrt(damping)
    left = G + root / pi * torch.eye(G.shape[0], dtype=G.dtype)
    right = A + pi * root * torch.eye(A.shape[0], dtype=A.dtype)
    return torch.linalg.solve(left, gradient) @ torch.linalg.inv(right)


@pytest.mark.parametrize("pi_damping", [True, False])
def test_kfac_linear_factors_and_step_match_dense_formulas(pi_damping):
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    inputs = torch.randn(10, 4, dtype=torch.float64)
    targets = torch.randint(0, 3, (10,))
    damping, lr = 0.05, 0.1
    opt = optim.KFAC(model, lr=lr, momentum=0.0, damping=damping, kl_clip=None, pi_damping=pi_damping)
    outputs = model(inputs)
    loss = LOSS(outputs, targets)
    (output_gradient,) = torch.autograd.grad(loss, outputs, retain_graph=True)
    loss.backward()
    before = torch.cat([model.weight.detach(), model.bias.detach()[:, None]], dim=1).clone()
    gradient = torch.cat([model.weight.grad, model.bias.grad[:, None]], dim=1).clone()
    opt.step()

    activations = torch.cat([inputs, torch.ones(10, 1, dtype=torch.float64)], dim=1)  # a with the bias column
    per_sample = 10 * output_gradient  # gradients of each sample's own loss
    A = activations.T @ activations / 10
    G = per_sample.T @ per_sample / 10
    state = opt.state[model.weight]
    torch.testing.assert_close(state["A"], A, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(state["G"], G, rtol=1e-12, atol=1e-14)
    after = torch.cat([model.weight.detach(), model.bias.detach()[:, None]], dim=1)
    expected = kfac_reference_direction(A, G, gradient, damping, pi_damping)
    torch.testing.assert_close((before - after) / lr, expected, rtol=1e-9, atol=1e-12)


def explicit_patches(inputs, conv):
    """Rows ``[patch, 1]`` of every sample and output position, by loops over the positions."""
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    p_h, p_w = conv.padding
    padded = F.pad(inputs, (p_w, p_w, p_h, p_h), mode=mode)
    (k_h, k_w), (s_h, s_w) = conv.kernel_size, conv.stride
    rows = []
    for n in range(inputs.shape[0]):
        for i in range(0, padded.shape[2] - k_h + 1, s_h):
            for j in range(0, padded.shape[3] - k_w + 1, s_w):
                patch = padded[n, :, i : i + k_h, j : j + k_w].reshape(-1)
                rows.append(torch.cat([patch, torch.ones(1, dtype=inputs.dtype)]))
    return torch.stack(rows)


@pytest.mark.parametrize("stride, padding_mode", [(1, "zeros"), (2, "reflect")])
def test_kfac_conv_factors_are_the_kfc_approximation(stride, padding_mode):
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=1, padding_mode=padding_mode)
    head_inputs = 3 * (4 // stride) ** 2
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(head_inputs, 3)).double()
    inputs = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    targets = torch.randint(0, 3, (5,))
    opt = optim.KFAC(model, lr=0.1, kl_clip=None)
    conv_out = model[0](inputs)
    loss = LOSS(model[1:](conv_out), targets)
    (output_gradient,) = torch.autograd.grad(loss, conv_out)
    opt.zero_grad()
    LOSS(model(inputs), targets).backward()
    opt.step()

    rows = explicit_patches(inputs, conv)  # (N T, C k_h k_w + 1)
    per_sample = (5 * output_gradient).permute(0, 2, 3, 1).reshape(-1, 3)  # (N T, d_out)
    A = rows.T @ rows / 5  # summed over positions, averaged over samples
    G = per_sample.T @ per_sample / per_sample.shape[0]  # averaged over positions and samples
    torch.testing.assert_close(opt.state[conv.weight]["A"], A, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(opt.state[conv.weight]["G"], G, rtol=1e-12, atol=1e-13)
    assert opt.state[model[3].weight]["A"].shape == (head_inputs + 1, head_inputs + 1)


def test_kfac_running_averages_schedules_and_ignored_passes():
    model = small_net(batch_norm=True).double()
    inputs, targets = classification_batch(dtype=torch.float64)
    opt = optim.KFAC(model, lr=0.01, stat_decay=0.5, stat_every=2, inverse_every=3, kl_clip=1e-2)
    weight = model[0].weight
    seen = []
    for _ in range(6):
        opt.zero_grad()
        LOSS(model(inputs), targets).backward()
        # neither an evaluation pass, a no-grad pass nor a curvature operator records statistics
        model.eval()
        model(inputs)
        model.train()
        with torch.no_grad():
            model(inputs)
        hessian = cw.Hessian(model, LOSS, [(inputs, targets)], bn_mode="train")
        hessian @ torch.ones(hessian.dim, dtype=torch.float64)
        opt.step()
        state = opt.state[weight]
        seen.append((state["factor_updates"], state["QG"].clone()))
    assert [updates for updates, _ in seen] == [1, 1, 2, 2, 3, 3]  # statistics at steps 0, 2, 4
    assert torch.equal(seen[0][1], seen[1][1]) and torch.equal(seen[1][1], seen[2][1])  # refreshed at 0, 3
    assert not torch.equal(seen[2][1], seen[3][1]) and torch.equal(seen[3][1], seen[5][1])
    # the running average over batches, with weight eps_k = min(1 - 1/k, stat_decay) at the k-th update
    fresh = small_net(batch_norm=True).double()
    opt = optim.KFAC(fresh, stat_decay=0.5, kl_clip=None)
    factors = []
    for seed in (1, 2, 3):
        batch_inputs, batch_targets = classification_batch(seed=seed, dtype=torch.float64)
        rows = torch.cat([batch_inputs, torch.ones(len(batch_inputs), 1, dtype=torch.float64)], dim=1)
        factors.append(rows.T @ rows / len(rows))
        train_step(fresh, opt, batch_inputs, batch_targets)
    expected = 0.5 * (0.5 * factors[0] + 0.5 * factors[1]) + 0.5 * factors[2]  # eps_2 = 1/2, eps_3 = min(2/3, 1/2)
    torch.testing.assert_close(opt.state[fresh[0].weight]["A"], expected, rtol=1e-12, atol=1e-13)


# ---- Lanczos-Newton steps against the dense eigendecomposition ------------------------------------------------


@pytest.mark.parametrize("kind", ["LanczosSFN", "LanczosGGN"])
@pytest.mark.parametrize("start, weight_decay", [("random", 0.0), ("gradient", 0.01)])
def test_lanczos_newton_step_in_the_full_krylov_space_is_the_dense_formula(kind, start, weight_decay):
    model = mlp()  # float64, P = 57
    inputs = torch.randn(12, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    targets = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(4))
    names = [name for name, _ in model.named_parameters()]
    dense = (dense_hessian if kind == "LanczosSFN" else dense_ggn)(model, LOSS, inputs, targets, names)
    model.train()
    lr, damping = 0.5, 0.01
    opt = getattr(optim, kind)(model, LOSS, lr=lr, lanczos_steps=200, damping=damping, weight_decay=weight_decay,
                               start=start, residual="drop")
    before = flat_params(model)
    opt.zero_grad()
    LOSS(model(inputs), targets).backward()
    gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters()]) + weight_decay * before
    opt.set_batch(inputs, targets)
    opt.step()

    values, vectors = torch.linalg.eigh(dense)
    if kind == "LanczosSFN":
        curvature = (values + weight_decay).abs() + damping
    else:
        curvature = values.clamp_min(0) + weight_decay + damping
    expected = -lr * vectors @ ((vectors.T @ gradient) / curvature)
    step = flat_params(model) - before
    torch.testing.assert_close(step, expected, rtol=0, atol=1e-7 * expected.abs().max())
    assert opt.ritz_values.shape[0] <= 57


def test_lanczos_newton_residual_options():
    inputs, targets = classification_batch(dtype=torch.float64)
    steps = {}
    for residual in ("drop", "gradient", "damping"):
        model = small_net().double()
        opt = optim.LanczosSFN(model, LOSS, lr=0.5, lanczos_steps=4, damping=0.2, start="random", residual=residual,
                               backend="double-backward")
        before = flat_params(model)
        train_step(model, opt, inputs, targets)
        steps[residual] = flat_params(model) - before
    gradient_part = steps["gradient"] - steps["drop"]  # -lr r, r the part of g outside the Krylov space
    assert gradient_part.norm() > 1e-3 * steps["drop"].norm()
    torch.testing.assert_close(steps["damping"] - steps["drop"], gradient_part / 0.2, rtol=1e-9, atol=1e-12)
    # the residual is orthogonal to the step taken inside the Krylov space (which lies in it)
    assert abs(torch.dot(gradient_part, steps["drop"])) < 1e-9 * gradient_part.norm() * steps["drop"].norm()


def kfac_reference_run(model, batches, lr, momentum, weight_decay, damping, stat_decay, inverse_every, kl_clip):
    """Parameters after each K-FAC step of Martens & Grosse (2015), written densely, and the KL scales ``nu``.

    For every Linear layer (bias appended): running factors ``A`` (inputs)
    and ``G`` (per-sample output gradients ``N dL/ds``) with weight
    ``min(1 - 1/k, stat_decay)``; every ``inverse_every`` steps the damped
    inverses ``(G + sqrt(damping)/pi I)^-1`` and ``(A + pi sqrt(damping) I)^-1``,
    ``pi^2 = (tr A / dim A) / (tr G / dim G)``; the step ``Delta = G_inv Gbar
    A_inv``; ``nu = min(1, sqrt(kl_clip / (lr^2 sum <Delta, Gbar>)))``;
    ``v <- momentum v + nu Delta + weight_decay theta``; ``theta <- theta - lr v``.
    """
    model = copy.deepcopy(model)
    layers = [module for module in model if isinstance(module, nn.Linear)]
    params = list(model.parameters())
    factors = [{} for _ in layers]
    velocity, trajectory, scales = {}, [], []
    for step, (inputs, targets) in enumerate(batches):
        count = len(inputs)
        seen = []
        hooks = [layer.register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
                 for layer in layers]
        loss = LOSS(model(inputs), targets)
        for hook in hooks:
            hook.remove()
        output_gradients = torch.autograd.grad(loss, [output for _, output in seen], retain_graph=True)
        gradients = dict(zip(params, torch.autograd.grad(loss, params)))
        directions, inner = [], 0.0
        for layer, state, (layer_inputs, _), output_gradient in zip(layers, factors, seen, output_gradients):
            rows = torch.cat([layer_inputs.detach(), torch.ones(count, 1, dtype=torch.float64)], dim=1)
            per_sample = count * output_gradient
            batch_a, batch_g = rows.T @ rows / count, per_sample.T @ per_sample / count
            state["updates"] = state.get("updates", 0) + 1
            weight = min(1 - 1 / state["updates"], stat_decay)
            state["A"] = batch_a if "A" not in state else weight * state["A"] + (1 - weight) * batch_a
            state["G"] = batch_g if "G" not in state else weight * state["G"] + (1 - weight) * batch_g
            if step % inverse_every == 0:
                A, G = state["A"], state["G"]
                pi = math.sqrt((torch.trace(A) / len(A)) / (torch.trace(G) / len(G)))
                root = math.sqrt(damping)
                state["G_inv"] = torch.linalg.inv(G + root / pi * torch.eye(len(G), dtype=torch.float64))
                state["A_inv"] = torch.linalg.inv(A + pi * root * torch.eye(len(A), dtype=torch.float64))
            layer_gradient = torch.cat([gradients[layer.weight], gradients[layer.bias][:, None]], dim=1)
            directions.append(state["G_inv"] @ layer_gradient @ state["A_inv"])
            inner += float((directions[-1] * layer_gradient).sum())
        nu = min(1.0, math.sqrt(kl_clip / (lr**2 * inner)))
        scales.append(nu)
        updates = {}
        for layer, direction in zip(layers, directions):
            updates[layer.weight], updates[layer.bias] = nu * direction[:, :-1], nu * direction[:, -1]
        with torch.no_grad():
            for param in params:
                update = updates[param] + weight_decay * param
                velocity[param] = update if param not in velocity else momentum * velocity[param] + update
                param -= lr * velocity[param]
        trajectory.append(flat_params(model).clone())
    return trajectory, scales


def test_kfac_full_update_with_momentum_weight_decay_and_kl_clip_is_the_dense_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(12, 5, generator=generator, dtype=torch.float64),
                torch.randint(0, 3, (12,), generator=generator)) for _ in range(5)]
    settings = dict(lr=0.3, momentum=0.9, weight_decay=0.01, damping=0.05, stat_decay=0.9, inverse_every=2,
                    kl_clip=0.015)
    expected, scales = kfac_reference_run(model, batches, **settings)
    assert min(scales) < 0.6 and max(scales) == 1.0  # the clip binds at some steps and not at others

    trained = copy.deepcopy(model)
    opt = optim.KFAC(trained, **settings)
    steps = []
    for inputs, targets in batches:
        train_step(trained, opt, inputs, targets)
        steps.append(flat_params(trained).clone())
    for step, (got, want) in enumerate(zip(steps, expected)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13, msg=f"step {step + 1}")
    # the comparison tells a wrong kl_clip or a wrong weight decay apart by far more than its tolerance
    for wrong in ({"kl_clip": 0.03}, {"weight_decay": 0.02}, {"momentum": 0.8}):
        other, _ = kfac_reference_run(model, batches, **{**settings, **wrong})
        assert (other[-1] - steps[-1]).abs().max() > 1e-4, wrong


# ---- SWATS -------------------------------------------------------------------------------------------------


def swats_problem():
    model = small_net(seed=2).double()
    batches = [classification_batch(seed=seed, dtype=torch.float64) for seed in range(8)]
    return model, batches


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_swats_before_the_switch_is_adam(weight_decay):
    model, batches = swats_problem()
    twin = copy.deepcopy(model)
    swats = optim.SWATS(model.parameters(), lr=1e-2, weight_decay=weight_decay, switch_tol=0.0)
    adam = torch.optim.Adam(twin.parameters(), lr=1e-2, weight_decay=weight_decay, foreach=False)
    for inputs, targets in batches:
        train_step(model, swats, inputs, targets)
        train_step(twin, adam, inputs, targets)
        torch.testing.assert_close(flat_params(model), flat_params(twin), rtol=0, atol=1e-12)
    assert not swats.switched and swats.param_groups[0]["phase"] == "adam"


def test_swats_after_the_switch_is_sgd_with_the_learned_rate():
    model, batches = swats_problem()
    beta1, beta2 = 0.9, 0.999
    opt = optim.SWATS(model.parameters(), lr=1e-2, betas=(beta1, beta2), switch_tol=math.inf)  # switches at step 2
    gammas = []
    for inputs, targets in batches[:2]:
        before = flat_params(model)
        train_step(model, opt, inputs, targets)
        gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        projected = flat_params(model) - before  # the Adam step p_k
        gammas.append((projected @ projected / -(projected @ gradient)).item())
    averaged = beta2 * (1 - beta2) * gammas[0] + (1 - beta2) * gammas[1]
    learned = averaged / (1 - beta2**2)
    group = opt.param_groups[0]
    assert opt.switched and group["switch_step"] == 2
    assert group["sgd_lr"] == pytest.approx(learned, rel=1e-12) and learned > 0
    velocity = torch.zeros_like(flat_params(model))
    for index, (inputs, targets) in enumerate(batches[2:6]):
        if index == 2:
            group["lr"] = 5e-3  # a schedule halves Adam's rate: the SGD rate follows
        rate = learned * group["lr"] / 1e-2
        before = flat_params(model)
        train_step(model, opt, inputs, targets)
        gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        velocity = beta1 * velocity + gradient
        torch.testing.assert_close(flat_params(model), before - (1 - beta1) * rate * velocity, rtol=0, atol=1e-12)


# ---- every optimiser trains, and checkpoints resume exactly ---------------------------------------------------


@pytest.mark.parametrize("name, kwargs", [
    ("KFAC", {}),
    ("SWATS", {"lr": 1e-2}),
    ("LanczosSFN", {}),
    ("LanczosGGN", {}),
])
def test_optimisers_lower_the_training_loss(name, kwargs):
    model = small_net(batch_norm=True)
    inputs, targets = classification_batch(count=128)
    opt = optim.create(name, model, LOSS, **kwargs)
    first = train_step(model, opt, inputs, targets)
    for _ in range(24):
        train_step(model, opt, inputs, targets)
    model.eval()
    with torch.no_grad():
        final = LOSS(model(inputs), targets).item()
    assert final < 0.7 * first, (first, final)


CHECKPOINT_CASES = {
    "SWATS": ("swats", {"switch_tol": math.inf}),  # resumes in the SGD phase
    "KFAC": ("kfac", {"inverse_every": 3, "stat_every": 2}),
    "LanczosSFN": ("lanczossfn", {"momentum": 0.5, "start": "random", "lanczos_steps": 5, "backend": "double-backward"}),
    "LanczosGGN": ("lanczosggn", {"weight_decay": 1e-3, "momentum": 0.9, "lanczos_steps": 5, "backend": "double-backward"}),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_state_dict_round_trip_gives_identical_steps(case):
    name, kwargs = CHECKPOINT_CASES[case]
    batches = [classification_batch(seed=seed) for seed in range(6)]
    model = small_net(batch_norm=True)
    opt = optim.create(name, model, LOSS, **kwargs)
    for inputs, targets in batches[:3]:
        train_step(model, opt, inputs, targets)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed = small_net(seed=7, batch_norm=True)
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt = optim.create(name, resumed, LOSS, **kwargs)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    for inputs, targets in batches[3:]:
        train_step(model, opt, inputs, targets)
        train_step(resumed, resumed_opt, inputs, targets)
        assert torch.equal(flat_params(model), flat_params(resumed))

"""cw.landscape: the loss along eigenvectors against the Taylor expansion, batched points, BatchNorm, exact restore.

References: the loss computed by copying the model and writing ``w + t v``
into it, dense autograd Hessians and third derivatives (``torch.func``),
``torch.optim.swa_utils.update_bn``, and closed forms on a quadratic loss.
"""

import copy
import math
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import curvwidgets as cw
from curvwidgets.landscape import eigen_directions, loss_landscape, random_directions

EPS32 = 2.0 ** -24  # unit roundoff of float32


# ---- models, data and references --------------------------------------------------------------------------

def tiny_mlp(dtype=torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cw.models.MLP(num_classes=3, input_shape=(5,), hidden=(4,)).to(dtype)


def smooth_mlp(seed: int = 0) -> nn.Module:
    """tanh instead of ReLU: the Taylor remainder bound needs a loss with a third derivative everywhere."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def bn_mlp(seed: int = 0, dropout: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 6), nn.BatchNorm1d(6, momentum=0.3), nn.ReLU()]
    layers += [nn.Dropout(0.2)] if dropout else []
    model = nn.Sequential(*layers, nn.Linear(6, 3)).double()
    with torch.no_grad():  # running statistics far from those of any weights nearby
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.3, 2.0)
        model[1].num_batches_tracked.fill_(17)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.3, 0.3)
    return model


def batches(dtype=torch.float64, sizes=(16, 16, 11), seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for size in sizes:
        inputs = torch.randn(size, 5, generator=generator, dtype=torch.float64).to(dtype)
        out.append((inputs, torch.randint(0, 3, (size,), generator=generator)))
    return out


def concatenated(data):
    return torch.cat([x for x, _ in data]), torch.cat([y for _, y in data])


def flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def loss_and_accuracy_at(model, data, vector, t, loss_fn=None):
    """The plain loop: a copy of the model holding ``w + t v``, in eval mode, mean loss and accuracy over ``data``."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    moved = copy.deepcopy(model).eval()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat_parameters(model) + t * vector.to(flat_parameters(model).dtype),
                                            moved.parameters())
        total, correct, count = 0.0, 0, 0
        for inputs, targets in data:
            outputs = moved(inputs)
            total += float(loss_fn(outputs, targets)) * len(targets)
            correct += int((outputs.argmax(-1) == targets).sum())
            count += len(targets)
    return total / count, correct / count


def functional_loss(model, data):
    """``f(flat parameters)``: the mean cross-entropy over all of ``data`` (what the Hessian and the landscape see)."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    inputs, targets = concatenated(data)

    def f(flat):
        pieces = torch.split(flat, [s.numel() for s in shapes])
        state = {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, state, (inputs,)), targets)

    return f


def snapshot(model: nn.Module) -> dict:
    return {"state": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
            "flags": [module.training for module in model.modules()],
            "momenta": [getattr(module, "momentum", None) for module in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "ids": [id(p) for p in model.parameters()]}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["flags"] == before["flags"]
    assert after["momenta"] == before["momenta"]
    assert after["requires_grad"] == before["requires_grad"] and after["ids"] == before["ids"]
    assert sorted(after["state"]) == sorted(before["state"])
    for name, tensor in before["state"].items():
        assert after["state"][name].dtype == tensor.dtype
        assert torch.equal(after["state"][name], tensor), name
    assert all(p.grad is None for p in model.parameters())


# ---- the Taylor expansion along eigenvectors -----------------------------------------------------------------

@pytest.fixture(scope="module")
def smooth_problem():
    model, data = smooth_mlp(), batches()
    dim = sum(p.numel() for p in model.parameters())
    spectrum = cw.spectrum(model, data, "hessian", steps=dim, save_vectors=True, bn_mode="eval",
                           backend="double-backward")
    return model, data, spectrum


def test_spectrum_of_the_tiny_model_is_the_dense_hessian(smooth_problem):
    model, data, spectrum = smooth_problem
    f = functional_loss(model, data)
    hessian = torch.func.hessian(f)(flat_parameters(model))
    eigenvalues = torch.linalg.eigvalsh(hessian).numpy()
    assert spectrum.lanczos.num_steps[0] >= 10
    extremes = spectrum.extremes()[0]
    assert extremes[0] == pytest.approx(eigenvalues[-1], rel=1e-8)
    assert extremes[1] == pytest.approx(eigenvalues[0], abs=1e-8 * abs(eigenvalues[-1]))


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_loss_along_an_eigenvector_matches_the_taylor_expansion(smooth_problem, which):
    model, data, spectrum = smooth_problem
    direction = eigen_directions(spectrum, largest=int(which == "largest"), smallest=int(which == "smallest"))[0]
    theta = direction.curvature
    index = int(np.nanargmin(np.abs(spectrum.ritz_values[0] - theta)))
    residual = float(spectrum.residual_estimates[0, index])
    assert residual < 1e-6 * np.nanmax(np.abs(spectrum.ritz_values))  # a converged Ritz pair

    dist, n_points = 0.06, 7
    landscape = loss_landscape(model, data, [direction], dist=dist, n_points=n_points, points_per_pass=1)
    t = landscape.offsets
    assert t[landscape.centre] == 0.0 and landscape.curvatures[0] == theta

    v = direction.vector.to(torch.float64)  # the stored float32 vector, as the landscape walks it
    f = functional_loss(model, data)
    w = flat_parameters(model)
    slope = float(torch.func.grad(f)(w) @ v)
    loss_0 = float(f(w))
    expected = loss_0 + t * slope + 0.5 * theta * t ** 2

    # tolerance: the Lagrange remainder |t|^3 / 6 max|phi'''| on [-dist, dist] (phi(s) = f(w + s v), third
    # derivative by autograd on a fine grid, with a margin for the points between), plus t^2 / 2 times what
    # separates v^T H v from theta: the residual estimate and the float32 rounding of v, plus evaluation rounding
    phi = lambda s: f(w + s * v)  # noqa: E731
    third = torch.func.grad(torch.func.grad(torch.func.grad(phi)))
    grid = torch.linspace(-dist, dist, 25, dtype=torch.float64)
    max_third = max(abs(float(third(s))) for s in grid)
    norm_h = float(np.nanmax(np.abs(spectrum.ritz_values)))
    curvature_error = residual * (1 + 4 * EPS32) + 4 * EPS32 * abs(theta) + 2 * EPS32 ** 2 * norm_h
    tolerance = np.abs(t) ** 3 / 6 * max_third * 1.5 + t ** 2 / 2 * curvature_error + 1e-13
    measured = landscape["train_loss"][0]
    assert np.all(np.abs(measured - expected) <= tolerance), (measured - expected, tolerance)
    # the check has teeth: the curvature term is far above the tolerance at the ends
    assert 0.5 * abs(theta) * dist ** 2 > 20 * tolerance[-1]
    # and a curvature off by 10% would not pass
    wrong = loss_0 + t * slope + 0.5 * 1.1 * theta * t ** 2
    assert not np.all(np.abs(measured - wrong) <= tolerance)
    # the second difference at t = 0 tends to theta
    h = t[1] - t[0]
    assert landscape.curvature_at_zero()[0] == pytest.approx(theta, abs=h ** 2 / 12 * 1.5 * 4 * max(max_third, 1)
                                                              + curvature_error + 1e-8)


def test_landscape_values_equal_the_plain_loop():
    model, train, test = tiny_mlp(), batches(), batches(sizes=(9, 8), seed=5)
    directions = random_directions(model, 2, seed=3)
    landscape = loss_landscape(model, (train, test), directions, dist=0.8, n_points=5, points_per_pass=3)
    assert landscape.kind == "line" and landscape["train_loss"].shape == (2, 5)
    assert sorted(landscape.values) == ["test_accuracy", "test_loss", "train_accuracy", "train_loss"]
    for d, direction in enumerate(directions):
        for i, t in enumerate(landscape.offsets):
            for split, data in (("train", train), ("test", test)):
                loss, accuracy = loss_and_accuracy_at(model, data, direction.vector, t)
                assert landscape[f"{split}_loss"][d, i] == pytest.approx(loss, rel=1e-12)
                assert landscape[f"{split}_accuracy"][d, i] == accuracy
    assert landscape.labels == ("random 1", "random 2") and np.isnan(landscape.curvatures).all()
    np.testing.assert_array_equal(landscape.offsets, np.linspace(-0.8, 0.8, 5))
    assert landscape.meta["dist"] == 0.8 and landscape.meta["n_points"] == 5 and landscape.meta["bn"] == "keep"


def test_a_sum_reduced_loss_gives_the_sum_over_the_split():
    model, data = tiny_mlp(), batches()
    directions = random_directions(model, 1, seed=1)
    mean = loss_landscape(model, data, directions, dist=0.5, n_points=3, points_per_pass=1)
    summed = loss_landscape(model, data, directions, dist=0.5, n_points=3, points_per_pass=1,
                            loss_fn=nn.CrossEntropyLoss(reduction="sum"))
    samples = sum(len(targets) for _, targets in data)
    np.testing.assert_allclose(summed["train_loss"], samples * mean["train_loss"], rtol=1e-13)
    np.testing.assert_array_equal(summed["train_accuracy"], mean["train_accuracy"])


def test_several_points_per_pass_equal_one_at_a_time_to_float32_rounding():
    model, data = tiny_mlp(torch.float32, seed=4), batches(torch.float32)
    directions = random_directions(model, 2, seed=2)
    assert directions[0].vector.dtype == torch.float32
    together = loss_landscape(model, data, directions, dist=1.0, n_points=7, points_per_pass=4)
    alone = loss_landscape(model, data, directions, dist=1.0, n_points=7, points_per_pass=1)
    assert together.meta["points_per_pass"] == 4 and alone.meta["points_per_pass"] == 1
    assert together.done.all() and alone.done.all()  # 14 points: three passes of 4 and one of 2
    # float32 logits, float64 sums: a few units of float32 roundoff
    np.testing.assert_allclose(together["train_loss"], alone["train_loss"], rtol=16 * EPS32 * 2, atol=0)
    np.testing.assert_array_equal(together["train_accuracy"], alone["train_accuracy"])
    # and the automatic choice gives the same numbers whichever it picks
    auto = loss_landscape(model, data, directions, dist=1.0, n_points=7)
    assert auto.meta["points_per_pass"] in (1, 8)
    np.testing.assert_allclose(auto["train_loss"], alone["train_loss"], rtol=32 * EPS32, atol=0)


def run_pieces(planner, samples, seconds_per_point_sample):
    """Feed ``planner`` a stream of ``samples`` samples on a fake clock; the pieces ``(samples, points per pass)``.

    As ``loss_landscape`` does: a piece of ``s`` samples in passes of ``k`` points over the planner's
    ``first_points`` points takes ``first_points / k`` passes of ``k s rate(k, s)`` seconds each (a short last
    piece at the rate of its size).
    """
    cut, clock = [], [0.0]
    original = time.perf_counter
    time.perf_counter = lambda: clock[0]
    try:
        while samples:
            k, size = planner.next_shape()
            take = samples if size is None else min(size, samples)
            planner.start_piece((k, size))
            for _ in range(0, planner.first_points, k):
                with planner.timed_pass():
                    clock[0] += k * take * seconds_per_point_sample(k, take)
            planner.end_piece(take)
            cut.append((take, k))
            samples -= take
    finally:
        time.perf_counter = original
    return cut


# per point and sample: a CNN fastest in small pieces one point at a time; an MLP fastest with 8 points together
CNN_LIKE = {(1, 32): 1.0, (1, 128): 1.6, (1, 512): 2.0, (8, 16): 1.8, (8, 64): 3.0}
MLP_LIKE = {(1, 32): 2.0, (1, 128): 1.3, (1, 512): 1.1, (8, 16): 1.2, (8, 64): 0.9}


def test_the_candidates_are_timed_on_the_sweeps_own_pieces():
    from curvwidgets._landscape_passes import PassPlanner

    planner = PassPlanner(None, None, 8)
    # several points not on fewer than 8 samples: no (8, 4)
    assert planner.candidates() == [(1, 32), (1, 128), (8, 16), (1, 512), (8, 64)]
    assert PassPlanner(None, None, 3).candidates() == [(1, 32), (3, 10), (1, 128), (3, 42), (1, 512), (3, 170)]
    cut = run_pieces(planner, 2560, lambda k, s: MLP_LIKE[(k, s)] if (k, s) in MLP_LIKE else 9.0)
    # one point at a time: one piece of 8 passes (their median leaves a slow first one out); 8 points together: a
    # warm-up, then three pieces of one pass each; then the rest at the fastest, (8, 64)
    assert cut == [(32, 1), (128, 1)] + [(16, 8)] * 4 + [(512, 1)] + [(64, 8)] * 28 + [(32, 8)]
    assert not planner.exploring and planner.chosen == (8, 64)
    assert planner.seconds == pytest.approx(MLP_LIKE, rel=1e-12)
    # what exploring cost: each candidate piece's time beyond the chosen rate for the same work
    pieces = {1: 1, 8: 4}
    excess = sum(pieces[k] * 8 * s * (rate - 0.9) for (k, s), rate in MLP_LIKE.items())
    assert planner.cost == pytest.approx(excess, rel=1e-12)
    assert planner.timing()["seconds_per_point_sample"]["8 x 64"] == pytest.approx(0.9, rel=1e-12)


def test_a_candidate_slower_than_the_smaller_one_before_it_leaves_out_the_larger():
    from curvwidgets._landscape_passes import SLOWER, PassPlanner

    planner = PassPlanner(None, None, 8)
    cut = run_pieces(planner, 1024, lambda k, s: CNN_LIKE[(k, s)] if (k, s) in CNN_LIKE else 9.0)
    # (1, 128) is slower than (1, 32): (1, 512) is not tried. (8, 16) is over SLOWER times (1, 32) at its first
    # timed pass: timed no further, and (8, 64) is not tried
    assert CNN_LIKE[(8, 16)] > SLOWER * CNN_LIKE[(1, 32)]
    assert cut == [(32, 1), (128, 1), (16, 8), (16, 8)] + [(32, 1)] * 26
    assert planner.seconds == pytest.approx({shape: CNN_LIKE[shape] for shape in [(1, 32), (1, 128), (8, 16)]})
    assert planner.chosen == (1, 32) and not planner.exploring
    # within SLOWER of the fastest, a line goes on to its larger pieces
    close = {**CNN_LIKE, (8, 16): 1.4}
    planner = PassPlanner(None, None, 8)
    assert run_pieces(planner, 1024, lambda k, s: close[(k, s)])[:8] == [(32, 1), (128, 1)] + [(16, 8)] * 4 \
        + [(64, 8)] * 2
    assert set(planner.seconds) == {(1, 32), (1, 128), (8, 16), (8, 64)} and planner.chosen == (1, 32)


def test_a_larger_piece_under_10_percent_faster_ends_its_line():
    from curvwidgets._landscape_passes import LARGER_GAIN, PassPlanner

    planner = PassPlanner(1, None, 1)  # one point given: pieces of one pass, so a warm-up and three timed each
    rates = {(1, 32): 1.0, (1, 128): 0.95, (1, 512): 0.5}
    assert rates[(1, 128)] > LARGER_GAIN * rates[(1, 32)]
    cut = run_pieces(planner, 1024, lambda k, s: rates[(k, s)])
    assert cut == [(32, 1)] * 4 + [(128, 1)] * 7 and set(planner.seconds) == {(1, 32), (1, 128)}
    assert planner.chosen == (1, 128)  # (1, 512) never tried


def test_data_that_ends_while_exploring_keeps_the_fastest_timed_and_a_short_piece_is_not_timed():
    from curvwidgets._landscape_passes import PassPlanner

    planner = PassPlanner(None, None, 8)
    # 130 samples: (1, 32) timed, then the 98 left, short of (1, 128), not timed
    assert run_pieces(planner, 130, lambda k, s: MLP_LIKE.get((k, s), 5.0)) == [(32, 1), (98, 1)]
    assert planner.exploring and set(planner.seconds) == {(1, 32)}
    planner.settle()  # the sweep ended: the fastest timed is kept
    assert not planner.exploring and planner.chosen == (1, 32)


def test_a_given_shape_is_kept_and_only_what_is_not_given_is_timed():
    from curvwidgets._landscape_passes import PassPlanner

    points_given = PassPlanner(8, None, 8)
    assert points_given.candidates() == [(8, 16), (8, 64)]
    assert run_pieces(points_given, 2048, lambda k, s: CNN_LIKE[(k, s)]) == [(16, 8)] * 4 + [(64, 8)] * 2 \
        + [(16, 8)] * 116
    assert points_given.chosen == (8, 16)
    samples_given = PassPlanner(None, 1000, 8)
    assert samples_given.candidates() == [(1, 1000), (8, 1000)]
    assert run_pieces(samples_given, 5000, lambda k, s: 1.0 if k == 1 else 0.5) == [(1000, 1)] + [(1000, 8)] * 4
    assert samples_given.chosen == (8, 1000)
    for fixed in (PassPlanner(3, 7, 3), PassPlanner(None, None, 8, timed=False)):
        assert not fixed.exploring
        assert run_pieces(fixed, 20, lambda k, s: 1.0) == ([(7, 3), (7, 3), (6, 3)] if fixed.points else [(20, 1)])
        assert fixed.seconds == {} and fixed.cost == 0.0


class ClassesLast(nn.Module):
    """``(b, T, C)`` logits from a ``(b, C, T)`` network: the classes where ``SequenceCrossEntropyLoss`` reads them."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network(x).transpose(1, 2)


@pytest.mark.parametrize("loss, ignored", [("cross_entropy", False), ("cross_entropy", True), ("sequence", True)])
def test_the_accuracy_of_sequence_outputs_is_per_counted_token_with_classes_where_the_loss_reads_them(loss, ignored):
    """``nn.CrossEntropyLoss`` reads classes on axis 1 of ``(b, C, T)`` outputs, ``SequenceCrossEntropyLoss`` on the
    last of ``(b, T, C)``; ignored positions do not count."""
    torch.manual_seed(5)
    network = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv1d(4, 3, 1)).double()  # (b, 3, 5)
    model, loss_fn, axis = (network, nn.CrossEntropyLoss(), 1) if loss == "cross_entropy" else \
        (ClassesLast(network), cw.SequenceCrossEntropyLoss(), -1)
    generator = torch.Generator().manual_seed(6)
    inputs = torch.randn(12, 2, 5, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (12, 5), generator=generator)
    if ignored:
        targets[[0, 0, 3, 7], [1, 4, 0, 2]] = -100
    data = [(inputs[:7], targets[:7]), (inputs[7:], targets[7:])]
    direction = random_directions(model, 1, seed=1)[0]
    walk = loss_landscape(model, data, [direction], dist=0.5, n_points=3, samples_per_pass=4, loss_fn=loss_fn)
    flat = flat_parameters(model)
    for index, t in enumerate((-0.5, 0.0, 0.5)):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(flat + t * direction.vector, moved.parameters())
            outputs = moved(inputs)
        counted = targets != -100
        expected = ((outputs.argmax(axis) == targets) & counted).sum().item() / counted.sum().item()
        assert walk["train_accuracy"][0, index] == pytest.approx(expected, rel=1e-12)
        assert walk["train_loss"][0, index] == pytest.approx(float(loss_fn(outputs, targets)), rel=1e-12)


class FeaturesFirst(nn.Module):
    """Takes inputs of shape ``(features, batch)``: the samples are not in dimension 0."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3, dtype=torch.float64)

    def forward(self, x):
        return self.linear(x.T)


def test_batches_whose_samples_are_not_in_dimension_0_are_evaluated_whole():
    torch.manual_seed(0)
    model = FeaturesFirst()
    data = [(inputs.T.contiguous(), targets) for inputs, targets in batches()]  # (5, b) inputs, (b,) targets
    direction = random_directions(model, 1, seed=2)[0]
    cut = loss_landscape(model, data, [direction], dist=0.5, n_points=3, points_per_pass=1, samples_per_pass=4)
    auto = loss_landscape(model, data, [direction], dist=0.5, n_points=3)
    inputs, targets = torch.cat([x for x, _ in data], dim=1), torch.cat([y for _, y in data])
    for index, t in enumerate((-0.5, 0.0, 0.5)):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(flat_parameters(model) + t * direction.vector, moved.parameters())
            expected = float(F.cross_entropy(moved(inputs), targets))
        assert cut["train_loss"][0, index] == pytest.approx(expected, rel=1e-12)
        assert auto["train_loss"][0, index] == pytest.approx(expected, rel=1e-12)


def test_pieces_join_and_cut_batches_as_one_stream_of_samples():
    from curvwidgets.landscape import _split_off

    held = [(torch.arange(5), torch.arange(5) + 10), (torch.arange(5, 8), torch.arange(15, 18))]
    inputs, targets, rest = _split_off(held, 6)  # all of the first batch and one sample of the second
    assert inputs.tolist() == [0, 1, 2, 3, 4, 5] and targets.tolist() == [10, 11, 12, 13, 14, 15]
    assert [(i.tolist(), t.tolist()) for i, t in rest] == [([6, 7], [16, 17])]
    inputs, targets, rest = _split_off(held, 3)  # a slice of the first batch: no copy
    assert inputs.tolist() == [0, 1, 2] and inputs.data_ptr() == held[0][0].data_ptr() and len(rest) == 2


def test_several_points_failing_together_leave_one_point_per_pass_unless_given():
    from curvwidgets._landscape_passes import PassPlanner

    free = PassPlanner(None, None, 8)
    assert free.next_shape() == (1, 32)  # the candidates are set
    assert free.failed_together() and free.chosen[0] == 1 and all(k == 1 for k, _ in free.pending)
    assert not PassPlanner(8, None, 8).failed_together()


def test_the_sweep_records_its_choice_and_agrees_with_one_point_at_a_time():
    model, data = tiny_mlp(), batches(sizes=(16,) * 20)  # 320 samples a chunk: room for several candidates
    directions = random_directions(model, 2, seed=0)
    auto = loss_landscape(model, data, directions, dist=0.5, n_points=9)
    alone = loss_landscape(model, data, directions, dist=0.5, n_points=9, points_per_pass=1, samples_per_pass=16)
    timing = auto.meta["pass_timing"]
    timed = set(timing["seconds_per_point_sample"])
    assert {"1 x 32", "1 x 128", "8 x 16"} <= timed <= {"1 x 32", "1 x 128", "8 x 16", "1 x 512", "8 x 64"}
    chosen = auto.meta["points_per_pass"], auto.meta["samples_per_pass"]
    assert f"{chosen[0]} x {chosen[1]}" in timed and timing["first_points"] == 8 and timing["cost"] >= 0
    # both given: nothing timed
    assert "pass_timing" not in alone.meta and (alone.meta["points_per_pass"], alone.meta["samples_per_pass"]) \
        == (1, 16)
    for name in alone.values:
        np.testing.assert_allclose(auto[name], alone[name], rtol=1e-12, atol=1e-12)


def test_a_sweep_whose_data_ends_while_exploring_keeps_the_fastest_timed_for_its_last_points():
    model, data = tiny_mlp(), batches()  # 16, 16 and 11 samples
    directions = random_directions(model, 2, seed=0)
    auto = loss_landscape(model, data, directions, dist=0.5, n_points=9)
    alone = loss_landscape(model, data, directions, dist=0.5, n_points=9, points_per_pass=1)
    # each chunk of 8 points: (1, 32) on the first 32 samples (two batches joined), then the 11 left, short of
    # (1, 128), untimed. With 2 points left, too few to time 8 together, the fastest timed is kept
    assert (auto.meta["points_per_pass"], auto.meta["samples_per_pass"]) == (1, 32)
    assert set(auto.meta["pass_timing"]["seconds_per_point_sample"]) == {"1 x 32"}
    for name in alone.values:
        np.testing.assert_allclose(auto[name], alone[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("points, samples", [(1, 1), (1, 5), (3, 5), (4, 16)])
def test_batches_cut_into_pieces_give_the_metrics_of_whole_batches(points, samples):
    model, data = tiny_mlp(), batches()
    directions = random_directions(model, 2, seed=0)
    whole = loss_landscape(model, data, directions, dist=0.5, n_points=5, points_per_pass=points, samples_per_pass=100)
    cut = loss_landscape(model, data, directions, dist=0.5, n_points=5, points_per_pass=points,
                         samples_per_pass=samples)
    assert (cut.meta["points_per_pass"], cut.meta["samples_per_pass"]) == (points, samples)
    assert "pass_timing" not in cut.meta  # both given: nothing timed
    for name in whole.values:
        np.testing.assert_allclose(cut[name], whole[name], rtol=1e-13, atol=0)


class ItemGate(nn.Module):
    """Python control flow on a tensor's value: ``vmap`` refuses it, a plain call does not."""

    def forward(self, x):
        return x if float(x.abs().max()) >= 0 else -x


def test_a_model_that_does_not_vmap_is_swept_one_point_at_a_time():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 6, dtype=torch.float64), ItemGate(), nn.Linear(6, 3, dtype=torch.float64))
    data = batches()
    directions = random_directions(model, 1, seed=1)
    auto = loss_landscape(model, data, directions, dist=1.0, n_points=12)
    alone = loss_landscape(model, data, directions, dist=1.0, n_points=12, points_per_pass=1)
    assert auto.meta["points_per_pass"] == 1 and auto.done.all()
    np.testing.assert_allclose(auto["train_loss"], alone["train_loss"], rtol=1e-15)  # pieces summed in other orders
    with pytest.raises(RuntimeError):  # a fixed choice is not second-guessed
        loss_landscape(model, data, directions, dist=1.0, n_points=12, points_per_pass=4)


def test_a_plane_has_the_right_shape_and_its_axes_are_the_lines():
    model, data = tiny_mlp(), batches()
    directions = random_directions(model, 2, seed=6)
    line = loss_landscape(model, data, directions, dist=0.6, n_points=5, points_per_pass=4)
    plane = loss_landscape(model, data, directions, dist=0.6, n_points=5, plane=True, points_per_pass=4)
    assert plane.kind == "plane" and plane["train_loss"].shape == (5, 5) and plane.done.all()
    c = plane.centre
    np.testing.assert_allclose(plane["train_loss"][:, c], line["train_loss"][0], rtol=1e-13)
    np.testing.assert_allclose(plane["train_loss"][c, :], line["train_loss"][1], rtol=1e-13)
    np.testing.assert_array_equal(plane["train_accuracy"][:, c], line["train_accuracy"][0])
    # an off-axis point against the plain loop
    vector = 0.3 * directions[0].vector - 0.6 * directions[1].vector  # offsets[3] v0 + offsets[0] v1
    loss, _ = loss_and_accuracy_at(model, data, vector, 1.0)
    assert plane["train_loss"][3, 0] == pytest.approx(loss, rel=1e-12)
    with pytest.raises(ValueError, match="exactly two directions"):
        loss_landscape(model, data, directions[:1], dist=0.6, n_points=3, plane=True)


def test_curvature_at_zero_is_the_second_derivative_of_a_quadratic_loss():
    torch.manual_seed(3)
    model = nn.Linear(5, 3).double()
    data = batches()

    def squared(outputs, targets):  # a quadratic function of the weights of a linear model
        return ((outputs - F.one_hot(targets, 3).to(outputs.dtype)) ** 2).mean()

    direction = random_directions(model, 1, seed=9)[0]
    landscape = loss_landscape(model, data, [direction], dist=1.0, n_points=5, loss_fn=squared, points_per_pass=1)
    weight, bias = direction.vector[:15].view(3, 5), direction.vector[15:]
    inputs, _ = concatenated(data)
    change = inputs @ weight.T + bias  # d outputs / dt
    exact = 2 * float((change ** 2).sum()) / change.numel()
    np.testing.assert_allclose(landscape.curvature_at_zero(), [exact], rtol=1e-9)


# ---- the model is left exactly as found -----------------------------------------------------------------

@pytest.fixture
def mixed_mode_model():
    model = bn_mlp()
    model.train()
    model[3].eval()  # a mix of flags, to be put back one by one
    return model, snapshot(model)


@pytest.mark.parametrize("bn", ["keep", "recompute"])
def test_a_sweep_leaves_the_model_bit_identical(mixed_mode_model, bn):
    model, before = mixed_mode_model
    data = batches()
    result = loss_landscape(model, (data, batches(seed=2)), random_directions(model, 2, seed=0), dist=0.5,
                            n_points=3, bn=bn)
    assert result.done.all()
    assert_unchanged(model, before)
    assert model.training and not model[3].training


def test_a_cancelled_sweep_leaves_the_model_bit_identical_and_keeps_the_points_done(mixed_mode_model):
    model, before = mixed_mode_model
    data, directions = batches(), random_directions(model, 2, seed=0)
    full = loss_landscape(model, data, directions, dist=0.5, n_points=5, points_per_pass=1)
    assert_unchanged(model, before)
    cancel, events = threading.Event(), []

    def progress(event):
        events.append(event)
        if event.step == 3:
            cancel.set()

    with pytest.raises(cw.Cancelled) as raised:
        loss_landscape(model, data, directions, dist=0.5, n_points=5, points_per_pass=1, progress=progress,
                       cancel=cancel)
    assert_unchanged(model, before)
    partial = raised.value.result
    assert isinstance(partial, cw.Landscape) and raised.value.step == 3 and raised.value.stage == "landscape"
    assert [event.step for event in events] == [0, 1, 2, 3] and {event.total for event in events} == {10}  # 0: started
    done = partial.done.reshape(-1)
    assert done[:3].all() and not done[3:].any()
    for name in ("train_loss", "train_accuracy"):
        flat = partial[name].reshape(-1)
        np.testing.assert_array_equal(flat[:3], full[name].reshape(-1)[:3])
        assert np.isnan(flat[3:]).all()
    # the partial results sent with the events grow one point at a time
    assert [int(event.partial.done.sum()) for event in events] == [0, 1, 2, 3]


def test_a_sweep_that_raised_leaves_the_model_bit_identical(mixed_mode_model):
    model, before = mixed_mode_model
    calls = []

    def failing_loss(outputs, targets):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("loss exploded")
        return F.cross_entropy(outputs, targets)

    for bn in ("keep", "recompute"):
        calls.clear()
        with pytest.raises(RuntimeError, match="loss exploded"):
            loss_landscape(model, batches(), random_directions(model, 1), dist=0.5, n_points=3, bn=bn,
                           loss_fn=failing_loss, points_per_pass=1)
        assert len(calls) == 3
        assert_unchanged(model, before)


def test_recomputed_batchnorm_equals_update_bn_at_that_point():
    model = bn_mlp(dropout=False).eval()
    train, test = batches(), batches(sizes=(10, 7), seed=4)
    direction = random_directions(model, 1, seed=5)[0]
    recomputed = loss_landscape(model, (train, test), [direction], dist=0.5, n_points=3, bn="recompute")
    kept = loss_landscape(model, (train, test), [direction], dist=0.5, n_points=3, bn="keep")
    assert recomputed.meta["points_per_pass"] == 1 and recomputed.meta["bn"] == "recompute"
    for index in (0, 2):
        t = recomputed.offsets[index]
        reference = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(flat_parameters(model) + t * direction.vector, reference.parameters())
        torch.optim.swa_utils.update_bn(train, reference)
        reference.eval()
        for split, data in (("train", train), ("test", test)):
            loss, accuracy = loss_and_accuracy_at(reference, data, torch.zeros_like(direction.vector), 0.0)
            assert recomputed[f"{split}_loss"][0, index] == pytest.approx(loss, rel=1e-12)
            assert recomputed[f"{split}_accuracy"][0, index] == accuracy
        # the running statistics matter here: keeping the trained ones gives another loss
        assert abs(kept["train_loss"][0, index] - recomputed["train_loss"][0, index]) > 1e-3
        # and "keep" is the plain loop with the trained statistics
        loss, _ = loss_and_accuracy_at(model, train, direction.vector, t)
        assert kept["train_loss"][0, index] == pytest.approx(loss, rel=1e-12)


def test_recompute_with_empty_training_data_is_a_clear_error():
    model = bn_mlp(dropout=False)
    with pytest.raises(ValueError, match="the data yielded no samples"):
        loss_landscape(model, ([], batches()), random_directions(model, 1), dist=0.5, n_points=3, bn="recompute")


# ---- directions ------------------------------------------------------------------------------------------

def conv_model() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4)).double()


def test_filter_normalised_directions_have_the_weights_filter_norms():
    model = conv_model()
    with torch.no_grad():
        model[0].weight[1] *= 7.0  # filters of very different scales
    directions = random_directions(model, 2, seed=4, filter_normalized=True)
    assert [d.label for d in directions] == ["filter-normalised 1", "filter-normalised 2"]
    for direction in directions:
        assert direction.vector.dtype == torch.float64 and math.isnan(direction.curvature)
        start = 0
        for name, parameter in model.named_parameters():
            piece = direction.vector[start : start + parameter.numel()].view_as(parameter)
            start += parameter.numel()
            if parameter.ndim == 1:  # biases and BatchNorm scales and shifts
                assert torch.count_nonzero(piece) == 0, name
            else:
                np.testing.assert_allclose(piece.flatten(1).norm(dim=1).numpy(),
                                           parameter.detach().flatten(1).norm(dim=1).numpy(), rtol=1e-12)
        assert start == direction.vector.numel()
    assert not torch.equal(directions[0].vector, directions[1].vector)


def test_random_directions_are_unit_and_seeded():
    model = conv_model()
    first = random_directions(model, 3, seed=11)
    again = random_directions(model, 3, seed=11)
    other = random_directions(model, 3, seed=12)
    for a, b, c in zip(first, again, other):
        assert a.vector.norm().item() == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(a.vector, b.vector) and not torch.equal(a.vector, c.vector)
    assert first[0].vector.numel() == sum(p.numel() for p in model.parameters())
    assert random_directions(tiny_mlp(torch.float32), 1)[0].vector.dtype == torch.float32


def test_eigen_directions_pick_ritz_vectors_by_rank():
    rng = np.random.default_rng(0)
    eigenvalues = np.array([-3.0, -1.0, -0.01, 0.02, 0.5, 1.5, 4.0, 9.0])
    basis, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    matrix = (basis * eigenvalues) @ basis.T
    spectrum = cw.Spectrum.from_lanczos(cw.lanczos(matrix, 8, store_vectors=True), save_vectors=True)
    picked = eigen_directions(spectrum, largest=2, smallest=2, nearest_zero=2)
    assert [d.curvature for d in picked] == pytest.approx([9.0, 4.0, -3.0, -1.0, -0.01, 0.02], abs=1e-10)
    assert [d.label.split(" (")[0] for d in picked] == ["largest 1", "largest 2", "smallest 1", "smallest 2",
                                                         "nearest zero 1", "nearest zero 2"]
    assert picked[0].label == "largest 1 (theta = 9)"
    for direction in picked:
        v = direction.vector.numpy().astype(np.float64)
        assert direction.vector.dtype == torch.float32
        np.testing.assert_allclose(matrix @ v, direction.curvature * v, atol=1e-5)
    # a Ritz value picked twice appears once
    overlapping = eigen_directions(spectrum, largest=8, smallest=2)
    assert len(overlapping) == 8
    with pytest.raises(ValueError, match="at least one direction"):
        eigen_directions(spectrum, largest=0, smallest=0)
    with pytest.raises(ValueError, match="largest must be an int >= 0"):
        eigen_directions(spectrum, largest=-1)
    with pytest.raises(ValueError, match=r"run must be an int in \[0, 1\)"):
        eigen_directions(spectrum, run=1)
    with pytest.raises(ValueError, match="save_vectors=True"):
        eigen_directions(spectrum.truncate(5))
    with pytest.raises(TypeError, match="spectrum must be a curvwidgets Spectrum"):
        eigen_directions(spectrum.lanczos)


# ---- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dist", [0, -0.25, float("nan"), float("inf")])
def test_dist_must_be_positive(dist):
    model = tiny_mlp()
    with pytest.raises(ValueError, match="dist must be a finite number > 0"):
        loss_landscape(model, batches(), random_directions(model, 1), dist=dist)


@pytest.mark.parametrize("n_points", [1, 0, 2.5, True])
def test_n_points_must_be_at_least_two(n_points):
    model = tiny_mlp()
    with pytest.raises(ValueError, match="n_points must be an int >= 2"):
        loss_landscape(model, batches(), random_directions(model, 1), n_points=n_points)


def test_a_vector_of_another_model_is_refused():
    model, other = tiny_mlp(), conv_model()
    wrong = random_directions(other, 1)[0]
    with pytest.raises(ValueError, match=r"has 115 entries but the model's selected parameters have 39"):
        loss_landscape(model, batches(), [wrong], dist=0.5, n_points=3)
    with pytest.raises(ValueError, match="contains NaN"):
        loss_landscape(model, batches(), [torch.full((39,), float("nan"))], dist=0.5, n_points=3)
    with pytest.raises(ValueError, match="non-empty list"):
        loss_landscape(model, batches(), [], dist=0.5, n_points=3)
    with pytest.raises(TypeError, match=r"directions\[0\] must be a Direction"):
        loss_landscape(model, batches(), [[0.0] * 39], dist=0.5, n_points=3)


def test_plain_vectors_are_labelled_and_other_options_checked():
    model = tiny_mlp()
    vector = np.ones(39) / math.sqrt(39)
    result = loss_landscape(model, batches(), [vector], dist=0.5, n_points=3, points_per_pass=1)
    assert result.labels == ("vector 1",)
    loss, _ = loss_and_accuracy_at(model, batches(), torch.from_numpy(vector), 0.5)
    assert result["train_loss"][0, 2] == pytest.approx(loss, rel=1e-12)
    with pytest.raises(ValueError, match="bn must be one of"):
        loss_landscape(model, batches(), [vector], bn="frozen")
    with pytest.raises(ValueError, match="points_per_pass"):
        loss_landscape(model, batches(), [vector], points_per_pass=0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        loss_landscape(lambda x: x, batches(), [vector])
    with pytest.raises(TypeError, match="data must be"):
        loss_landscape(model, iter(batches()), [vector])


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(ignore_index=1),
                                     nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)),
                                     nn.CrossEntropyLoss(ignore_index=2, reduction="sum")],
                         ids=["ignore_index", "class_weights", "ignore_index_sum"])
@pytest.mark.parametrize("points, samples", [(1, None), (1, 5), (3, 5)])
def test_losses_that_do_not_count_every_sample_give_the_one_batch_loss(loss_fn, points, samples):
    model, data = tiny_mlp(), batches(sizes=(16, 16, 11), seed=5)
    ignored = getattr(loss_fn, "ignore_index", -100)
    data[1] = (data[1][0], torch.full_like(data[1][1], ignored if ignored >= 0 else 0))  # a batch wholly ignored?
    direction = random_directions(model, 1, seed=3)[0]
    # pieces of 5 samples: some wholly ignored, some partly
    landscape = loss_landscape(model, data, [direction], dist=0.5, n_points=3, loss_fn=loss_fn, points_per_pass=points,
                               samples_per_pass=samples)
    inputs, targets = concatenated(data)
    # the loss as given over one batch of every sample: the mean, or for reduction="sum" the sum
    mean_loss = nn.CrossEntropyLoss(weight=loss_fn.weight, ignore_index=loss_fn.ignore_index,
                                    reduction=loss_fn.reduction)
    counted = targets != loss_fn.ignore_index
    for index, t in enumerate((-0.5, 0.0, 0.5)):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(flat_parameters(model) + t * direction.vector, moved.parameters())
            outputs = moved(inputs)
        assert landscape["train_loss"][0, index] == pytest.approx(float(mean_loss(outputs, targets)), rel=1e-12)
        accuracy = float((outputs.argmax(-1) == targets)[counted].double().mean())
        assert landscape["train_accuracy"][0, index] == pytest.approx(accuracy, rel=1e-12)


# ---- points computed where the loss is not finite ---------------------------------------------------------------

def exp_loss(outputs, targets):
    """``mean(exp(outputs))``: overflows float32 beyond ``outputs = 88.7``."""
    return outputs.exp().mean()


def bias_walk():
    """A one-output linear model at w = 0 on inputs 1, and the unit direction of its bias: ``outputs = t``."""
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    data = [(torch.ones(4, 1), torch.zeros(4, dtype=torch.long))]
    return model, data, torch.tensor([0.0, 1.0])


def test_a_sweep_that_overflows_keeps_the_point_computed_and_says_where():
    model, data, bias = bias_walk()
    with pytest.warns(RuntimeWarning, match=r"^the loss is NaN or infinite at 1 of 5 points computed \(the model "
                                            r"diverges there\): along 'vector 1' for t in \[100, 100\]$"):
        result = loss_landscape(model, data, [bias], dist=100.0, n_points=5, loss_fn=exp_loss)
    offsets = np.array([-100.0, -50.0, 0.0, 50.0, 100.0])
    np.testing.assert_array_equal(result.offsets, offsets)
    assert result.done.all() and result.computed.all()  # every point computed ...
    assert result.not_finite.tolist() == [[False, False, False, False, True]]  # ... one of them diverged
    assert result["train_loss"][0, 4] == np.inf
    np.testing.assert_allclose(result["train_loss"][0, 1:4], np.exp(offsets[1:4]), rtol=1e-6)  # exp(t), float32
    assert 0 < result["train_loss"][0, 0] < 1e-43  # exp(-100): a float32 subnormal, finite
    assert result.meta["not_finite_points"] == 1


def test_a_sweep_that_is_nan_everywhere_is_finished_not_pending(tmp_path):
    model, data, bias = bias_walk()
    with pytest.warns(RuntimeWarning, match=r"at 3 of 3 points computed"):
        result = loss_landscape(model, data, [bias], n_points=3, loss_fn=lambda outputs, targets: outputs.sum() * np.nan)
    assert result.done.all() and result.not_finite.all() and np.isnan(result["train_loss"]).all()
    loaded = cw.Landscape.load(result.save(tmp_path / "nan"))
    assert loaded.done.all() and loaded.not_finite.all()


def test_a_finite_sweep_neither_warns_nor_marks_a_point(recwarn):
    model, data, bias = bias_walk()
    result = loss_landscape(model, data, [bias], dist=10.0, n_points=3, loss_fn=exp_loss)
    assert not result.not_finite.any() and result.not_finite_note() == "" and result.meta["not_finite_points"] == 0
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_plane_that_diverges_names_the_rectangle():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    data = [(torch.ones(3, 2), torch.zeros(3, dtype=torch.long))]
    directions = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])]  # outputs = a + b
    with pytest.warns(RuntimeWarning, match=r"at 1 of 9 points computed .*: a in \[60, 60\], b in \[60, 60\]$"):
        result = loss_landscape(model, data, directions, dist=60.0, n_points=3, plane=True, loss_fn=exp_loss)
    assert np.argwhere(result.not_finite).tolist() == [[2, 2]]  # exp(120) overflows, exp(60) does not

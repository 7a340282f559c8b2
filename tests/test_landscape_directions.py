"""Random landscape directions as Li et al. (2018) define them: norms, one-axis tensors, BatchNorm states, metadata.

References: a few-line reimplementation, written here, of the definition in
Li et al., "Visualizing the Loss Landscape of Neural Nets" (2018) and their
``net_plotter.create_random_direction``: a Gaussian draw per tensor (per
parameter for ``dir_type="weights"``, per ``state_dict()`` entry for
``"states"``), tensors of one axis or none set to zero (``ignore="biasbn"``)
or to the tensor itself (``ignore=""``), the others normalised by ``norm``;
drawn here from the same seeded float64 CPU generator in the same order as
:func:`curvwidgets.random_directions` draws, so the two must agree to
rounding. The loss at moved BatchNorm statistics is checked against a copy of
the model whose parameters and buffers are overwritten by hand.
"""

import contextlib
import copy
import io
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets import api
from curvwidgets.cli import _LANDSCAPE_DIRECTIONS, build_parser, main
from curvwidgets.landscape import NORMS, ONE_AXIS_OPTIONS, Direction, loss_landscape, random_directions
from curvwidgets.results import Landscape, ResultFileError
from curvwidgets.widgets._landscape_task import LandscapeSettings

LI_NORMS = ("filter", "layer", "weight", "dfilter", "dlayer")


# ---- models and data -----------------------------------------------------------------------------------

def conv_bn_model(seed: int = 0) -> nn.Module:
    """Weights of four and two axes, biases, a BatchNorm with non-trivial running statistics (float64)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4)).double()
    with torch.no_grad():
        model[0].weight[1] *= 7.0  # filters of very different scales
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.3, 2.0)
        model[1].num_batches_tracked.fill_(9)
        model[1].weight.uniform_(0.5, 1.5)
    return model


def bn_mlp(seed: int = 0) -> nn.Module:
    """Linear, BatchNorm1d, ReLU, Linear (float64) with running statistics far from 0 and 1."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.3, 2.0)
        model[1].bias.uniform_(-0.3, 0.3)
    return model


def plain_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()


def batches(sizes=(13, 8), seed: int = 0) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 5, generator=generator, dtype=torch.float64),
             torch.randint(0, 3, (size,), generator=generator)) for size in sizes]


def snapshot(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_bits(model: nn.Module, before: Dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for name, value in before.items():
        assert after[name].dtype == value.dtype and torch.equal(after[name], value), name


# ---- the reference: Li et al.'s definition, drawn from the same generator ------------------------------------

def li_direction(model: nn.Module, generator: torch.Generator, norm: str, ignore: str,
                 dir_type: str) -> Dict[str, torch.Tensor]:
    """One direction by Li et al.'s definition: ``{name: tensor}`` over parameters ("weights") or state entries."""
    entries = model.named_parameters() if dir_type == "weights" else model.state_dict().items()
    direction = {}
    for name, w in entries:
        w = w.detach().double()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        if d.dim() <= 1:
            d = torch.zeros_like(d) if ignore == "biasbn" else w.clone()
        elif norm == "filter":
            d = torch.stack([d_i * (w_i.norm() / d_i.norm()) for d_i, w_i in zip(d, w)])
        elif norm == "layer":
            d = d * (w.norm() / d.norm())
        elif norm == "weight":
            d = d * w
        elif norm == "dfilter":
            d = torch.stack([d_i / d_i.norm() for d_i in d])
        elif norm == "dlayer":
            d = d / d.norm()
        direction[name] = d
    return direction


def unit_reference(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
    """The isotropic direction: one Gaussian draw per parameter, the whole vector scaled to length 1."""
    draw = torch.cat([torch.randn(p.shape, generator=generator, dtype=torch.float64).reshape(-1)
                      for p in model.parameters()])
    return draw / draw.norm()


def flat(direction: Dict[str, torch.Tensor], model: nn.Module) -> torch.Tensor:
    return torch.cat([direction[name].reshape(-1) for name, _ in model.named_parameters()])


# ---- directions against the definition -----------------------------------------------------------------------

@pytest.mark.parametrize("norm", LI_NORMS)
@pytest.mark.parametrize("one_axis, ignore", [("zero", "biasbn"), ("weights", "")])
def test_each_normalisation_equals_li_et_al_definition(norm, one_axis, ignore):
    model = conv_bn_model()
    directions = random_directions(model, 2, seed=7, norm=norm, one_axis=one_axis)
    generator = torch.Generator().manual_seed(7)
    for number, direction in enumerate(directions, start=1):
        reference = li_direction(model, generator, norm, ignore, "weights")
        assert direction.vector.dtype == torch.float64 and direction.states is None
        np.testing.assert_allclose(direction.vector.numpy(), flat(reference, model).numpy(), rtol=1e-14, atol=0)
        assert direction.label == f"{norm}-normalised {number}"
        assert direction.options == {"kind": "random", "norm": norm, "one_axis": one_axis, "states": False,
                                     "seed": 7, "number": number}
    for name, parameter in model.named_parameters():  # the one-axis rule, exactly
        if parameter.ndim == 1:
            piece = directions[0].vector[_slice_of(model, name)]
            expected = torch.zeros_like(piece) if one_axis == "zero" else parameter.detach().reshape(-1)
            assert torch.equal(piece, expected), name


def _slice_of(model: nn.Module, wanted: str) -> slice:
    start = 0
    for name, parameter in model.named_parameters():
        if name == wanted:
            return slice(start, start + parameter.numel())
        start += parameter.numel()
    raise KeyError(wanted)


@pytest.mark.parametrize("norm", LI_NORMS)
def test_states_directions_equal_li_et_al_states_definition(norm):
    model = conv_bn_model(seed=3)
    directions = random_directions(model, 2, seed=11, norm=norm, one_axis="weights", states=True)
    generator = torch.Generator().manual_seed(11)
    for direction in directions:
        reference = li_direction(model, generator, norm, "", "states")  # drawn over every state_dict entry
        np.testing.assert_allclose(direction.vector.numpy(), flat(reference, model).numpy(), rtol=1e-14, atol=0)
        assert sorted(direction.states) == ["1.running_mean", "1.running_var"]
        for name, part in direction.states.items():  # one axis, not ignored: the buffer itself
            assert torch.equal(part, reference[name]) and torch.equal(part, model.state_dict()[name]), name
        assert direction.options["states"] is True and direction.options["one_axis"] == "weights"
    # the state draws shift the parameters' draws: a states direction is not the weights one
    weights_only = random_directions(model, 1, seed=11, norm=norm, one_axis="weights")[0]
    assert not torch.equal(weights_only.vector, directions[0].vector)


def test_the_default_stays_the_unit_gaussian_and_filter_normalized_is_norm_filter():
    model = conv_bn_model()
    generator = torch.Generator().manual_seed(5)
    default = random_directions(model, 2, seed=5)
    for number, direction in enumerate(default, start=1):
        assert torch.equal(direction.vector, unit_reference(model, generator))
        assert direction.label == f"random {number}" and direction.states is None
        assert direction.options == {"kind": "random", "norm": "unit", "one_axis": None, "states": False, "seed": 5,
                                     "number": number}
    old = random_directions(model, 2, seed=5, filter_normalized=True)
    for a, b in zip(old, random_directions(model, 2, seed=5, norm="filter")):
        assert torch.equal(a.vector, b.vector) and a.label == b.label and a.options == b.options
    assert old[0].options["one_axis"] == "zero"  # the default, named
    for a, b in zip(old, random_directions(model, 2, seed=5, filter_normalized=True, norm="filter", one_axis="zero")):
        assert torch.equal(a.vector, b.vector)


def test_float32_models_get_float32_directions_and_statistics():
    model = conv_bn_model().float()
    direction = random_directions(model, 1, seed=2, norm="layer", one_axis="weights", states=True)[0]
    reference = li_direction(model, torch.Generator().manual_seed(2), "layer", "", "states")
    assert direction.vector.dtype == torch.float32
    assert torch.equal(direction.vector, flat(reference, model).float())
    assert all(part.dtype == torch.float32 for part in direction.states.values())


# ---- the landscape at moved BatchNorm statistics -------------------------------------------------------------

def loss_at(model: nn.Module, data, directions: List[Direction], steps) -> Tuple[float, float]:
    """Mean loss and accuracy of a copy of ``model`` holding ``w + sum_j steps_j v_j`` and ``b + sum_j steps_j s_j``."""
    moved = copy.deepcopy(model).eval()
    with torch.no_grad():
        flat_weights = torch.cat([p.reshape(-1) for p in model.parameters()])
        shift = sum(step * direction.vector for step, direction in zip(steps, directions))
        torch.nn.utils.vector_to_parameters(flat_weights + shift, moved.parameters())
        buffers = dict(moved.named_buffers())
        for step, direction in zip(steps, directions):
            for name, part in (direction.states or {}).items():
                buffers[name].add_(step * part)
        total, correct, count = 0.0, 0, 0
        for inputs, targets in data:
            outputs = moved(inputs)
            total += float(nn.functional.cross_entropy(outputs, targets)) * len(targets)
            correct += int((outputs.argmax(-1) == targets).sum())
            count += len(targets)
    return total / count, correct / count


@pytest.mark.parametrize("points_per_pass", [1, 3])
def test_states_lines_equal_the_loss_with_the_buffers_moved_by_hand(points_per_pass):
    model, train, test = bn_mlp(), batches(), batches((7,), seed=4)
    directions = random_directions(model, 2, seed=3, norm="filter", one_axis="weights", states=True)
    before = snapshot(model)
    result = loss_landscape(model, (train, test), directions, dist=0.6, n_points=5, points_per_pass=points_per_pass)
    assert_same_bits(model, before)
    assert result.meta["points_per_pass"] == points_per_pass and result.meta["negative_variance_points"] == 0
    for d in range(2):
        for i, t in enumerate(result.offsets):
            steps = [t if j == d else 0.0 for j in range(2)]
            for split, data in (("train", train), ("test", test)):
                loss, accuracy = loss_at(model, data, directions, steps)
                assert result[f"{split}_loss"][d, i] == pytest.approx(loss, rel=1e-12)
                assert result[f"{split}_accuracy"][d, i] == accuracy
    # the running statistics matter: without them the same weights give other losses
    still = [Direction(d.vector, d.label) for d in directions]
    other = loss_landscape(model, train, still, dist=0.6, n_points=5, points_per_pass=1)
    assert not np.allclose(other["train_loss"][:, [0, 1, 3, 4]], result["train_loss"][:, [0, 1, 3, 4]], rtol=1e-6)
    np.testing.assert_allclose(other["train_loss"][:, 2], result["train_loss"][:, 2], rtol=1e-13)  # t = 0: the model


def test_a_plane_of_a_states_direction_and_a_plain_vector():
    model, data = bn_mlp(seed=2), batches(seed=1)
    moving = random_directions(model, 1, seed=4, norm="layer", one_axis="weights", states=True)[0]
    plain = torch.randn(moving.vector.numel(), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    before = snapshot(model)
    result = loss_landscape(model, data, [moving, plain], dist=0.5, n_points=3, plane=True)
    assert_same_bits(model, before)
    assert result.meta["direction_options"][0]["norm"] == "layer" and result.meta["direction_options"][1] is None
    plain_direction = Direction(plain, "vector 2")
    for i, a in enumerate(result.offsets):
        for j, b in enumerate(result.offsets):
            loss, _ = loss_at(model, data, [moving, plain_direction], [a, b])
            assert result["train_loss"][i, j] == pytest.approx(loss, rel=1e-12), (a, b)


def test_a_negative_running_variance_gives_a_not_finite_point_and_the_buffers_come_back():
    model, data = bn_mlp(seed=5), batches(seed=2)
    directions = random_directions(model, 2, seed=1, norm="filter", one_axis="weights", states=True)
    before = snapshot(model)
    with pytest.warns(RuntimeWarning, match=r"at 2 point\(s\) a moved BatchNorm running variance plus eps is "
                                            r"negative"):
        result = loss_landscape(model, data, directions, dist=2.0, n_points=5, points_per_pass=1)
    assert_same_bits(model, before)
    # running_var (1 + t): negative at t = -2 only (t = -1 gives exactly 0, and 1 / sqrt(eps))
    assert result.meta["negative_variance_points"] == 2 and result.meta["not_finite_points"] == 2
    np.testing.assert_array_equal(result.not_finite, [[True, False, False, False, False]] * 2)
    assert np.isnan(loss_at(model, data, directions, [-2.0, 0.0])[0])
    for d in range(2):
        for i in range(1, 5):
            steps = [result.offsets[i] if j == d else 0.0 for j in range(2)]
            assert result["train_loss"][d, i] == pytest.approx(loss_at(model, data, directions, steps)[0], rel=1e-12)


def test_the_options_go_through_the_results_file(tmp_path):
    model, data = bn_mlp(), batches()
    directions = random_directions(model, 2, seed=8, norm="dlayer", one_axis="weights", states=True)
    result = loss_landscape(model, data, directions, dist=0.5, n_points=3, points_per_pass=1)
    expected = [{"kind": "random", "norm": "dlayer", "one_axis": "weights", "states": True, "seed": 8,
                 "number": number} for number in (1, 2)]
    assert result.meta["direction_options"] == expected
    loaded = Landscape.load(result.save(tmp_path / "walk"))
    assert loaded.meta["direction_options"] == expected and loaded.meta["negative_variance_points"] == 0
    assert loaded.meta == result.meta
    default = loss_landscape(model, data, random_directions(model, 1), dist=0.5, n_points=3, points_per_pass=1)
    assert Landscape.load(default.save(tmp_path / "default")).meta["direction_options"] == [
        {"kind": "random", "norm": "unit", "one_axis": None, "states": False, "seed": 0, "number": 1}]
    assert "negative_variance_points" not in default.meta


def test_a_file_whose_direction_options_do_not_fit_is_refused(tmp_path):
    offsets, values = np.linspace(-1.0, 1.0, 3), {"train_loss": np.ones((2, 3))}
    for options in ([None], "filter", [None, 3]):
        broken = Landscape(offsets, ("a", "b"), np.full(2, np.nan), "line", values, {"direction_options": options})
        target = broken.save(tmp_path / "broken")
        with pytest.raises(ResultFileError, match=r"meta\['direction_options'\] must be a list of one dict \(or "
                                                  r"null\) per direction, 2"):
            Landscape.load(target)


# ---- bad input -----------------------------------------------------------------------------------------------

NORM_LIST = r"\('unit', 'filter', 'layer', 'weight', 'dfilter', 'dlayer'\)"
LI_LIST = r"\('filter', 'layer', 'weight', 'dfilter', 'dlayer'\)"


@pytest.mark.parametrize("call, pattern", [
    (lambda m: random_directions(m, norm="filters"), rf"^norm must be None or one of {NORM_LIST}; got 'filters'"),
    (lambda m: random_directions(m, norm=1), rf"^norm must be None or one of {NORM_LIST}; got 1"),
    (lambda m: random_directions(m, norm="layer", one_axis="bias"),
     r"^one_axis must be None or one of \('zero', 'weights'\); got 'bias'"),
    (lambda m: random_directions(m, one_axis="weights"),
     rf"^one_axis='weights' applies to Li et al.'s normalisations {LI_LIST}; with norm='unit'"),
    (lambda m: random_directions(m, filter_normalized=True, norm="layer"),
     r"^filter_normalized=True asks for norm='filter' but norm='layer': give one of them"),
    (lambda m: random_directions(m, norm="filter", one_axis="weights", states="yes"),
     r"^states must be True or False; got 'yes'"),
    (lambda m: random_directions(m, states=True),
     rf"^states=True needs one of Li et al.'s normalisations {LI_LIST} with one_axis='weights'; got norm='unit'"),
    (lambda m: random_directions(m, norm="filter", states=True),
     r"^states=True with one_axis='zero' moves no running statistic"),
    (lambda m: random_directions(m, params="*.bias", norm="dlayer"),
     r"^norm='dlayer': the selected parameters all have one axis \(biases, BatchNorm\), where dlayer-normalised "
     r"directions are zero with one_axis='zero'"),
])
def test_bad_direction_options_name_the_argument_and_what_it_accepts(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(bn_mlp())


def test_states_on_a_model_without_batchnorm_statistics_is_refused():
    for model in (plain_mlp(), nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, track_running_stats=False))):
        with pytest.raises(ValueError, match=r"^states=True: the model has no BatchNorm running statistics to move"):
            random_directions(model, norm="filter", one_axis="weights", states=True)
    # biases alone are fine once they move by their own values
    biases = random_directions(plain_mlp(), 1, params="*.bias", norm="dlayer", one_axis="weights")[0]
    assert torch.equal(biases.vector, torch.cat([plain_mlp()[0].bias, plain_mlp()[2].bias]).detach())


def test_loss_landscape_refuses_states_it_cannot_apply():
    model, data = bn_mlp(), batches()
    moving = random_directions(model, 1, norm="filter", one_axis="weights", states=True)[0]
    with pytest.raises(ValueError, match=r"^bn='recompute' recomputes the BatchNorm running statistics at every "
                                         r"point, which the directions with states"):
        loss_landscape(model, data, [moving], n_points=3, bn="recompute")
    other = plain_mlp()
    stray = Direction(torch.ones(sum(p.numel() for p in other.parameters()), dtype=torch.float64), "stray",
                      states={"1.running_mean": torch.zeros(6, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"^direction 'stray' moves '1.running_mean', which is not a BatchNorm "
                                         r"running statistic of the model; its running statistics are none"):
        loss_landscape(other, data, [stray], n_points=3)
    wrong = Direction(moving.vector, "wrong", states={"1.running_var": torch.ones(4, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"^direction 'wrong': its states\['1.running_var'\] must hold 6 finite real "
                                         r"numbers, the shape of the buffer \(6,\); got 4"):
        loss_landscape(model, data, [wrong], n_points=3)
    with pytest.raises(TypeError, match=r"^direction 'odd': its states must be None or a dict"):
        loss_landscape(model, data, [Direction(moving.vector, "odd", states=[1.0])], n_points=3)
    with pytest.raises(TypeError, match=r"^direction 'odd': its options must be None or a dict"):
        loss_landscape(model, data, [Direction(moving.vector, "odd", options="filter")], n_points=3)


@pytest.mark.parametrize("arguments, pattern", [
    (dict(directions="sideways"), r"^directions must be one of \('eigenvectors', 'random', 'filter-normalised', "
                                  r"'layer-normalised', 'weight-normalised', 'dfilter-normalised', "
                                  r"'dlayer-normalised'\); got 'sideways'"),
    (dict(directions="random", states=True), r"^states=True needs one of Li et al.'s normalisations .* got "
                                             r"directions='random'"),
    (dict(directions="random", one_axis="weights"), r"^one_axis='weights' applies to Li et al.'s normalisations"),
    (dict(directions="layer-normalised", one_axis="all"), r"^one_axis must be None or one of \('zero', 'weights'\)"),
    (dict(directions="eigenvectors", states=True), r"^one_axis and states apply to random directions"),
    (dict(directions="filter-normalised", one_axis="weights", states=True, bn="recompute"),
     r"^states=True moves the BatchNorm running statistics, which bn='recompute' recomputes"),
])
def test_the_api_checks_the_options_before_any_work(arguments, pattern, tmp_path):
    with pytest.raises(ValueError, match=pattern):
        cw.build_loss_landscape(checkpoint_path=tmp_path / "missing.pt", **arguments)


def test_the_widget_task_passes_the_options_on():
    model = bn_mlp()
    chosen, params = LandscapeSettings(directions="filter", count=2, seed=4, one_axis="weights",
                                       states=True).chosen(model, None)
    expected = random_directions(model, 2, seed=4, norm="filter", one_axis="weights", states=True)
    assert params is None and [d.options for d in chosen] == [d.options for d in expected]
    assert all(torch.equal(a.vector, b.vector) for a, b in zip(chosen, expected))
    with pytest.raises(ValueError, match=r"^norm, one_axis and states apply to random directions"):
        LandscapeSettings(directions="eigen", states=True).chosen(model, None)
    with pytest.raises(ValueError, match=r"^one_axis='weights' applies to Li et al.'s normalisations"):
        LandscapeSettings(directions="random", one_axis="weights").chosen(model, None)


def test_the_options_and_names_agree_everywhere():
    assert NORMS == ("unit",) + LI_NORMS and ONE_AXIS_OPTIONS == ("zero", "weights")
    assert _LANDSCAPE_DIRECTIONS == api.LANDSCAPE_DIRECTIONS
    assert [name.split("-")[0] for name in api.LANDSCAPE_DIRECTIONS[2:]] == list(LI_NORMS)
    subparsers = next(action for action in build_parser()._actions if action.dest == "verb").choices
    walk = subparsers["landscape"]
    parsed = walk.parse_args(["--checkpoint", "c", "--out", "x"])
    assert parsed.one_axis is None and parsed.states is False  # the API's defaults
    text = " ".join(walk.format_help().split())
    for phrase in ("--one-axis {zero,weights}", "--states", "layer-normalised", "dir_type states", "t < -1"):
        assert phrase in text, phrase


# ---- through the API and the command line, on a checkpoint with BatchNorm ----------------------------------

@pytest.fixture(scope="module")
def bn_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bn_run") / "run"
    cw.train_network(folder, dataset="digits", model="SmallCNN", epochs=1, batch_size=256, device="cpu")
    return folder


def cli(argv) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(item) for item in argv])
        except SystemExit as stop:
            status = stop.code
    return status, out.getvalue(), err.getvalue()


def test_the_api_walks_states_directions_and_records_them(bn_run, tmp_path):
    target = tmp_path / "walk.npz"
    result = cw.build_loss_landscape(checkpoint_path=bn_run, directions="layer-normalised", one_axis="weights",
                                     states=True, num_random=1, n_points=3, dist=0.5, save_path=target,
                                     device="cpu", seed=6)
    loaded = Landscape.load(target)
    assert loaded.meta["direction_kind"] == "layer-normalised" and loaded.labels == ("layer-normalised 1",)
    assert loaded.meta["direction_options"] == [{"kind": "random", "norm": "layer", "one_axis": "weights",
                                                 "states": True, "seed": 6, "number": 1}]
    assert loaded.meta["negative_variance_points"] == 0 and loaded.done.all()
    trained = cw.load_trained(bn_run, device="cpu")
    before = snapshot(trained.model)
    chosen = random_directions(trained.model, 1, seed=6, norm="layer", one_axis="weights", states=True)
    assert len(chosen[0].states) == 2 * sum(isinstance(m, nn.BatchNorm2d) for m in trained.model.modules())
    again = loss_landscape(trained.model, trained.data, chosen, dist=0.5, n_points=3)
    assert_same_bits(trained.model, before)
    np.testing.assert_allclose(result["train_loss"], again["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(result["test_loss"], again["test_loss"], rtol=1e-5)


def test_the_command_line_takes_the_options_and_reports_negative_variances(bn_run, tmp_path):
    target = tmp_path / "walk.npz"
    status, out, err = cli(["landscape", "--checkpoint", bn_run, "--out", target, "--directions",
                            "dfilter-normalised", "--one-axis", "weights", "--states", "--points", "3", "--dist", "2",
                            "--device", "cpu"])
    assert status == 0, err
    loaded = Landscape.load(target)
    assert [entry["norm"] for entry in loaded.meta["direction_options"]] == ["dfilter", "dfilter"]
    assert all(entry["states"] and entry["one_axis"] == "weights" for entry in loaded.meta["direction_options"])
    # t = -2 makes every running variance negative along both directions: NaN there, as Li et al.'s code gives
    assert loaded.meta["negative_variance_points"] == 2
    np.testing.assert_array_equal(loaded.not_finite, [[True, False, False]] * 2)
    assert "warning: the loss is NaN or infinite at 2 of 6 points" in out
    status, _, err = cli(["landscape", "--checkpoint", bn_run, "--out", tmp_path / "x.npz", "--directions", "random",
                          "--states"])
    assert status == 2 and err.startswith("curvwidgets landscape: error: --states needs one of Li et al.'s "
                                          "normalisations"), err
    assert "got --directions 'random'" in err
    status, _, err = cli(["landscape", "--checkpoint", bn_run, "--out", tmp_path / "y.npz", "--directions",
                          "filter-normalised", "--states"])
    assert status == 2 and "--states with --one-axis 'zero' moves no running statistic" in err, err
    status, _, err = cli(["landscape", "--checkpoint", bn_run, "--out", tmp_path / "z.npz", "--one-axis", "all"])
    assert status == 2 and "invalid choice: 'all'" in err

"""Bad input to the curvature layer and the landscape: each case's exception type and a message naming the argument.

Arguments are checked at the entry of the public function, before a product
or a pass over the data, so they fail with the clear message, never deep
inside. Data that only a pass can judge (inputs the model cannot take, a later
batch of another shape, NaN inputs) fails at the batch concerned, with an
error naming ``data`` and the batch's shapes.
"""

import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvature_cases import classification_data, mlp
from curvwidgets.curvature import exact_diagonal, hutchinson_diagonal, mc_ggn_diagonal
from curvwidgets.landscape import loss_landscape, random_directions
from curvwidgets.training.data import DataSet

LOSS = nn.CrossEntropyLoss()
MODEL = mlp()
BATCHES = classification_data(MODEL)[0]  # 24 samples in 4 batches
DIM = sum(p.numel() for p in MODEL.parameters())
WIDER = [(torch.ones(4, 7, dtype=torch.float64), torch.zeros(4, dtype=torch.int64))]  # inputs the model cannot take
DATASET = DataSet(name="toy", train=None, test=None, num_classes=3, input_shape=(5,), mean=(0.0,), std=(1.0,),
                  classes=("a", "b", "c"))


def operator_cases(operator):
    """``(call, exception, message)`` for one operator class's constructor."""
    def build(**changes):
        arguments = {"model": MODEL, "loss_fn": LOSS, "data": BATCHES, **changes}
        return lambda: operator(**arguments)

    name = operator.__name__
    return [
        pytest.param(build(data=DATASET), TypeError, r"data must be .*got DataSet.*evaluation_loader\('train'\)",
                     id=f"{name}-data-DataSet"),
        pytest.param(build(data=torch.ones(4, 5)), TypeError, r"data must be a re-iterable", id=f"{name}-data-tensor"),
        pytest.param(build(data=(batch for batch in BATCHES)), TypeError, r"data must be re-iterable",
                     id=f"{name}-data-generator"),
        pytest.param(build(data=[]), ValueError, r"data is empty", id=f"{name}-data-empty"),
        pytest.param(build(data=[torch.ones(3, 5)]), TypeError, r"data must yield \(inputs, targets\) pairs",
                     id=f"{name}-data-not-pairs"),
        pytest.param(build(model=lambda x: x), TypeError, r"model must be a torch.nn.Module; got function",
                     id=f"{name}-model"),
        pytest.param(build(loss_fn="cross-entropy"), TypeError, r"loss_fn must be callable", id=f"{name}-loss_fn"),
        pytest.param(build(params=[]), ValueError, r"params is an empty selection", id=f"{name}-params-empty"),
        pytest.param(build(params=["0.weight", MODEL[0].bias]), TypeError, r"params must be .*got list of Parameter, str",
                     id=f"{name}-params-mixed"),
        pytest.param(build(params=3), TypeError, r"params must be None, a glob pattern", id=f"{name}-params-int"),
        pytest.param(build(params="conv.*"), ValueError, r"params pattern 'conv\.\*' matches no",
                     id=f"{name}-params-pattern"),
        pytest.param(build(bn_mode="frozen"), ValueError, r"bn_mode must be one of \('eval', 'train'\)",
                     id=f"{name}-bn_mode"),
        pytest.param(build(backend="fast"), ValueError, r"backend must be one of \('auto', ", id=f"{name}-backend"),
        pytest.param(build(num_samples=0), ValueError, r"num_samples must be an int >= 1; got 0",
                     id=f"{name}-num_samples-zero"),
        pytest.param(build(num_samples=-3), ValueError, r"num_samples must be an int >= 1; got -3",
                     id=f"{name}-num_samples-negative"),
        pytest.param(build(num_samples=True), ValueError, r"num_samples must be an int >= 1; got True",
                     id=f"{name}-num_samples-bool"),
        pytest.param(build(num_samples=2.5), ValueError, r"num_samples must be an int >= 1; got 2.5",
                     id=f"{name}-num_samples-float"),
        pytest.param(build(num_samples=25), ValueError, r"num_samples must be an int in \[1, 24\] \(the size of data\); got 25",
                     id=f"{name}-num_samples-too-many"),
        pytest.param(build(seed="abc"), ValueError, r"seed must be an int in \[0, 2\*\*63\); got 'abc'",
                     id=f"{name}-seed-str"),
        pytest.param(build(seed=-1), ValueError, r"seed must be an int", id=f"{name}-seed-negative"),
        pytest.param(build(device="gpu7"), ValueError, r"device must name a device such as 'cpu'", id=f"{name}-device-name"),
        pytest.param(build(device=3.5), ValueError, r"device must name a device such as 'cpu'", id=f"{name}-device-type"),
        pytest.param(build(dtype=torch.int64), TypeError, r"dtype must be float32 or float64", id=f"{name}-dtype"),
        pytest.param(build(vector_chunk=0), ValueError, r"vector_chunk must be an int >= 1", id=f"{name}-vector_chunk"),
    ]


def stats(**changes):
    return lambda: cw.loss_stats(MODEL, LOSS, BATCHES, **changes)


def spectrum(**changes):
    return lambda: cw.spectrum(MODEL, BATCHES, **{"loss_fn": LOSS, "steps": 3, **changes})


def hessian():
    return cw.Hessian(MODEL, LOSS, BATCHES)


def ggn():
    return cw.GGN(MODEL, LOSS, BATCHES)


def landscape(**changes):
    arguments = {"directions": [torch.ones(DIM, dtype=torch.float64)], "n_points": 3, "loss_fn": LOSS, **changes}
    return lambda: loss_landscape(MODEL, BATCHES, **arguments)


FUNCTION_CASES = [
    pytest.param(stats(curvature="fisher"), ValueError, r"curvature must name 'hessian' and/or 'ggn'; got \['fisher'\]",
                 id="loss_stats-curvature-unknown-name"),
    pytest.param(stats(curvature=["hessian", "fisher"]), ValueError, r"curvature must name .*\['fisher'\]",
                 id="loss_stats-curvature-unknown-in-list"),
    pytest.param(stats(curvature=3), TypeError, r"curvature must be 'hessian', 'ggn' or a list of them; got 3",
                 id="loss_stats-curvature-int"),
    pytest.param(stats(num_probes=0), ValueError, r"num_probes must be an int >= 1", id="loss_stats-num_probes"),
    pytest.param(stats(seed="abc"), ValueError, r"seed must be an int", id="loss_stats-seed"),
    pytest.param(stats(progress="yes"), TypeError, r"progress must be None or a callable", id="loss_stats-progress"),
    pytest.param(stats(cancel=True), TypeError, r"cancel must be None or an object with an is_set\(\) method",
                 id="loss_stats-cancel"),
    pytest.param(stats(params=[]), ValueError, r"params is an empty selection", id="loss_stats-params-empty"),
    pytest.param(spectrum(matrix="fisher"), ValueError, r"matrix must be one of \('hessian', 'ggn'\)", id="spectrum-matrix"),
    pytest.param(spectrum(steps=0), ValueError, r"steps must be an int >= 1", id="spectrum-steps"),
    pytest.param(spectrum(progress="yes"), TypeError, r"progress must be None or a callable", id="spectrum-progress"),
    pytest.param(spectrum(cancel=True), TypeError, r"cancel must be None or an object with an is_set", id="spectrum-cancel"),
    pytest.param(spectrum(seed="abc"), ValueError, r"seed must be an int", id="spectrum-seed"),
    pytest.param(spectrum(backend="fast"), ValueError, r"backend must be one of", id="spectrum-backend"),
    pytest.param(spectrum(meta=["model"]), TypeError, r"meta must be None or a mapping of metadata; got list",
                 id="spectrum-meta-list"),
    pytest.param(lambda: cw.spectrum(MODEL, [(torch.full((4, 5), math.nan, dtype=torch.float64), BATCHES[0][1][:4])],
                                     loss_fn=LOSS, steps=3), ValueError,
                 r"the hessian of the model's loss on data is not finite \(lanczos step 1: the operator product "
                 r"contains NaN or inf; stopped\); look for NaN or inf in data", id="spectrum-NaN-inputs"),
    pytest.param(lambda: exact_diagonal(hessian(), block_size=0), ValueError, r"block_size must be an int >= 1",
                 id="exact_diagonal-block_size"),
    pytest.param(lambda: exact_diagonal(hessian(), progress="yes"), TypeError, r"progress must be None or a callable",
                 id="exact_diagonal-progress"),
    pytest.param(lambda: exact_diagonal(hessian(), cancel=True), TypeError, r"cancel must be None or an object",
                 id="exact_diagonal-cancel"),
    pytest.param(lambda: hutchinson_diagonal(hessian(), 0), ValueError, r"num_samples must be an int >= 1",
                 id="hutchinson_diagonal-num_samples"),
    pytest.param(lambda: hutchinson_diagonal(hessian(), 4, seed="abc"), ValueError, r"seed must be an int",
                 id="hutchinson_diagonal-seed"),
    pytest.param(lambda: hutchinson_diagonal(hessian(), 4, cancel=threading.Lock()), TypeError,
                 r"cancel must be None or an object with an is_set", id="hutchinson_diagonal-cancel-lock"),
    pytest.param(lambda: mc_ggn_diagonal(hessian()), TypeError, r"ggn must be a curvwidgets GGN operator; got Hessian",
                 id="mc_ggn_diagonal-operator"),
    pytest.param(lambda: mc_ggn_diagonal(ggn(), num_mc=0), ValueError, r"num_mc must be an int >= 1",
                 id="mc_ggn_diagonal-num_mc"),
    pytest.param(lambda: mc_ggn_diagonal(ggn(), seed=-1), ValueError, r"seed must be an int", id="mc_ggn_diagonal-seed"),
    pytest.param(lambda: mc_ggn_diagonal(ggn(), progress=1), TypeError, r"progress must be None or a callable",
                 id="mc_ggn_diagonal-progress"),
    pytest.param(lambda: random_directions(MODEL, seed="abc"), ValueError, r"seed must be an int",
                 id="random_directions-seed"),
    pytest.param(lambda: random_directions(MODEL, filter_normalized="yes"), ValueError,
                 r"filter_normalized must be True or False", id="random_directions-filter_normalized"),
    pytest.param(lambda: random_directions(MODEL, count=0), ValueError, r"count must be an int >= 1",
                 id="random_directions-count"),
    pytest.param(lambda: random_directions(lambda x: x), TypeError, r"model must be a torch.nn.Module",
                 id="random_directions-model"),
    pytest.param(lambda: random_directions(MODEL, params=[]), ValueError, r"params is an empty selection",
                 id="random_directions-params-empty"),
    pytest.param(landscape(progress="yes"), TypeError, r"progress must be None or a callable", id="loss_landscape-progress"),
    pytest.param(landscape(cancel=True), TypeError, r"cancel must be None or an object", id="loss_landscape-cancel"),
    pytest.param(landscape(plane="yes"), ValueError, r"plane must be True or False", id="loss_landscape-plane"),
    pytest.param(landscape(loss_fn=3), TypeError, r"loss_fn must be None or callable", id="loss_landscape-loss_fn"),
    pytest.param(landscape(meta=["a"]), TypeError, r"meta must be None or a mapping", id="loss_landscape-meta"),
    pytest.param(landscape(device="gpu7"), ValueError, r"device must name a device", id="loss_landscape-device"),
    pytest.param(landscape(dist=0), ValueError, r"dist must be a finite number > 0", id="loss_landscape-dist"),
    pytest.param(landscape(directions=[torch.ones(DIM, dtype=torch.complex128)]), TypeError,
                 r"direction 'vector 1' must be real; got dtype torch.complex128",
                 id="loss_landscape-complex-direction"),
    pytest.param(lambda: loss_landscape(MODEL, WIDER, [torch.ones(DIM)], n_points=3), ValueError,
                 r"data: the model or loss_fn failed on a batch of inputs of shape \(4, 7\) \(torch.float64\) .*"
                 r"RuntimeError: mat1 and mat2", id="loss_landscape-inputs-of-another-width"),
    pytest.param(lambda: loss_landscape(MODEL, (BATCHES, WIDER), [torch.ones(DIM)], n_points=3), ValueError,
                 r"data: the model or loss_fn failed on a batch of inputs of shape \(4, 7\)",
                 id="loss_landscape-test-inputs-of-another-width"),
    pytest.param(lambda: loss_landscape(MODEL, [(BATCHES[0][0], torch.full_like(BATCHES[0][1], 7))], [torch.ones(DIM)],
                                        n_points=3), ValueError,
                 r"data: the model or loss_fn failed on a batch .*IndexError: Target 7 is out of bounds",
                 id="loss_landscape-target-out-of-range"),
    pytest.param(lambda: loss_landscape(MODEL, (BATCHES, []), [torch.ones(DIM)], n_points=3), ValueError,
                 r"data: the test batches hold no samples the loss counts", id="loss_landscape-empty-test-split"),
    pytest.param(lambda: cw.Hessian(MODEL, LOSS, [(BATCHES[0][0][:4], BATCHES[0][1][:6])]), ValueError,
                 r"data must yield inputs and targets with as many samples .*inputs of shape \(4, 5\) and targets of "
                 r"shape \(6,\)", id="Hessian-more-targets-than-inputs"),
    pytest.param(lambda: cw.Hessian(MODEL, LOSS, WIDER) @ torch.ones(DIM, dtype=torch.float64), ValueError,
                 r"data: the model or loss_fn failed on a batch of inputs of shape \(4, 7\) \(torch.float64\) .*"
                 r"RuntimeError: mat1 and mat2", id="Hessian-inputs-of-another-width"),
    pytest.param(lambda: cw.GGN(MODEL, LOSS, WIDER, backend="double-backward") @ torch.ones(DIM, dtype=torch.float64),
                 ValueError, r"data: the model or loss_fn failed on a batch of inputs of shape \(4, 7\)",
                 id="GGN-inputs-of-another-width"),
    pytest.param(lambda: cw.loss_stats(MODEL, LOSS, [(BATCHES[0][0], torch.full_like(BATCHES[0][1], 7))]), ValueError,
                 r"data: the model or loss_fn failed on a batch .*IndexError: Target 7 is out of bounds",
                 id="loss_stats-target-out-of-range"),
    pytest.param(lambda: cw.GGN(MODEL, LOSS, BATCHES[:1] + WIDER) @ torch.ones(DIM, dtype=torch.float64), ValueError,
                 r"data must yield inputs of one shape per sample; batch 1 has \(7,\), batch 0 has \(5,\)",
                 id="GGN-second-batch-of-another-width"),
]


@pytest.mark.parametrize("call, exception, message",
                         operator_cases(cw.Hessian) + operator_cases(cw.GGN) + FUNCTION_CASES)
def test_bad_input_raises_a_clear_error(call, exception, message):
    with pytest.raises(exception, match=message):
        call()


def test_data_the_model_cannot_take_leave_the_backend_to_be_chosen():
    op = cw.Hessian(MODEL, LOSS, WIDER)
    with pytest.raises(ValueError, match=r"data: the model or loss_fn failed"):
        op @ torch.ones(DIM, dtype=torch.float64)
    assert op.backend is None and op.fallback_reason is None  # not pinned to double backward by the data's error
    good = cw.Hessian(MODEL, LOSS, BATCHES)
    good @ torch.ones(DIM, dtype=torch.float64)
    assert good.backend in ("forward-over-reverse", "double-backward") and good.fallback_reason is None


def test_a_loss_that_counts_no_target_is_an_error():
    batches = [(inputs, torch.full_like(targets, -1)) for inputs, targets in BATCHES]
    op = cw.Hessian(MODEL, nn.CrossEntropyLoss(ignore_index=-1), batches)
    with pytest.raises(ValueError, match=r"loss_fn counts no target of data: every target is its ignore_index \(-1\)"):
        op @ torch.ones(DIM, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"loss_fn counts no target of data"):
        cw.loss_stats(MODEL, nn.CrossEntropyLoss(ignore_index=-1), batches, curvature=[])


def test_a_regression_landscape_is_the_mean_squared_error_without_an_accuracy():
    """MSE of a linear model along a coordinate, in closed form; accuracy is not defined for such targets (NaN)."""
    model = nn.Linear(3, 1, bias=False).double()
    generator = torch.Generator().manual_seed(4)
    inputs = torch.randn(10, 3, generator=generator, dtype=torch.float64)
    targets = torch.randn(10, 1, generator=generator, dtype=torch.float64)
    direction = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    result = loss_landscape(model, [(inputs[:4], targets[:4]), (inputs[4:], targets[4:])], [direction], dist=0.5,
                            n_points=3, loss_fn=nn.MSELoss())
    weight = model.weight.detach()[0]
    expected = [((inputs @ (weight + t * direction) - targets[:, 0]) ** 2).mean().item() for t in (-0.5, 0.0, 0.5)]
    np.testing.assert_allclose(result["train_loss"][0], expected, rtol=1e-13)
    assert np.isnan(result["train_accuracy"]).all() and result.done.all()

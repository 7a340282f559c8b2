"""The curvature monitor of ``cw.train``: sharpness, gradient overlap and trace measured while training.

References: a cold Lanczos run to convergence (and the dense Hessian) at the
weights of every measured epoch; the weights of the same run without the
monitor (bit for bit); an uninterrupted run against a resumed one.
"""

import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets.training.monitor import CurvatureMeasurer

pytestmark = pytest.mark.usefixtures("one_thread")


def small_run(tmp_path=None, monitor=None, epochs=3, **options):
    torch.manual_seed(0)
    data = cw.data.load("digits", seed=0, batch_size=128)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 12), torch.nn.Tanh(), torch.nn.Linear(12, 10))
    history = cw.train(model, data, epochs=epochs, optimizer_kwargs={"lr": 0.1}, out_dir=tmp_path, monitor=monitor,
                       **options)
    return history, data


def weights(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_the_weights_follow_the_same_trajectory_with_the_monitor_on():
    plain, _ = small_run()
    monitored, _ = small_run(monitor=cw.CurvatureMonitor(trace_products=12, top=2))
    assert torch.equal(weights(plain.model), weights(monitored.model))
    for without, with_monitor in zip(plain.rows, monitored.rows):
        for key in ("train_loss", "test_loss", "weight_l2"):
            assert without[key] == with_monitor[key]
    assert np.isnan(plain["sharpness"]).all()
    assert plain.config["monitor"] is None and "curvature_time_fraction" not in plain.final


def test_each_warm_started_measurement_equals_a_cold_run_at_those_weights():
    """After every epoch the model's weights are captured; the sharpness equals the converged cold top eigenvalue."""
    monitor = cw.CurvatureMonitor(num_samples=200, tol=1e-7, top=2, seed=3)
    captured = []

    def keep_weights(event):
        if event.stage == "train" and event.step > 0:
            captured.append(weights(event.partial.model).clone())

    history, data = small_run(monitor=monitor, progress=keep_weights)
    model = history.model
    loss = torch.nn.CrossEntropyLoss()
    for row, flat in zip(history.rows, captured):
        torch.nn.utils.vector_to_parameters(flat, model.parameters())
        operator = cw.Hessian(model, loss, data.evaluation_loader("train"), num_samples=200, seed=3)
        cold = cw.eigenpairs(operator, 2, tol=1e-10, seed=11)
        assert row["sharpness"] == pytest.approx(cold.values[-1], rel=1e-4)
        assert row["sharpness_2"] == pytest.approx(cold.values[-2], rel=1e-4)
        gradient = torch.zeros(operator.dim, dtype=torch.float64)
        total = 0.0
        for _, weight, _, batch_gradient in operator.batch_gradients():
            gradient += weight * batch_gradient
            total += weight
        gradient /= total
        basis = cold.vectors.double()
        overlap = float((basis.T @ gradient).square().sum() / gradient.square().sum())
        assert row["gradient_overlap"] == pytest.approx(overlap, rel=1e-3, abs=1e-6)


def test_the_monitor_every_k_epochs_and_its_cost():
    history, _ = small_run(monitor=cw.CurvatureMonitor(every=2), epochs=5)
    measured = ~np.isnan(history["sharpness"])
    np.testing.assert_array_equal(measured, [False, True, False, True, True])  # every 2nd, and the last
    fraction = np.nansum(history["curvature_seconds"]) / history["seconds"].sum()
    assert history.final["curvature_time_fraction"] == pytest.approx(fraction)
    assert history.config["monitor"]["every"] == 2


def test_a_resumed_run_measures_as_an_uninterrupted_one(tmp_path):
    monitor = cw.CurvatureMonitor(tol=1e-3, trace_products=9)
    whole, _ = small_run(tmp_path / "whole", monitor=monitor, epochs=4, save_every=1)
    small_run(tmp_path / "part", monitor=monitor, epochs=2, save_every=1)
    resumed, _ = small_run(tmp_path / "resumed", monitor=monitor, epochs=4, save_every=1,
                           resume=tmp_path / "part" / "checkpoint-00002.pt")
    for key in ("sharpness", "gradient_overlap", "curvature_trace", "curvature_products"):
        np.testing.assert_array_equal(resumed[key], whole[key])
    assert torch.equal(weights(resumed.model), weights(whole.model))


def test_a_model_computing_its_loss_and_a_ggn_monitor():
    history, _ = small_run(monitor=cw.CurvatureMonitor(matrix="ggn", num_samples=64), epochs=1)
    assert history["sharpness"][0] > 0 and 0 <= history["gradient_overlap"][0] <= 1


@pytest.mark.parametrize("options, error, message", [
    (dict(every=0), ValueError, r"every must be an int >= 1"),
    (dict(matrix="fisher"), ValueError, r"matrix must be one of"),
    (dict(tol=0.0), ValueError, r"tol must be"),
    (dict(trace_products=2), ValueError, r"trace_products must be 0 \(no trace\) or at least 3"),
    (dict(num_samples=0), ValueError, r"num_samples must be an int >= 1"),
    (dict(data=torch.zeros(3)), TypeError, r"data must be None or a re-iterable of batches"),
])
def test_bad_settings_name_the_argument(options, error, message):
    with pytest.raises(error, match=message):
        cw.CurvatureMonitor(**options)


def test_train_refuses_a_monitor_without_measurement_data_for_given_batches():
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    with pytest.raises(ValueError, match=r"monitor: cw.train was given batches, not a data set"):
        cw.train(torch.nn.Linear(4, 3), (batches, batches), epochs=1, monitor=cw.CurvatureMonitor())
    with pytest.raises(TypeError, match=r"monitor must be None or a cw.CurvatureMonitor"):
        cw.train(torch.nn.Linear(4, 3), (batches, batches), epochs=1, monitor={"every": 1})
    history = cw.train(torch.nn.Linear(4, 3), (batches, batches), epochs=1,
                       monitor=cw.CurvatureMonitor(data=batches, num_samples=None))
    assert history["sharpness"][0] > 0


def test_the_measurer_leaves_the_global_random_streams_as_found():
    _, data = small_run(epochs=1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 5), torch.nn.Tanh(), torch.nn.Linear(5, 10))
    measurer = CurvatureMeasurer(cw.CurvatureMonitor(trace_products=6), torch.nn.CrossEntropyLoss(), data)
    state = torch.get_rng_state()
    first = measurer.measure(model)
    assert torch.equal(torch.get_rng_state(), state)
    again = measurer.measure(model)  # the same weights: the warm start is the top eigenvector already
    assert again["curvature_products"] - 6 <= 2 < first["curvature_products"] - 6  # 6: the trace's products
    assert again["sharpness"] == pytest.approx(first["sharpness"], rel=1e-4)

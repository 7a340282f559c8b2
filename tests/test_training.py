"""The training loop, its schedules, checkpoints and exact resume (CPU)."""

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import curvwidgets as cw
from curvwidgets.training import schedules
from curvwidgets.training.checkpoint import load_checkpoint
from curvwidgets.training.data import TensorLoader
from rank_runner import run_ranks, run_torchrun

WORKER = Path(__file__).with_name("training_worker.py")


# ---- schedules ------------------------------------------------------------------------------------

def eq19(t: int, T: int, r: float) -> float:
    """The paper's eq. 19, written out."""
    if t / T <= 0.5:
        return 1.0
    if t / T <= 0.9:
        return 1.0 - (1.0 - r) * (t / T - 0.5) / 0.4
    return r


@pytest.mark.parametrize("epochs", [10, 7, 300])
def test_linear_schedule_is_eq19_at_every_epoch(epochs):
    schedule = schedules.create("linear", epochs, final_ratio=0.01)
    for t in range(epochs):
        assert schedule(t) == pytest.approx(eq19(t, epochs, 0.01), abs=1e-15)
    # the three pieces meet where eq. 19 says: flat to 50%, r from 90% on
    assert schedules.create("linear", 10)(5) == 1.0 and schedules.create("linear", 10)(9) == pytest.approx(0.01)


def test_cosine_step_and_constant_schedules():
    cosine = schedules.create("cosine", 8, final_ratio=0.1)
    assert [cosine(t) for t in (0, 4)] == pytest.approx([1.0, 0.55])
    assert cosine(2) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi / 4)))
    step = schedules.create("step", 8, milestones=(0.5, 0.75), gamma=0.2)
    assert [step(t) for t in range(8)] == pytest.approx([1, 1, 1, 1, 0.2, 0.2, 0.04, 0.04])
    assert {schedules.create("constant", 3)(t) for t in range(3)} == {1.0}


def test_schedule_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"schedule must be one of \('constant', 'linear', 'cosine', 'step'\)"):
        schedules.create("exponential", 10)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        schedules.create("linear", 0)
    with pytest.raises(ValueError, match="takes options"):
        schedules.create("constant", 5, final_ratio=0.1)
    with pytest.raises(ValueError, match="final_ratio"):
        schedules.create("linear", 5, final_ratio=2.0)


# ---- the loop ------------------------------------------------------------------------------------

class DropoutNet(nn.Module):
    """Small CNN with BatchNorm and dropout: every source of state a resume must restore."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(24, classes))

    def forward(self, x):
        return self.head(self.features(x))


def loaders(seed: int = 1, augment: bool = True, samples: int = 40):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (samples, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (samples,), generator=generator)
    common = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), seed=seed)
    return (TensorLoader(images, labels, 16, shuffle=True, augment=augment, **common),
            TensorLoader(images[:24], labels[:24], 12, shuffle=False, augment=False, **common))


def fresh_model() -> nn.Module:
    torch.manual_seed(5)
    return DropoutNet()


class CancelAfter:
    """A cancel token that becomes set after ``calls`` checks."""

    def __init__(self, calls: int):
        self.calls = calls

    def is_set(self) -> bool:
        self.calls -= 1
        return self.calls < 0


def test_history_rows_and_file(tmp_path):
    history = cw.train(fresh_model(), loaders(), epochs=3, optimizer_kwargs={"lr": 0.05}, out_dir=tmp_path)
    assert [row["epoch"] for row in history.rows] == [1, 2, 3]
    assert set(history.rows[0]) == set(cw.results.HISTORY_COLUMNS)
    assert history["lr"] == pytest.approx([0.05 * eq19(t, 3, 0.01) for t in range(3)])
    weights = torch.cat([p.detach().reshape(-1).double() for p in history.model.parameters()])
    assert history.rows[-1]["weight_l2"] == pytest.approx(float(weights.norm()))
    assert history.rows[-1]["weight_linf"] == pytest.approx(float(weights.abs().max()))
    assert all(0 <= row["test_top1"] <= row["test_top5"] <= 1 for row in history.rows)
    assert cw.TrainingHistory.load(tmp_path / "history.json") == history
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-00003.pt", "history.json"]


def test_test_figures_match_a_direct_evaluation():
    model = fresh_model()
    train_loader, test_loader = loaders()
    history = cw.train(model, (train_loader, test_loader), epochs=2)
    model.eval()
    with torch.no_grad():
        outputs = torch.cat([model(x) for x, _ in test_loader])
        targets = torch.cat([y for _, y in test_loader])
    assert history.rows[-1]["test_loss"] == pytest.approx(float(nn.functional.cross_entropy(outputs, targets)), rel=1e-6)
    assert history.rows[-1]["test_top1"] == pytest.approx(float((outputs.argmax(1) == targets).double().mean()))


def test_checkpoints_load_with_weights_only(tmp_path):
    cw.train(fresh_model(), loaders(), epochs=4, out_dir=tmp_path, save_every=2)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["checkpoint-00002.pt", "checkpoint-00004.pt", "history.json"]  # nothing half-written left
    state = torch.load(tmp_path / "checkpoint-00002.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]["rows"]) == 2
    assert set(state) >= {"model", "optimizer", "schedule", "rng", "config", "swa"}
    assert load_checkpoint(tmp_path)["epoch"] == 4


@pytest.mark.parametrize(("name", "options"), [
    ("SGD", {"lr": 0.1, "momentum": 0.9}), ("KFAC", {"lr": 0.02}), ("SWATS", {"lr": 1e-2}),
    ("LanczosSFN", {"lr": 0.2, "lanczos_steps": 3, "backend": "double-backward"}), ("Adam", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.05}), ("LanczosGGN", {"lr": 0.2, "momentum": 0.5, "lanczos_steps": 3}),
])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, name, options):
    whole = fresh_model()
    cw.train(whole, loaders(), epochs=5, optimizer=name, optimizer_kwargs=options, seed=3)
    parted = fresh_model()
    with pytest.raises(cw.Cancelled) as cancelled:
        cw.train(parted, loaders(), epochs=5, optimizer=name, optimizer_kwargs=options, seed=3,
                 out_dir=tmp_path, cancel=CancelAfter(2 * 3 + 2))  # 3 batches + 1 report per epoch: cancel in epoch 3
    assert len(cancelled.value.result) == 2
    assert (tmp_path / "checkpoint-00002.pt").is_file()
    resumed = DropoutNet()  # different initial weights: everything must come from the checkpoint
    history = cw.train(resumed, loaders(), epochs=5, optimizer=name, optimizer_kwargs=options, seed=3,
                       resume=tmp_path)
    assert len(history) == 5
    for (key, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


def test_resume_then_cancel_writes_the_resumed_epoch_into_the_new_folder(tmp_path):
    cw.train(fresh_model(), loaders(), epochs=2, out_dir=tmp_path / "first", schedule="constant")
    with pytest.raises(cw.Cancelled):
        cw.train(fresh_model(), loaders(), epochs=4, out_dir=tmp_path / "second", schedule="constant",
                 resume=tmp_path / "first", cancel=CancelAfter(1))
    state = load_checkpoint(tmp_path / "second")
    assert state["epoch"] == 2 and len(state["history"]["rows"]) == 2
    assert state["history"]["checkpoints"][-1] == str(tmp_path / "second" / "checkpoint-00002.pt")


def test_resume_with_other_settings_names_the_argument(tmp_path):
    cw.train(fresh_model(), loaders(), epochs=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"resume: optimizer='Adam' differs from the checkpoint's run \('SGD'"):
        cw.train(fresh_model(), loaders(), epochs=2, optimizer="Adam", resume=tmp_path)
    with pytest.raises(ValueError, match="resume: seed=1 differs"):
        cw.train(fresh_model(), loaders(), epochs=2, seed=1, resume=tmp_path)


def test_resume_refuses_other_optimiser_options_and_the_config_records_those_used(tmp_path):
    """A resumed run would take the checkpoint's momentum and weight decay whatever it was given: refused instead."""
    history = cw.train(fresh_model(), loaders(), epochs=1, out_dir=tmp_path, optimizer_kwargs={"lr": 0.1})
    assert history.config["optimizer_kwargs"] == {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    with pytest.raises(ValueError, match=r"optimizer_kwargs differ .* in momentum \(0\.0 given, 0\.9 in the "
                                         r"checkpoint\), weight_decay \(0\.0 given, 0\.0005 in the checkpoint\)"):
        cw.train(fresh_model(), loaders(), epochs=2, resume=tmp_path,
                 optimizer_kwargs={"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0})
    resumed = cw.train(fresh_model(), loaders(), epochs=2, resume=tmp_path, optimizer_kwargs={"lr": 0.1})
    assert [row["epoch"] for row in resumed.rows] == [1, 2]


def test_a_given_optimiser_records_its_settings_and_resumes_only_with_them(tmp_path):
    model = fresh_model()
    history = cw.train(model, loaders(), epochs=1, out_dir=tmp_path,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    recorded = history.config["optimizer_kwargs"]
    assert history.config["optimizer"] == "SGD" and (recorded["lr"], recorded["momentum"]) == (0.1, 0.9)
    other = fresh_model()
    with pytest.raises(ValueError, match=r"optimizer_kwargs differ .* in momentum \(0\.5 given, 0\.9 in the "
                                         r"checkpoint\)"):
        cw.train(other, loaders(), epochs=2, resume=tmp_path,
                 optimizer=torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.5))


def test_finished_swa_run_resumes_to_the_same_weights(tmp_path):
    whole = fresh_model()
    history = cw.train(whole, loaders(), epochs=4, swa_start=2, swa_lr=0.01, out_dir=tmp_path)
    again = DropoutNet()
    resumed = cw.train(again, loaders(), epochs=4, swa_start=2, swa_lr=0.01, resume=tmp_path)
    assert resumed.final == history.final
    for a, b in zip(whole.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_kfac_under_bf16_autocast():
    history = cw.train(fresh_model(), learnable_loaders(), epochs=2, optimizer="KFAC", amp=True,
                       optimizer_kwargs={"lr": 0.02})
    assert np.isfinite(history["train_loss"]).all()


def test_resume_from_another_architecture_names_the_keys(tmp_path):
    cw.train(fresh_model(), loaders(), epochs=1, out_dir=tmp_path)
    other = nn.Sequential(nn.Flatten(), nn.Linear(192, 3))
    with pytest.raises(ValueError, match=r"does not fit the model.*missing in the checkpoint: 1\.bias, 1\.weight"
                                         r".*not in the model: features\.0\.bias"):
        cw.train(other, loaders(), epochs=2, resume=tmp_path)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def poisoned(outputs, targets):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(outputs, targets)
        return loss * float("nan") if calls["n"] > 10 else loss  # 3 training + 2 test batches per epoch

    with pytest.raises(cw.TrainingDiverged, match="epoch 3; last good checkpoint: .*checkpoint-00002.pt") as error:
        cw.train(fresh_model(), loaders(augment=False), epochs=5, loss_fn=poisoned, out_dir=tmp_path)
    state = torch.load(error.value.checkpoint, weights_only=True)
    assert state["epoch"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_cancel_from_another_thread_keeps_the_finished_epoch(tmp_path):
    token = threading.Event()
    events = []

    def progress(event):
        events.append(event)
        if event.step == 1:
            token.set()

    with pytest.raises(cw.Cancelled) as cancelled:
        cw.train(fresh_model(), loaders(), epochs=4, out_dir=tmp_path, progress=progress, cancel=token)
    assert [e.step for e in events] == [1] and cancelled.value.step == 1
    assert load_checkpoint(tmp_path)["epoch"] == 1


def test_swa_averages_the_late_epochs_and_updates_batchnorm():
    model = fresh_model()
    snapshots = {}

    def keep(event):
        snapshots[event.stage, event.step] = {k: v.clone() for k, v in model.named_parameters()}

    train_loader, test_loader = loaders(augment=False)
    history = cw.train(model, (train_loader, test_loader), epochs=4, swa_start=2, swa_lr=0.01, progress=keep)
    assert history["lr"] == pytest.approx([0.05, 0.05 * eq19(1, 2, 0.01 / 0.05), 0.01, 0.01])
    assert history.final["swa_epochs_averaged"] == 2.0
    for name, value in model.named_parameters():
        average = (snapshots["train", 3][name] + snapshots["train", 4][name]) / 2
        torch.testing.assert_close(value, average, rtol=1e-6, atol=1e-7)
    # BatchNorm statistics recomputed for the averaged weights: the mean of the batch means of the
    # first convolution's outputs over the training data (torch's update_bn, cumulative average)
    with torch.no_grad():
        batch_means = torch.stack([model.features[0](x).mean(dim=(0, 2, 3)) for x, _ in train_loader])
    torch.testing.assert_close(model.features[1].running_mean, batch_means.mean(0), rtol=1e-5, atol=1e-6)


def test_named_model_needs_a_named_data_set():
    with pytest.raises(ValueError, match="data must be a name or a DataSet when model is a name"):
        cw.train("SmallCNN", loaders(), epochs=1)


def test_data_sharded_for_another_group_is_refused():
    sharded = cw.data.load("digits", batch_size=64, rank=1, world_size=2)
    with pytest.raises(ValueError, match=r"data: a loader is sharded for rank 1 of 2 but this is rank 0 of 1"):
        cw.train("SmallCNN", sharded, epochs=1)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="PreResNet20.*SmallCNN"):
        cw.train("ResNet9000", "digits", epochs=1)
    with pytest.raises(ValueError, match="CIFAR10.*digits"):
        cw.train(fresh_model(), "ImageNet", epochs=1)
    with pytest.raises(ValueError, match="schedule must be one of"):
        cw.train(fresh_model(), loaders(), epochs=1, schedule="warm")
    with pytest.raises(ValueError, match="SGD"):
        cw.train(fresh_model(), loaders(), epochs=1, optimizer="Adagrad-ish")
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        cw.train(fresh_model(), loaders(), epochs=0)
    with pytest.raises(ValueError, match="save_every needs out_dir"):
        cw.train(fresh_model(), loaders(), epochs=1, save_every=1)


def learnable_loaders():
    """64 images labelled by their brightest channel: a rule the small CNN can learn in a few epochs."""
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = images.float().mean(dim=(2, 3)).argmax(dim=1)
    common = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), seed=1, augment=False)
    return (TensorLoader(images, labels, 16, shuffle=True, **common),
            TensorLoader(images, labels, 32, shuffle=False, **common))  # eval-mode loss on the training set


@pytest.mark.parametrize("name", cw.optim.names())
def test_every_optimiser_trains_through_the_loop(name):
    rates = {"SGD": 0.1, "Adam": 1e-2, "AdamW": 1e-2, "SWATS": 1e-2, "KFAC": 0.02, "LanczosSFN": 0.2, "LanczosGGN": 0.2}
    history = cw.train(fresh_model(), learnable_loaders(), epochs=5, optimizer=name, schedule="constant",
                       optimizer_kwargs={"lr": rates[name]})
    assert history.config["optimizer"] == name
    assert history["test_loss"][-1] < 0.9 * history["test_loss"][0]


def test_channels_last_and_bf16_autocast_run_on_cpu():
    reference = fresh_model()
    cw.train(reference, loaders(), epochs=2)
    channels_last = fresh_model()
    cw.train(channels_last, loaders(), epochs=2, channels_last=True)
    for a, b in zip(reference.parameters(), channels_last.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert channels_last.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    mixed = cw.train(fresh_model(), loaders(), epochs=2, amp=True)
    assert mixed.config["amp"] and np.isfinite(mixed["train_loss"]).all()
    assert mixed["train_loss"] == pytest.approx(cw.train(fresh_model(), loaders(), epochs=2)["train_loss"], rel=0.05)


def test_two_gloo_processes_train_like_one(tmp_path):
    single, double = run_ranks(WORKER, 1, tmp_path), run_ranks(WORKER, 2, tmp_path)
    assert single.keys() == double.keys()
    for name in single:  # float32 weights of size 0.3 after nine steps: a few units in the last place (measured 3e-8)
        np.testing.assert_allclose(double[name], single[name], rtol=0, atol=2e-7)


def test_small_cnn_learns_the_embedded_digits():
    """The embedded default: at least 90% test accuracy in a run of seconds on two cores."""
    data = cw.data.load("digits", batch_size=64, seed=0)
    history = cw.train("SmallCNN", data, epochs=8, optimizer_kwargs={"lr": 0.1}, seed=0, device="cpu")
    assert history.rows[-1]["test_top1"] >= 0.90
    assert history.rows[-1]["test_loss"] < history.rows[0]["test_loss"]


@pytest.mark.parametrize("name", ["LanczosGGN", "LanczosSFN"])
def test_lanczos_newton_defaults_train_the_mlp_on_the_digits(name):
    """The defaults train the shipped MLP: four steps on 256 digits reach well above chance (0.1).

    The former default lr=1.0 diverged (GGN: loss 5e5, 10% accuracy) or
    stalled (SFN: 21%) here; lr=0.1 gives about 80% and 70%.
    """
    digits = cw.data.load("digits", batch_size=64, augment=False)
    few = TensorLoader(digits.train.images[:256], digits.train.targets[:256], 64, shuffle=True, augment=False,
                       mean=digits.mean, std=digits.std)
    history = cw.train("MLP", replace(digits, train=few), epochs=1, optimizer=name, device="cpu")
    assert np.isfinite(history["train_loss"]).all()
    assert history.rows[0]["test_top1"] > 0.5


def test_torchrun_launch_joins_the_group_and_keeps_ranks_in_step(tmp_path):
    """Two processes started with torchrun's environment: the same weights, BatchNorm buffers and statistics."""
    first, second = run_torchrun(Path(__file__).with_name("torchrun_worker.py"), 2, tmp_path)
    assert int(first["world"]) == 2
    assert first.keys() == second.keys()
    for key in first.keys() - {"rows"}:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    np.testing.assert_array_equal(first["rows"][:, :4], second["rows"][:, :4])  # statistics summed over ranks
    assert first["rows"][0, 4] == pytest.approx(1437)  # the 1437 training digits once, shared by the ranks

"""Named training models: parameter counts from closed-form formulas, one SGD step each, and name lookup."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from curvwidgets.training import models

# --- closed-form parameter counts ------------------------------------------------------------


def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def linear(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


VGG16_CONVS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def vgg16_count(num_classes: int, batch_norm: bool, cin: int = 3) -> int:
    total = 0
    for cout in VGG16_CONVS:
        total += conv(3, cin, cout) + (bn(cout) if batch_norm else 0)
        cin = cout
    return total + 2 * linear(512, 512) + linear(512, num_classes)


def preresnet_count(depth: int, num_classes: int) -> int:
    total = conv(3, 3, 16, bias=False)
    if depth < 44:  # basic blocks: BN, 3x3, BN, 3x3
        n, cin = (depth - 2) // 6, 16
        for planes in (16, 32, 64):
            for i in range(n):
                total += bn(cin) + conv(3, cin, planes, False) + bn(planes) + conv(3, planes, planes, False)
                if cin != planes:
                    total += conv(1, cin, planes, False)
                cin = planes
    else:  # bottlenecks: BN, 1x1, BN, 3x3, BN, 1x1 (x4)
        n, cin = (depth - 2) // 9, 16
        for planes in (16, 32, 64):
            for i in range(n):
                out = 4 * planes
                total += bn(cin) + conv(1, cin, planes, False) + bn(planes) + conv(3, planes, planes, False)
                total += bn(planes) + conv(1, planes, out, False)
                if cin != out:
                    total += conv(1, cin, out, False)
                cin = out
    return total + bn(cin) + linear(cin, num_classes)


def wrn_count(depth: int, k: int, num_classes: int, bias: bool) -> int:
    n = (depth - 4) // 6
    total, cin = conv(3, 3, 16, bias), 16
    for width in (16 * k, 32 * k, 64 * k):
        for i in range(n):
            total += bn(cin) + conv(3, cin, width, bias) + bn(width) + conv(3, width, width, bias)
            if cin != width:
                total += conv(1, cin, width, bias)
            cin = width
    return total + bn(cin) + linear(cin, num_classes)


def allcnn_count(num_classes: int) -> int:
    return (
        conv(3, 3, 96) + 2 * conv(3, 96, 96)
        + conv(3, 96, 192) + 3 * conv(3, 192, 192) + conv(1, 192, 192)
        + conv(1, 192, num_classes)
    )  # fmt: skip


def mlp_count(widths: list[int]) -> int:
    return sum(linear(a, b) for a, b in itertools.pairwise(widths))


def small_cnn_count(cin: int, num_classes: int, batch_norm: bool = True) -> int:
    widths = [(cin, 32), (32, 64), (64, 64)]
    convs = sum(conv(3, a, b, bias=not batch_norm) + (bn(b) if batch_norm else 0) for a, b in widths)
    return convs + linear(64, num_classes)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "num_classes", "kwargs", "expected"),
    [
        ("VGG16", 100, {}, vgg16_count(100, batch_norm=False)),
        ("VGG16", 10, {}, vgg16_count(10, batch_norm=False)),
        ("VGG16BN", 10, {}, vgg16_count(10, batch_norm=True)),
        ("PreResNet20", 10, {}, preresnet_count(20, 10)),
        ("PreResNet110", 100, {}, preresnet_count(110, 100)),
        ("PreResNet164", 10, {}, preresnet_count(164, 10)),
        ("WideResNet28x10", 10, {}, wrn_count(28, 10, 10, bias=True)),
        ("WideResNet28x10", 10, {"bias": False}, wrn_count(28, 10, 10, bias=False)),
        ("AllCNN", 10, {}, allcnn_count(10)),
        ("MLP", 10, {}, mlp_count([3 * 32 * 32, 512, 256, 10])),
        ("SmallCNN", 10, {}, small_cnn_count(3, 10)),
        ("SmallCNN", 10, {"batch_norm": False}, small_cnn_count(3, 10, batch_norm=False)),
    ],
)
def test_parameter_count_matches_formula(name: str, num_classes: int, kwargs: dict, expected: int) -> None:
    assert n_params(models.create(name, num_classes=num_classes, **kwargs)) == expected


def test_formulas_match_published_sizes() -> None:
    assert vgg16_count(100, batch_norm=False) == 15_291_300  # pins the SWA / Deep Curvature VGG-16
    assert round(wrn_count(28, 10, 10, bias=False) / 1e6, 1) == 36.5  # Zagoruyko & Komodakis, Table 1
    assert round(preresnet_count(20, 10) / 1e6, 2) == 0.27  # He et al. 2016: 0.27M
    assert round(preresnet_count(164, 10) / 1e6, 1) == 1.7  # He et al. 2016: 1.7M
    assert round(allcnn_count(10) / 1e6, 1) == 1.4  # Springenberg et al.: 1.4M
    assert 50_000 <= small_cnn_count(3, 10) <= 100_000


# --- one SGD step for every model ------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name in models.names() if name != "TinyTransformer"])  # images only
def test_one_sgd_step(name: str) -> None:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits = model(x)
    assert logits.shape == (2, 10)
    loss = nn.functional.cross_entropy(logits, y)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    for (pname, p), old in zip(model.named_parameters(), before):
        assert torch.isfinite(p).all(), pname
        assert not torch.equal(p, old), f"{pname} did not change"


# --- lookup and argument checks --------------------------------------------------------------


def test_names_are_unique_and_complete() -> None:
    expected = {f"VGG{d}{suffix}" for d in (11, 13, 16, 19) for suffix in ("", "BN")}
    expected |= {f"PreResNet{d}" for d in (20, 56, 110, 164)}
    expected |= {"WideResNet28x10", "AllCNN", "MLP", "SmallCNN", "TinyTransformer"}
    assert set(models.names()) == expected
    assert len(models.names()) == len(expected)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'ResNet50'") as info:
        models.create("ResNet50")
    for name in ("VGG16", "PreResNet110", "SmallCNN", "WideResNet28x10"):
        assert name in str(info.value)


def test_lookup_is_case_insensitive() -> None:
    torch.manual_seed(0)
    a = models.create("preresnet20")
    torch.manual_seed(0)
    b = models.create("PRERESNET20")
    assert type(a) is models.PreResNet and a.depth == 20
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert isinstance(models.create("vgg11bn"), models.VGG)


@pytest.mark.parametrize("argument", ["num_classes", "in_channels"])
@pytest.mark.parametrize("value", [0, -3, 2.0, True, "10"])
def test_bad_sizes_name_the_argument(argument: str, value: object) -> None:
    with pytest.raises(ValueError, match=argument):
        models.create("SmallCNN", **{argument: value})


def test_fixed_options_cannot_be_overridden() -> None:
    with pytest.raises(ValueError, match="depth"):
        models.create("VGG16", depth=19)


@pytest.mark.parametrize("depth", [21, 44, 100, 5, 20.0])
def test_bad_preresnet_depth(depth: object) -> None:
    with pytest.raises(ValueError, match="depth"):
        models.PreResNet(depth=depth)


def test_preresnet_block_rule() -> None:
    assert models.preresnet.preresnet_layout(20) == (models.preresnet.PreActBasicBlock, 3)
    for depth, n in ((56, 6), (110, 12), (164, 18)):
        assert models.preresnet.preresnet_layout(depth) == (models.preresnet.PreActBottleneck, n)


@pytest.mark.parametrize("name", ["SmallCNN", "VGG11", "MLP"])
def test_one_input_channel(name: str) -> None:
    model = models.create(name, num_classes=4, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("size", [8, 28, 64])
def test_small_cnn_other_sizes(size: int) -> None:
    with torch.no_grad():
        assert models.create("SmallCNN")(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_mlp_input_shape_and_hidden() -> None:
    model = models.create("MLP", num_classes=3, input_shape=(20,), hidden=())
    assert n_params(model) == linear(20, 3)
    assert model(torch.randn(4, 20)).shape == (4, 3)


def test_vgg_conv_initialisation() -> None:
    torch.manual_seed(0)
    model = models.create("VGG16")
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    assert torch.count_nonzero(last.bias) == 0
    std = last.weight.std().item()
    assert abs(std - (2.0 / (9 * 512)) ** 0.5) < 0.01 * std  # 2.4M samples

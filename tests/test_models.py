"""Architectures, CBAM gates and SE: hand-computed values, ablations, placement, torchvision equality."""
import math

import pytest
import torch
import torchvision
from torch import nn

from cbam_viz.models import CBAM, ChannelGate, SpatialGate, build_resnet, cbam_blocks, record_attention


def _fixed_linear(layer: nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def _identity_channel_gate(pools=("avg", "max")) -> ChannelGate:
    gate = ChannelGate(2, reduction=1, pools=pools)
    _fixed_linear(gate.fc1, [[1, 0], [0, 1]], [0, 0])
    _fixed_linear(gate.fc2, [[1, 0], [0, 1]], [0, 0])
    return gate


# Channel 0: values 1, 2, 3, -6 (avg 0, max 3); channel 1: -1, -1, -1, -1 (avg -1, max -1).
X = torch.tensor([[[[1.0, 2.0], [3.0, -6.0]], [[-1.0, -1.0], [-1.0, -1.0]]]])


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_channel_gate_matches_hand_computation():
    # MLP = relu then identity: channel 0 -> relu(0) + relu(3) = 3; channel 1 -> relu(-1) * 2 = 0.
    out = _identity_channel_gate()(X)
    assert out.shape == (1, 2, 1, 1)
    assert out[0, :, 0, 0].tolist() == pytest.approx([sigmoid(3.0), sigmoid(0.0)])


def test_channel_gate_biases_and_hidden_relu():
    gate = ChannelGate(2, reduction=2)  # hidden size 1
    _fixed_linear(gate.fc1, [[1, 1]], [0.5])
    _fixed_linear(gate.fc2, [[2], [-1]], [0.25, 0])
    # avg: [0, -1] -> fc1 = -0.5 -> relu 0 -> fc2 = [0.25, 0]
    # max: [3, -1] -> fc1 = 2.5 -> fc2 = [5.25, -2.5]; sum = [5.5, -2.5]
    assert gate(X)[0, :, 0, 0].tolist() == pytest.approx([sigmoid(5.5), sigmoid(-2.5)])


def test_se_style_ablation_uses_average_pool_only():
    out = _identity_channel_gate(pools=("avg",))(X)
    assert out[0, :, 0, 0].tolist() == pytest.approx([sigmoid(0.0), sigmoid(0.0)])
    out = _identity_channel_gate(pools=("max",))(X)
    assert out[0, :, 0, 0].tolist() == pytest.approx([sigmoid(3.0), sigmoid(0.0)])


def _spatial_gate_reading(channel: int, order=("max", "avg"), kernel=3) -> SpatialGate:
    """A gate whose conv copies one pooled map through its kernel centre; BN is the identity in eval."""
    gate = SpatialGate(kernel, order).eval()
    with torch.no_grad():
        gate.conv.weight.zero_()
        gate.conv.weight[0, channel, kernel // 2, kernel // 2] = 1.0
    return gate


def test_spatial_gate_stacks_max_then_avg_by_default():
    max_map = X.amax(dim=1)[0]  # [[1, 2], [3, -1]]
    avg_map = X.mean(dim=1)[0]  # [[0, 0.5], [1, -3.5]]
    bn_scale = 1 / math.sqrt(1 + 1e-5)
    first = _spatial_gate_reading(0)(X)[0, 0]
    second = _spatial_gate_reading(1)(X)[0, 0]
    assert first.flatten().tolist() == pytest.approx([sigmoid(v * bn_scale) for v in max_map.flatten().tolist()])
    assert second.flatten().tolist() == pytest.approx([sigmoid(v * bn_scale) for v in avg_map.flatten().tolist()])
    assert max_map.flatten().tolist() == [1.0, 2.0, 3.0, -1.0]
    swapped = _spatial_gate_reading(0, order=("avg", "max"))(X)[0, 0]
    assert torch.allclose(swapped, second)


def test_spatial_kernel_option_and_validation():
    assert SpatialGate(3).conv.weight.shape == (1, 2, 3, 3)
    assert SpatialGate(7).conv.weight.shape == (1, 2, 7, 7)
    assert SpatialGate().conv.bias is None
    with pytest.raises(ValueError, match="3 or 7"):
        SpatialGate(5)
    with pytest.raises(ValueError, match="arrangement"):
        CBAM(8, arrangement="diagonal")
    with pytest.raises(ValueError, match="channel pool"):
        ChannelGate(8, pools=("avg", "lse"))


@pytest.mark.parametrize("arrangement", ["channel_first", "spatial_first", "parallel"])
def test_arrangements_compose_the_gates_as_documented(arrangement):
    torch.manual_seed(0)
    cbam = CBAM(32, reduction=4, arrangement=arrangement).eval()
    x = torch.randn(2, 32, 6, 6)
    mc, ms = cbam.channel, cbam.spatial
    expected = {
        "channel_first": lambda: (x * mc(x)) * ms(x * mc(x)),
        "spatial_first": lambda: (x * ms(x)) * mc(x * ms(x)),
        "parallel": lambda: x * mc(x) * ms(x),
    }[arrangement]()
    assert torch.allclose(cbam(x), expected, atol=1e-6)


def test_channel_only_ablation_has_no_spatial_gate():
    model = build_resnet(18, "cbam", spatial=False, width=8)
    assert not any("spatial" in k for k in model.state_dict())
    x = torch.randn(1, 32, 4, 4)
    cbam = CBAM(32, spatial=False)
    assert torch.allclose(cbam(x), x * cbam.channel(x))


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_baseline_is_exactly_torchvision(depth):
    ours, theirs = build_resnet(depth), getattr(torchvision.models, f"resnet{depth}")()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    if depth in (18, 50):
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(ours.eval()(x), theirs.eval()(x))


def test_cbam_resnet50_parameter_count_matches_independent_implementations():
    # 28,089,624 is pytorchcv's cbam_resnet50 and the authors' ResNet-50 + CBAM.
    assert sum(p.numel() for p in build_resnet(50, "cbam").parameters()) == 28_089_624
    assert len(cbam_blocks(build_resnet(50, "cbam"))) == 16
    assert len(cbam_blocks(build_resnet(18, "cbam"))) == 8


@pytest.mark.parametrize("attention", ["cbam", "se"])
@pytest.mark.parametrize("depth", [18, 50])
def test_attention_sits_after_last_bn_before_addition(depth, attention):
    torch.manual_seed(0)
    model = build_resnet(depth, attention, width=8).eval()
    block = model.layer2[0]  # has a downsample shortcut
    last_bn = block.bn3 if depth == 50 else block.bn2
    seen = {}
    hooks = [
        last_bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.clone())),
        block.cbam.register_forward_hook(lambda m, i, o: seen.update(cbam_in=i[0].clone(), cbam_out=o.clone())),
        block.register_forward_hook(lambda m, i, o: seen.update(block_in=i[0].clone(), block_out=o.clone())),
    ]
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
        shortcut = block.downsample(seen["block_in"])
    for h in hooks:
        h.remove()
    assert torch.equal(seen["cbam_in"], seen["bn"])
    assert torch.allclose(seen["block_out"], torch.relu(seen["cbam_out"] + shortcut))


def test_se_resnet_matches_pytorchcv_parameter_counts_and_is_an_avg_only_channel_gate():
    # pytorchcv's seresnet50b / seresnet18: 28,088,024 / 11,778,592 parameters.
    se50, se18 = build_resnet(50, "se"), build_resnet(18, "se")
    assert sum(p.numel() for p in se50.parameters()) == 28_088_024
    assert sum(p.numel() for p in se18.parameters()) == 11_778_592
    assert se50.info.attention == "se" and se50.info.title == "ResNet-50 + SE" and se50.info.options == {}
    assert len(cbam_blocks(se50)) == 16
    for _, block in cbam_blocks(se50):
        assert block.spatial is None and block.channel.pools == ("avg",)
        assert block.channel.fc1.out_features == block.channel.fc1.in_features // 16
    torch.manual_seed(0)
    se = build_resnet(18, "se", width=8).layer1[0].cbam
    x = torch.randn(2, 8, 5, 5)
    excitation = torch.sigmoid(se.channel.fc2(torch.relu(se.channel.fc1(x.mean(dim=(2, 3))))))
    assert torch.allclose(se(x), x * excitation[:, :, None, None], atol=1e-6)


def test_stride_in_1x1_option():
    default, moved = build_resnet(50), build_resnet(50, "se", stride_in_1x1=True)
    for stage in ("layer2", "layer3", "layer4"):
        assert getattr(default, stage)[0].conv1.stride == (1, 1) and getattr(default, stage)[0].conv2.stride == (2, 2)
        assert getattr(moved, stage)[0].conv1.stride == (2, 2) and getattr(moved, stage)[0].conv2.stride == (1, 1)
        assert getattr(moved, stage)[0].downsample[0].stride == (2, 2)
    assert moved.layer1[0].conv1.stride == moved.layer1[0].conv2.stride == (1, 1)
    assert moved.info.options == {"stride_in_1x1": True}
    with torch.no_grad():
        assert moved.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="stride_in_1x1 needs bottleneck blocks"):
        build_resnet(18, stride_in_1x1=True)


def test_build_options_validation():
    with pytest.raises(ValueError, match="depth"):
        build_resnet(20)
    with pytest.raises(TypeError, match="attention='cbam'"):
        build_resnet(18, reduction=8)
    with pytest.raises(TypeError, match="unknown"):
        build_resnet(18, "cbam", kernel=3)
    with pytest.raises(ValueError, match="attention must be None or one of"):
        build_resnet(18, "bam")
    with pytest.raises(TypeError, match=r"\['spatial'\] are CBAM-only; SE takes \['reduction'\]"):
        build_resnet(18, "se", spatial=True)
    assert build_resnet(18, "se", reduction=4, width=16).layer1[0].cbam.channel.fc1.out_features == 4
    model = build_resnet(18, "cbam", reduction=8, spatial_kernel=3, width=16, stem="small", num_classes=10)
    assert model.layer1[0].cbam.channel.fc1.out_features == 16 // 8
    assert model.layer1[0].cbam.spatial.conv.kernel_size == (3, 3)
    assert model.conv1.kernel_size == (3, 3) and model.fc.out_features == 10
    assert model.info.options["reduction"] == 8 and model.info.options["width"] == 16


def test_attention_recorded_only_when_asked():
    model = build_resnet(18, "cbam", width=8, stem="small").eval()
    x = torch.randn(2, 3, 32, 32)
    with record_attention(model) as record:
        assert sum(len(m._forward_hooks) for m in model.modules()) == 16
        model(x)
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0
    assert record.blocks == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert [c.shape for c in record.channel] == [(2, 8)] * 2 + [(2, 16)] * 2 + [(2, 32)] * 2 + [(2, 64)] * 2
    assert [s.shape[1:] for s in record.spatial] == [(16, 16)] * 2 + [(8, 8)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2
    model(x)  # outside the context nothing more is recorded
    assert len(record.channel) == 8


def test_se_attention_is_recorded_per_block_without_spatial_maps():
    model = build_resnet(18, "se", width=8, stem="small").eval()
    with record_attention(model) as record:
        assert sum(len(m._forward_hooks) for m in model.modules()) == 8
        model(torch.randn(2, 3, 32, 32))
    assert record.blocks == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert [c.shape for c in record.channel] == [(2, 8)] * 2 + [(2, 16)] * 2 + [(2, 32)] * 2 + [(2, 64)] * 2
    assert record.spatial == []

"""The one-pass explanation engine: correctness against Captum, cost, state and hook hygiene."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cbam_viz.explain import METHODS, default_target_layer, explain, explain_batch, target_layers, to_arrays
from cbam_viz.models import build_resnet, preprocess


def _model(attention=None, seed=0):
    torch.manual_seed(seed)
    model = build_resnet(18, attention, num_classes=5, width=8, stem="small")
    model.info.input_size, model.info.resize = 32, None
    with torch.no_grad():  # non-trivial BN statistics so that eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def models():
    return {"baseline": _model(), "cbam": _model("cbam", seed=1)}


X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_result_fields(models):
    out = explain(models, X)
    for label, model in models.items():
        r = out[label]
        assert r.cam.shape == (32, 32) and r.cam.dtype == np.float32
        assert 0.0 <= r.cam.min() and r.cam.max() <= 1.0 and r.cam.max() > 0.5
        assert r.probs.shape == (5,) and r.probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert r.target == r.prediction == int(model(X).argmax())
        assert r.target_layer == "layer4.1" == default_target_layer(model)
    assert out["baseline"].channel_attention == [] and out["baseline"].spatial_attention == []
    assert len(out["cbam"].channel_attention) == len(out["cbam"].spatial_attention) == 8
    assert out["cbam"].blocks == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]


def test_gradcam_matches_captum_layer_gradcam(models):
    from captum.attr import LayerGradCam

    for label, model in models.items():
        for target in range(5):
            r = explain({label: model}, X, target=target)[label]
            attribution = LayerGradCam(model, model.layer4[1]).attribute(X, target=target, relu_attributions=True).detach()
            assert np.allclose(r.raw_cam, attribution[0, 0].numpy(), rtol=1e-4, atol=1e-6)
            a = attribution[0, 0].numpy()
            normalized = torch.from_numpy((a - a.min()) / (a.max() - a.min() + 1e-7))[None, None]
            oracle = F.interpolate(normalized, size=(32, 32), mode="bilinear", align_corners=False)[0, 0].numpy()
            assert np.allclose(r.cam, oracle, atol=1e-4)


def test_target_int_explains_the_same_class_in_both(models):
    out = explain(models, X, target=3)
    assert out["baseline"].target == out["cbam"].target == 3
    other = explain(models, X, target=1)
    assert not np.allclose(out["cbam"].cam, other["cbam"].cam)


def test_one_forward_pass_per_model_and_no_backward_below_target(models):
    calls = {"forward": 0, "layer3_backward": 0}
    for model in models.values():
        handles = [
            model.register_forward_pre_hook(lambda m, i: calls.__setitem__("forward", calls["forward"] + 1)),
            model.layer3.register_full_backward_hook(lambda m, gi, go: calls.__setitem__("layer3_backward", calls["layer3_backward"] + 1)),
        ]
        try:
            explain({"m": model}, X, method="gradcam")
        finally:
            for h in handles:
                h.remove()
    assert calls == {"forward": 2, "layer3_backward": 0}


def test_caller_state_is_restored_and_no_parameter_gradients(models):
    model = _model("cbam", seed=4)
    model.train()
    model.layer2.eval()
    model.fc.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    stats = model.layer1[0].bn1.running_mean.clone()
    explain({"m": model}, X)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.layer1[0].bn1.running_mean, stats)  # ran in eval mode


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_and_releases_hooks(models, method):
    out = explain(models, X, method=method, target=2)
    for label, model in models.items():
        assert out[label].cam.shape == (32, 32) and np.isfinite(out[label].cam).all()
        assert _hook_count(model) == 0


def test_hooks_released_when_explain_fails(models):
    with pytest.raises(ValueError, match="out of range"):
        explain(models, X, target=7)
    with pytest.raises(AttributeError):
        explain(models, X, target_layer="layer9.0")
    with pytest.raises(ValueError, match="unknown CAM method"):
        explain(models, X, method="magic")
    assert all(_hook_count(m) == 0 for m in models.values())


def test_hooks_flags_and_modes_intact_after_a_failure_inside_the_forward_pass():
    model = _model("cbam", seed=5)
    model.layer1.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}

    def boom(module, inputs, output):
        # by now explain's leaf hook (on layer4.1) and attention hooks are registered, and CBAM
        # blocks of layer1-2 have already been recorded
        assert _hook_count(model) > 1
        raise RuntimeError("boom inside the forward pass")

    handle = model.layer3.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom inside the forward pass"):
            explain({"m": model}, X)
    finally:
        handle.remove()
    assert _hook_count(model) == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not any(m.training for m in model.modules())
    assert torch.is_grad_enabled()
    assert explain({"m": model}, X)["m"].cam.shape == (32, 32)  # usable afterwards


def _signature(result):
    return (result.cam.tobytes(), result.raw_cam.tobytes(), result.probs.tobytes(), result.target,
            tuple(c.tobytes() for c in result.channel_attention), tuple(s.tobytes() for s in result.spatial_attention))


def test_concurrent_calls_on_shared_models_equal_the_same_calls_made_alone(models):
    """4 threads x 6 calls on the same two models, mixed methods, targets, layers and images: every
    result is bit-identical to the same call made alone, and no flag, mode or hook is left behind."""
    import threading

    images = [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    calls = [(images[i % 4], method, target, layer)
             for i, (method, target, layer) in enumerate(
                 [("gradcam", None, None), ("gradcam++", 2, "layer3.1"), ("eigencam", 1, None),
                  ("layercam", None, "layer2.0"), ("scorecam", 3, None), ("hirescam", 0, "layer4.0")] * 4)]
    alone = [{k: _signature(v) for k, v in explain(models, x, t, m, l).items()} for x, m, t, l in calls]
    flags = {k: {n: p.requires_grad for n, p in model.named_parameters()} for k, model in models.items()}
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(offset: int) -> None:
        start.wait()
        for index in range(offset, len(calls), 4):
            x, m, t, l = calls[index]
            try:
                results[index] = {k: _signature(v) for k, v in explain(models, x, t, m, l).items()}
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == len(calls)
    for index, expected in enumerate(alone):
        assert results[index] == expected, f"call {index} ({calls[index][1:]}) differs under concurrency"
    for key, model in models.items():
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags[key]
        assert not any(m.training for m in model.modules()) and _hook_count(model) == 0


def test_numpy_integer_targets_and_inference_mode(models):
    expected = explain(models, X, target=2)
    for target in (np.int64(2), np.int32(2), torch.tensor(2)):
        assert np.array_equal(explain(models, X, target=target)["cbam"].cam, expected["cbam"].cam)
    assert explain_batch(models, X.repeat(2, 1, 1, 1), targets=np.array([2, 2]))["cbam"][1].target == 2
    for bad in (2.0, "2", True):
        with pytest.raises(ValueError, match="target class must be an integer index"):
            explain(models, X, target=bad)
    with torch.inference_mode():  # a caller's inference mode does not break the gradient
        inside = explain(models, X, target=2)
    assert np.array_equal(inside["cbam"].cam, expected["cbam"].cam)


def test_attention_equals_values_recomputed_from_block_inputs(models):
    model = models["cbam"]
    inputs = {}
    handles = [m.cbam.register_forward_hook(lambda mod, i, o, name=name: inputs.__setitem__(name, i[0].detach()))
               for name, m in model.named_modules() if hasattr(m, "cbam")]
    r = explain({"cbam": model}, X)["cbam"]
    for h in handles:
        h.remove()
    for k, name in enumerate(r.blocks):
        cbam, f = model.get_submodule(name).cbam, inputs[name]
        mlp = lambda v: cbam.channel.fc2(torch.relu(cbam.channel.fc1(v)))  # noqa: E731
        with torch.no_grad():
            mc = torch.sigmoid(mlp(f.mean(dim=(2, 3))) + mlp(f.amax(dim=(2, 3))))
            refined = f * mc[:, :, None, None]
            stacked = torch.cat([refined.amax(dim=1, keepdim=True), refined.mean(dim=1, keepdim=True)], dim=1)
            ms = torch.sigmoid(cbam.spatial.bn(cbam.spatial.conv(stacked)))
        assert np.allclose(r.channel_attention[k], mc[0].numpy(), atol=1e-6)
        assert np.allclose(r.spatial_attention[k], ms[0, 0].numpy(), atol=1e-6)


def test_batch_matches_single_images(models):
    xs = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    batch = explain_batch(models, xs, targets=[0, 1, 4])
    for i, target in enumerate([0, 1, 4]):
        single = explain(models, xs[i : i + 1], target=target)
        for label in models:
            assert batch[label][i].target == target
            assert np.allclose(batch[label][i].cam, single[label].cam, atol=1e-4)
            assert np.allclose(batch[label][i].probs, single[label].probs, atol=1e-5)
    with pytest.raises(ValueError, match="2 targets for 3 images"):
        explain_batch(models, xs, targets=[0, 1])


def test_pil_input_uses_the_models_transform(models):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    from_pil = explain(models, image)
    from_tensor = explain(models, preprocess(image, models["cbam"].info))
    assert np.allclose(from_pil["cbam"].cam, from_tensor["cbam"].cam)
    assert from_pil["cbam"].cam.shape == (32, 32)


def test_selectable_target_layer(models):
    r = explain(models, X, target_layer="layer3.1", target=1)["cbam"]
    assert r.target_layer == "layer3.1" and r.raw_cam.shape == (4, 4)
    assert target_layers(models["cbam"])[-1] == "layer4.1" and len(target_layers(models["cbam"])) == 8


def test_hook_counts_return_to_zero_over_many_calls(models):
    for _ in range(50):
        explain(models, X)
    assert all(_hook_count(m) == 0 for m in models.values())


def test_three_models_baseline_se_cbam(models):
    se = _model("se", seed=2)
    inputs = {}
    handles = [m.cbam.register_forward_hook(lambda mod, i, o, name=name: inputs.__setitem__(name, i[0].detach()))
               for name, m in se.named_modules() if hasattr(m, "cbam")]
    try:
        out = explain({"baseline": models["baseline"], "se": se, "cbam": models["cbam"]}, X, target=2)
    finally:
        for h in handles:
            h.remove()
    assert list(out) == ["baseline", "se", "cbam"]
    assert all(r.target == 2 and r.cam.shape == (32, 32) for r in out.values())
    assert out["se"].blocks == out["cbam"].blocks == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert [c.shape for c in out["se"].channel_attention] == [(8,)] * 2 + [(16,)] * 2 + [(32,)] * 2 + [(64,)] * 2
    assert out["se"].spatial_attention == [] and len(out["cbam"].spatial_attention) == 8
    for k, name in enumerate(out["se"].blocks):  # the excitation of the block's input, average pool only
        gate, f = se.get_submodule(name).cbam.channel, inputs[name]
        with torch.no_grad():
            excitation = torch.sigmoid(gate.fc2(torch.relu(gate.fc1(f.mean(dim=(2, 3))))))
        assert np.allclose(out["se"].channel_attention[k], excitation[0].numpy(), atol=1e-6)
    alone = explain({"se": se}, X, target=2)["se"]
    assert np.array_equal(alone.cam, out["se"].cam) and not np.allclose(out["se"].cam, out["cbam"].cam)
    assert "se/channel_attention/layer1.0" in to_arrays(out) and not any(k.startswith("se/spatial") for k in to_arrays(out))


def test_scorecam_equals_the_librarys_and_stops_between_batches(models):
    """The batched Score-CAM (masks one batch of channels at a time) gives the grad-cam library's weights on the
    same activations; a should_stop that turns True stops it before the next batch."""
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cbam_viz.explain import Cancelled
    from cbam_viz.explain.engine import _BoundedScoreCAM

    model, x = models["cbam"], torch.cat([X, X.flip(-1)])
    layer, captured = model.layer3[1], []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().numpy()))
    with torch.no_grad():
        model(x)
    handle.remove()
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(3)]
    weights = []
    for cls, batch in ((ScoreCAM, None), (_BoundedScoreCAM, 5)):  # 5: batches that do not divide the channels
        method = cls(model=model, target_layers=[layer])
        method.activations_and_grads.release()
        if batch:
            method.batch_size = batch
        weights.append(method.get_cam_weights(x, layer, targets, captured[0], None))
    assert weights[0].shape == (2, layer.conv2.out_channels) and np.allclose(*weights, atol=1e-6)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2  # the first model check, one batch, then stop

    with pytest.raises(Cancelled):
        explain({"m": model}, X, method="scorecam", target_layer="layer3.1", should_stop=stop)
    assert len(calls) == 3

"""Training smoke run, resumability, manifest checksums, evaluation, and the shipped demo set."""
import json

import numpy as np
import pytest
import torch

import cbam_viz.training as training
from cbam_viz.data import CLASSES, energy_pointing_game, pointing_game, render_sample
from cbam_viz.evaluate import evaluate, markdown_table, summary_rows, write_outputs
from cbam_viz.explain import explain_batch
from cbam_viz.models import load_checkpoint
from cbam_viz.models.sets import MODELS_DIR, SetUnavailable, load_set, read_manifest, replicate_names, set_names
from cbam_viz.training import Recipe, register_set, train_set

TINY = Recipe(width=8, size=64, train_size=256, val_size=64, epochs=2, batch_size=64, lr=0.05, seed=7)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    results = train_set(TINY, out, roles=("baseline", "cbam"))
    register_set(results, out)
    return out, results


def test_the_demo_set_trains_baseline_se_and_cbam_on_one_recipe(tmp_path):
    recipe = Recipe(width=8, size=48, train_size=64, val_size=32, epochs=1, batch_size=32, seed=3, difficulty="easy")
    results = train_set(recipe, tmp_path)
    assert list(results) == ["baseline", "se", "cbam"]
    manifest = read_manifest(register_set(results, tmp_path).parent)
    assert manifest["sets"]["demo"]["models"] == {"baseline": "demo-baseline", "se": "demo-se", "cbam": "demo-cbam"}
    assert "easy generator, 48 px" in manifest["sets"]["demo"]["description"]
    models = load_set("demo", tmp_path, device="cpu").models
    assert [m.info.attention for m in models.values()] == [None, "se", "cbam"]
    assert models["se"].info.title.endswith("+ SE (demo)") and models["se"].info.input_size == 48
    assert {manifest["models"][f"demo-{r}"]["generator"] for r in results} == {"easy"}
    with pytest.raises(ValueError, match="unknown role"):
        train_set(recipe, tmp_path, roles=("baseline", "eca"))


def test_smoke_training_writes_loadable_checkpoints_and_manifest(tiny_pair):
    out, results = tiny_pair
    manifest = read_manifest(out)
    assert list(manifest["sets"]) == ["demo"] and manifest["sets"]["demo"]["models"] == {
        "baseline": "demo-baseline", "cbam": "demo-cbam"}
    for role in ("baseline", "cbam"):
        entry = manifest["models"][f"demo-{role}"]
        model = load_checkpoint(out / entry["file"])
        assert model.info.class_names == list(CLASSES) and model.info.input_size == 64
        assert (model.info.attention == "cbam") == (role == "cbam")
        assert entry["heldout_accuracy"] == round(results[role]["val_accuracy"], 4)
        assert entry["seed"] == 7 and len(entry["sha256"]) == 64
        assert entry["normalization"]["mean"] == list(model.info.mean)
    pair = load_set("demo", out, device="cpu")
    assert set(pair.models) == {"baseline", "cbam"}


def test_training_is_deterministic_and_resumable(tmp_path, monkeypatch, tiny_pair):
    data = training.render_tensors(training.TRAIN_SEED, TINY.train_size, TINY.size)
    val = training.render_tensors(training.VAL_SEED, TINY.val_size, TINY.size)
    real_tqdm = training.tqdm

    def interrupting_tqdm(*args, desc="", **kwargs):
        if "epoch 2/" in desc:
            raise KeyboardInterrupt
        return real_tqdm(*args, desc=desc, **kwargs)

    out = tmp_path / "demo-cbam.pt"
    monkeypatch.setattr(training, "tqdm", interrupting_tqdm)
    with pytest.raises(KeyboardInterrupt):
        training.train(TINY, "cbam", out, data, val)
    assert out.with_suffix(".state.pt").is_file() and not out.exists()
    monkeypatch.setattr(training, "tqdm", real_tqdm)
    training.train(TINY, "cbam", out, data, val, resume=True)
    resumed = load_checkpoint(out).state_dict()
    straight = load_checkpoint(tiny_pair[0] / "demo-cbam.pt").state_dict()
    assert all(torch.allclose(resumed[k].float(), straight[k].float(), atol=1e-5) for k in straight)
    assert not out.with_suffix(".state.pt").exists()


def test_corrupted_checkpoint_is_refused_by_checksum(tmp_path, tiny_pair):
    out, _ = tiny_pair
    for f in out.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    target = tmp_path / "demo-cbam.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(SetUnavailable, match=r"demo-cbam\.pt: SHA-256 .* does not match the manifest"):
        load_set("demo", tmp_path, device="cpu")
    target.unlink()
    with pytest.raises(SetUnavailable, match=r"demo-cbam\.pt is missing"):
        load_set("demo", tmp_path, device="cpu")


def test_evaluation_metrics_match_direct_computation(tmp_path, tiny_pair):
    pair = load_set("demo", tiny_pair[0], device="cpu")
    evaluation = evaluate(pair, ["gradcam", "eigencam"], n=12, seed=5, batch_size=8)
    samples = [render_sample(5, i, 64) for i in range(12)]
    direct = explain_batch(pair.models, [s.image for s in samples], targets=[s.label for s in samples])
    assert evaluation.feature_shape == (4, 4) and evaluation.tolerance == 8.0
    for role in ("baseline", "cbam"):
        values = evaluation.values["gradcam"]["half-pixel"][role]  # the app's map, Explanation.cam
        assert values["pointing"].tolist() == [pointing_game(r.cam, s.mask, feature_shape=(4, 4)) for r, s in zip(direct[role], samples)]
        assert np.allclose(values["energy"], [energy_pointing_game(r.cam, s.box) for r, s in zip(direct[role], samples)])
        assert evaluation.accuracy[role].tolist() == [r.prediction == s.label for r, s in zip(direct[role], samples)]
        for placement in ("half-pixel", "receptive-field"):
            road = evaluation.values["gradcam"][placement][role]["road"]
            assert road.shape == (12,) and np.isfinite(road).all()
        box_share = [(s.box[2] - s.box[0]) * (s.box[3] - s.box[1]) / 64 ** 2 for s in samples]
        assert np.allclose(evaluation.reference["uniform"][role]["energy"], box_share)  # a model-free chance level
        assert "road" not in evaluation.reference["uniform"][role] and evaluation.reference["centre"][role]["road"].shape == (12,)
    rows = summary_rows(evaluation)
    assert len(rows) == 1 + 2 * 4 * 2 and {r["test"] for r in rows} == {"mcnemar_exact", "permutation"}
    assert all(r["baseline_lo"] <= r["baseline"] <= r["baseline_hi"] for r in rows)
    table = markdown_table(evaluation, rows)
    assert table.count("\n| gradcam |") == 8 and "CBAM - baseline" in table
    per_image, summary, md = write_outputs(evaluation, tmp_path / "results")
    assert len(per_image.read_text().splitlines()) == 1 + (2 * 2 + 2) * 2 * 12
    assert md.read_text() == table


def test_evaluate_refuses_pairs_without_ground_truth(tiny_pair):
    pair = load_set("demo", tiny_pair[0], device="cpu")
    pair.models["cbam"].info.class_names = ["a"] * 12
    with pytest.raises(ValueError, match="not trained on the generated shapes"):
        evaluate(pair, ["gradcam"], n=2)


def test_shipped_demo_set_reaches_the_claimed_accuracy():
    """On fresh images (a seed neither training nor validation used), within 3 standard errors either way."""
    manifest = read_manifest(MODELS_DIR)
    demo = load_set("demo", device="cpu")
    size = demo.models["cbam"].info.input_size
    generator = manifest["models"]["demo-cbam"].get("generator", "easy")
    x, y = training.render_tensors(seed=11, n=600, size=size, difficulty=generator)
    for role, model in demo.models.items():
        claimed = manifest["models"][f"demo-{role}"]["heldout_accuracy"]
        measured = training.accuracy(model, x, y)
        stderr = max((claimed * (1 - claimed) / len(y)) ** 0.5, 1 / len(y))
        assert abs(measured - claimed) <= 3 * stderr + 0.005, f"{role}: {measured:.3f} on fresh images, manifest claims {claimed:.3f}"
        assert claimed > 0.5  # the set is worth shipping
    assert json.loads((MODELS_DIR / "manifest.json").read_text())["sets"]["demo"]["models"]["cbam"] == "demo-cbam"


def test_shipped_replicates_share_the_recipe_and_differ_only_in_seed():
    manifest = read_manifest(MODELS_DIR)
    names = replicate_names("demo")
    assert len(names) >= 3 and set_names()[:1] == ["demo"] and not set(names[1:]) & set(set_names())
    entries = [manifest["models"][f"{name}-{role}"] for name in names for role in ("baseline", "se", "cbam")]
    assert len({e["seed"] for e in entries}) == len(names)
    for key in ("generator", "input_size", "train_dataset_seed", "heldout_dataset_seed", "training_command"):
        assert len({json.dumps(e[key]) for e in entries}) == 1, key
    for name in names[1:]:
        load_set(name, device="cpu")  # present and matching its SHA-256

"""Training smoke run, resumability, manifest checksums, evaluation, and the shipped demo set."""
import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import cbam_viz.training as training
from cbam_viz.data import CLASSES, DIFFICULTIES, energy_pointing_game, pointing_game, render_sample
from cbam_viz.evaluate import evaluate, markdown_table, summary_rows, write_outputs
from cbam_viz.explain import explain_batch
from cbam_viz.models import load_checkpoint
from cbam_viz.models.sets import MODELS_DIR, SetUnavailable, load_set, read_manifest, replicate_names, set_names
from cbam_viz.training import Recipe, register_set, train_set

TINY = Recipe(width=8, size=64, train_size=256, val_size=64, test_size=32, epochs=2, batch_size=64, lr=0.05, seed=7)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    results = train_set(TINY, out, roles=("baseline", "cbam"))
    register_set(results, out)
    return out, results


def test_the_demo_set_trains_baseline_se_and_cbam_on_one_recipe(tmp_path):
    recipe = Recipe(width=8, size=48, train_size=64, val_size=32, test_size=16, epochs=1, batch_size=32, seed=3, difficulty="easy")
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


PLATEAU = Recipe(width=8, size=48, train_size=96, val_size=48, test_size=24, epochs=9, batch_size=32, lr=0.05, seed=5,
                 patience=2, min_delta=0.05, lr_drops=1)


@pytest.fixture(scope="module")
def plateau_data():
    return training.training_data(PLATEAU)


def _interrupt_at(monkeypatch, epoch: int, model: str = "") -> None:
    real_tqdm = training.tqdm

    def interrupting_tqdm(*args, desc="", **kwargs):
        if f"{model} epoch {epoch}/" in desc:
            raise KeyboardInterrupt
        return real_tqdm(*args, desc=desc, **kwargs)

    monkeypatch.setattr(training, "tqdm", interrupting_tqdm)


def test_interrupted_and_resumed_training_equals_uninterrupted_bit_for_bit(tmp_path, monkeypatch, plateau_data):
    straight = training.train(PLATEAU, "cbam", tmp_path / "a" / "demo-cbam.pt", *plateau_data, state_dir=tmp_path / "sa")
    out, state_dir = tmp_path / "b" / "demo-cbam.pt", tmp_path / "sb"
    _interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        training.train(PLATEAU, "cbam", out, *plateau_data, state_dir=state_dir)
    state = training.state_file(out, state_dir)
    assert state.is_file() and state.parent == state_dir and not out.exists()  # state lives outside the output folder
    monkeypatch.undo()
    with pytest.raises(ValueError, match="interrupted run"):  # without resume, an interrupted run is refused, not overwritten
        training.train(PLATEAU, "cbam", out, *plateau_data, state_dir=state_dir)
    other = training.state_file(tmp_path / "c" / "demo-cbam.pt", state_dir)
    assert other != state and not other.exists()  # the same model name in another folder has its own state
    resumed = training.train(PLATEAU, "cbam", out, *plateau_data, resume=True, state_dir=state_dir)
    a, b = load_checkpoint(tmp_path / "a" / "demo-cbam.pt").state_dict(), load_checkpoint(out).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert drop(resumed["history"]) == drop(straight["history"]) and resumed["test_correct"] == straight["test_correct"]
    assert not state.exists()
    with pytest.raises(ValueError, match="another recipe"):  # a state file never continues a different recipe
        _interrupt_at(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            training.train(PLATEAU, "cbam", out, *plateau_data, state_dir=state_dir)
        monkeypatch.undo()
        training.train(replace(PLATEAU, lr=0.01), "cbam", out, *plateau_data, resume=True, state_dir=state_dir)
    level = training.DIFFICULTIES[PLATEAU.difficulty]  # nor a generator preset changed under the same name
    monkeypatch.setitem(training.DIFFICULTIES, PLATEAU.difficulty, replace(level, decoys=(0, 1)))
    with pytest.raises(ValueError, match="another recipe"):
        training.train(PLATEAU, "cbam", out, *plateau_data, resume=True, state_dir=state_dir)


def test_a_fixed_onecycle_schedule_resumes_bit_for_bit(tmp_path, monkeypatch, plateau_data):
    recipe = replace(PLATEAU, schedule="onecycle", epochs=3)
    straight = training.train(recipe, "se", tmp_path / "a" / "m.pt", *plateau_data, state_dir=tmp_path / "s")
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        training.train(recipe, "se", tmp_path / "b" / "m.pt", *plateau_data, state_dir=tmp_path / "s")
    monkeypatch.undo()
    state = training.state_file(tmp_path / "b" / "m.pt", tmp_path / "s")
    state.rename(state.with_name("m.state.pt"))  # named as before state files carried their folder: still resumed
    resumed = training.train(recipe, "se", tmp_path / "b" / "m.pt", *plateau_data, resume=True, state_dir=tmp_path / "s")
    a, b = load_checkpoint(tmp_path / "a" / "m.pt").state_dict(), load_checkpoint(tmp_path / "b" / "m.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and [h["lr"] for h in resumed["history"]] == [h["lr"] for h in straight["history"]]


def test_an_interrupted_set_is_refused_before_any_finished_model_is_retrained(tmp_path, monkeypatch, plateau_data):
    recipe = replace(PLATEAU, epochs=3)
    _interrupt_at(monkeypatch, 2, model="demo-cbam")
    with pytest.raises(KeyboardInterrupt):
        train_set(recipe, tmp_path, roles=("baseline", "cbam"), rendered=plateau_data, state_dir=tmp_path / "s")
    monkeypatch.undo()
    finished = (tmp_path / "demo-baseline.pt.staged").read_bytes()  # finished, waiting for the run's last model
    assert not (tmp_path / "demo-baseline.pt").exists()
    with pytest.raises(ValueError, match=r"demo-baseline\.pt\.staged.*demo-cbam.*train --resume"):
        train_set(recipe, tmp_path, roles=("baseline", "cbam"), rendered=plateau_data, state_dir=tmp_path / "s")
    with pytest.raises(ValueError, match="demo-cbam"):  # the same check, before rendering, for a run of several seeds
        training.train_replicates(recipe, tmp_path, "demo", 2, ("baseline", "cbam"), state_dir=tmp_path / "s")
    assert (tmp_path / "demo-baseline.pt.staged").read_bytes() == finished


def test_a_set_keeps_loading_while_it_is_retrained_and_is_replaced_whole(tmp_path, monkeypatch, plateau_data):
    """Retraining into a folder whose manifest describes a set: the finished models wait beside the old ones,
    which keep loading (their SHA-256 as registered) until the run's last model is done; then all are replaced."""
    recipe, retrained = replace(PLATEAU, epochs=2), replace(PLATEAU, epochs=2, lr=0.02)
    roles = ("baseline", "cbam")
    kw = dict(roles=roles, state_dir=tmp_path / "s")
    for name, by_role in training.train_replicates(recipe, tmp_path, "demo", 2, **kw).items():
        register_set(by_role, tmp_path, name)
    old = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}
    _interrupt_at(monkeypatch, 1, model="demo-seed6-cbam")  # the second seed's last model
    with pytest.raises(KeyboardInterrupt):
        training.train_replicates(retrained, tmp_path, "demo", 2, **kw)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.glob("*.staged")) == [
        "demo-baseline.pt.staged", "demo-cbam.pt.staged", "demo-seed6-baseline.pt.staged"]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == old
    for name in ("demo", "demo-seed6"):
        load_set(name, tmp_path, device="cpu")  # as registered: every SHA-256 matches
    staged = (tmp_path / "demo-baseline.pt.staged").read_bytes()
    results = training.train_replicates(retrained, tmp_path, "demo", 2, resume=True, **kw)
    assert list(tmp_path.glob("*.staged")) == [] and (tmp_path / "demo-baseline.pt").read_bytes() == staged
    assert all((tmp_path / name).read_bytes() != data for name, data in old.items())
    for name, by_role in results.items():
        register_set(by_role, tmp_path, name)
        assert load_set(name, tmp_path, device="cpu").entries["cbam"]["seed"] == by_role["cbam"]["recipe"]["seed"]


def test_resume_keeps_a_finished_model_only_while_its_weights_are_those_it_was_saved_with(tmp_path, plateau_data):
    recipe, out = replace(PLATEAU, epochs=1), tmp_path / "demo-cbam.pt"
    metrics = training.train(recipe, "cbam", out, *plateau_data, state_dir=tmp_path)
    assert metrics["weights_sha256"] == training.weights_digest(load_checkpoint(out).state_dict())
    assert training.train(recipe, "cbam", out, *plateau_data, resume=True, state_dir=tmp_path) == metrics  # kept
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: the file still loads
    out.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"demo-cbam\.pt is damaged.*delete it to train it again"):
        training.train(recipe, "cbam", out, *plateau_data, resume=True, state_dir=tmp_path)


def test_training_leaves_torchs_global_state_as_it_was(tmp_path, plateau_data):
    rng, deterministic = torch.get_rng_state(), torch.are_deterministic_algorithms_enabled()
    training.build_demo_model(PLATEAU, "cbam")
    training.train(replace(PLATEAU, epochs=1), None, tmp_path / "m.pt", *plateau_data, state_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), rng) and torch.are_deterministic_algorithms_enabled() == deterministic


def test_overlapping_training_runs_keep_deterministic_algorithms_until_the_last_ends():
    """Two runs in two threads overlap: the first to end must not switch determinism off under the other,
    and the last restores the caller's setting. The runs' enter/exit order is driven directly."""
    before = torch.are_deterministic_algorithms_enabled()
    first, second = training._deterministic(), training._deterministic()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert torch.are_deterministic_algorithms_enabled()  # the second run is still training
    second.__exit__(None, None, None)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_plateau_rule():
    assert not training.plateaued([0.1, 0.2, 0.3], patience=3, min_delta=0.005)  # too few epochs to tell
    assert not training.plateaued([0.1, 0.2, 0.3, 0.31], patience=3, min_delta=0.005)
    assert training.plateaued([0.1, 0.5, 0.4, 0.503, 0.45], patience=3, min_delta=0.005)  # +0.3 points is no gain
    assert not training.plateaued([0.1, 0.5, 0.4, 0.506, 0.45], patience=3, min_delta=0.005)
    assert training.plateaued([0.6, 0.5, 0.5, 0.5], patience=3, min_delta=0.005)


def test_a_gain_of_exactly_min_delta_counts_whatever_the_float_rounding():
    def accuracy(correct: int, n: int = 2000) -> float:  # as training.accuracy computes it
        return float((torch.arange(n) < correct).float().mean())

    for k in range(1000, 1991):  # +10 of 2,000 images is +0.5 points: a gain; +9 is not
        assert not training.plateaued([accuracy(k)] * 3 + [accuracy(k + 10)], patience=3, min_delta=0.005), k
        assert training.plateaued([accuracy(k)] * 3 + [accuracy(k + 9)], patience=3, min_delta=0.005), k


def test_the_plateau_flag_says_whether_the_rule_ended_training(tmp_path, plateau_data):
    """Not whether the last epochs happen to look flat: a run cut by --epochs with drops left did not end on the rule."""
    cut = training.train(replace(PLATEAU, epochs=3, min_delta=1.0), None, tmp_path / "a.pt", *plateau_data, state_dir=tmp_path)
    assert cut["epochs"] == 3 and not cut["plateau"]
    ended = training.train(replace(PLATEAU, min_delta=1.0, patience=1), None, tmp_path / "b.pt", *plateau_data, state_dir=tmp_path)
    assert ended["plateau"] and ended["epochs"] == 4 and ended["lr_drops"] == 1  # drop after epoch 2, stop after epoch 4


def test_accuracy_gaps_compare_with_the_baseline_whatever_the_order_of_roles():
    hits = {"cbam": [True, False, True, True], "baseline": [True, True, True, True], "se": [False, True, True, True]}
    results = {role: {"test_correct": h} for role, h in hits.items()}
    gaps = training.accuracy_gaps(results)
    assert training.reference_role(results) == "baseline" and set(gaps) == {"cbam", "se"}
    assert gaps["cbam"][0] == pytest.approx(-0.25)


def test_plateau_schedule_drops_the_rate_stops_at_a_plateau_and_keeps_the_best_epoch(tmp_path, plateau_data):
    metrics = training.train(PLATEAU, None, tmp_path / "demo-baseline.pt", *plateau_data, state_dir=tmp_path)
    history = metrics["history"]
    accs = [h["val_accuracy"] for h in history]
    rates = [h["lr"] for h in history]
    assert len(history) == metrics["epochs"] <= PLATEAU.epochs
    assert rates[0] == PLATEAU.lr and sorted(set(rates), reverse=True) == [PLATEAU.lr * 0.1 ** i for i in range(metrics["lr_drops"] + 1)]
    since = rates.index(min(rates))
    if len(history) < PLATEAU.epochs:  # stopped by the rule: at the last rate, no gain over the last `patience` epochs
        assert metrics["plateau"] and metrics["lr_drops"] == PLATEAU.lr_drops
        assert training.plateaued(accs[since:], PLATEAU.patience, PLATEAU.min_delta)
    assert metrics["best_epoch"] == 1 + accs.index(max(accs)) and metrics["val_accuracy"] == max(accs)
    kept = load_checkpoint(tmp_path / "demo-baseline.pt")
    x, y = plateau_data[1]
    assert training.accuracy(kept, x, y) == max(accs)  # the kept weights are the best epoch's


def test_authors_initialisation_starts_every_spatial_gate_at_one_half():
    from cbam_viz.models.attention import SpatialGate

    x = torch.randn(4, 3, 48, 48)
    for init, expect_half in (("authors", True), ("torchvision", False)):
        model = training.build_demo_model(replace(TINY, init=init), "cbam")
        gates = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: gates.append(out)) for m in model.modules() if isinstance(m, SpatialGate)]
        for mode in (model.train, model.eval):
            mode()
            gates.clear()
            model(x)
            assert len(gates) == 8
            assert all(bool((g == 0.5).all()) for g in gates) == expect_half, (init, mode)
        for h in hooks:
            h.remove()
    base_authors = training.build_demo_model(TINY, None).state_dict()  # nothing changes in models without spatial gates
    base_tv = training.build_demo_model(replace(TINY, init="torchvision"), None).state_dict()
    assert all(torch.equal(base_authors[k], base_tv[k]) for k in base_authors)


def test_curves_and_manifest_record_the_training(tmp_path, tiny_pair):
    out, results = tiny_pair
    csv_path, png, table = training.write_curves({"demo": results}, tmp_path / "curves.csv")
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == sum(len(m["history"]) for m in results.values()) and png.stat().st_size > 10_000
    lines = {line.split(" | ")[1]: line for line in table.read_text().splitlines() if line.startswith("| demo |")}
    assert list(lines) == ["Baseline", "CBAM"] and "| — |" in lines["Baseline"]
    test = results["cbam"]["test_accuracy"] - results["baseline"]["test_accuracy"]
    assert f"| {100 * results['cbam']['test_accuracy']:.1f} [" in lines["CBAM"] and f"| {100 * test:+.1f} [" in lines["CBAM"]
    assert f"| {100 * results['cbam']['val_accuracy']:.2f} |" in lines["CBAM"]  # held-out: steps of 1/val_size
    partial = training.accuracy_table({"demo": results, "demo-seed8": {"baseline": results["baseline"]}})
    assert "Mean test accuracy over seeds: Baseline" in partial and "(2 seeds), CBAM" in partial and "(1 seed)." in partial
    assert "over the 2 seeds" in training.accuracy_table({"demo": results, "demo-seed8": results})
    assert {r["role"] for r in rows} == {"baseline", "cbam"} and all(float(r["train_loss"]) > 0 for r in rows)
    entry = read_manifest(out)["models"]["demo-cbam"]
    assert entry["epochs"] == len(results["cbam"]["history"]) and 1 <= entry["best_epoch"] <= entry["epochs"]
    lo, hi = entry["test_accuracy_ci95"]
    assert lo <= entry["test_accuracy"] <= hi and entry["test_size"] == TINY.test_size and entry["test_dataset_seed"] == 3
    assert entry["schedule"] == "plateau" and entry["init"] == "authors"
    gap, lo, hi = read_manifest(out)["sets"]["demo"]["test_accuracy_gaps"]["cbam"]
    assert read_manifest(out)["sets"]["demo"]["test_accuracy_reference"] == "baseline"
    assert lo <= gap <= hi and gap == pytest.approx(results["cbam"]["test_accuracy"] - results["baseline"]["test_accuracy"], abs=1e-4)


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
    samples = [render_sample(5, i, 64, difficulty=DIFFICULTIES[TINY.difficulty]) for i in range(12)]
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
    # accuracy; per analysis: methods x tested metrics (7 with ROAD, 6 for own-class maps) x placements
    primary = 2 * 7 * 2 if evaluation.all_correct.sum() >= 2 else 0
    assert len(rows) == 1 + primary + 2 * 7 * 2 + 2 * 6 * 2 and {r["test"] for r in rows} == {"mcnemar_exact", "permutation"}
    assert all(r["baseline_lo"] <= r["baseline"] <= r["baseline_hi"] for r in rows)
    table = markdown_table(evaluation, rows)
    assert table.count(" | gradcam | pointing game | ") == sum(r["method"] == "gradcam" and r["metric"] == "pointing game" for r in rows)
    assert "CBAM - baseline" in table
    per_image, summary, md = write_outputs(evaluation, tmp_path / "results")
    assert len(per_image.read_text().splitlines()) == 1 + (2 * 2 * 2 + 2) * 2 * 12
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
        entry = manifest["models"][f"demo-{role}"]
        claimed = entry.get("test_accuracy", entry["heldout_accuracy"])  # held-out chose the epoch: biased upward
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


def test_a_fixed_onecycle_schedule_runs_its_epochs_and_keeps_the_last(tmp_path, plateau_data):
    recipe = replace(PLATEAU, schedule="onecycle", epochs=2, init="torchvision")
    metrics = training.train(recipe, "cbam", tmp_path / "m.pt", *plateau_data, state_dir=tmp_path)
    assert metrics["epochs"] == metrics["best_epoch"] == 2 and not metrics["plateau"]
    assert metrics["val_accuracy"] == metrics["history"][-1]["val_accuracy"]
    assert metrics["history"][-1]["lr"] < recipe.lr / 5  # one-cycle anneals the rate

"""Layer sweeps and training seeds: values equal to single-layer runs, replicate training on a tiny
budget, and the verdict rule across seeds on constructed per-image data with a known answer."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cbam_viz.evaluate import Evaluation, evaluate
from cbam_viz.evaluate.sweep import (DEPENDS_ON_LAYER, DEPENDS_ON_SEED, Sweep, across_layers, across_seeds, parse_layers,
                                     sweep, sweep_markdown, sweep_rows, write_sweep)
from cbam_viz.models.config import ModelsConfigError, read_models_config
from cbam_viz.models.sets import SetUnavailable, load_set, read_manifest, replicate_names
from cbam_viz.training import Recipe, register_set, train_replicates, train_set
from tests.evaluate_support import tiny_models_file, tiny_set

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]


@pytest.fixture(scope="module")
def three():
    return tiny_set()


def _run(model_set, layer):
    return evaluate(model_set, ["gradcam"], n=4, seed=5, batch_size=4, road=False, layer=layer)


def test_layers_parse_as_all_stages_or_names(three):
    assert parse_layers(None, three) == [None]
    assert parse_layers("all", three) == BLOCKS
    assert parse_layers("stages", three) == ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert parse_layers("layer4.0, layer2.1,layer4.0", three) == ["layer2.1", "layer4.0"]  # network order, once
    with pytest.raises(ValueError, match="unknown layer.*layer9.0"):
        parse_layers("layer2.1,layer9.0", three)


def test_a_layer_sweep_equals_single_layer_runs(three, tmp_path):
    result = sweep(["tiny3"], ["layer2.1", None], lambda name: three, _run)
    assert result.layers == ["layer2.1", "layer4.1"] and result.replicates == ["tiny3"]
    for layer, alone in (("layer2.1", _run(three, "layer2.1")), ("layer4.1", _run(three, None))):
        swept = result.runs["tiny3"][layer]
        assert swept.layer == layer and swept.feature_shape == alone.feature_shape
        for role in three.models:
            for placement, by_role in alone.values["gradcam"].items():
                for metric, values in by_role[role].items():
                    np.testing.assert_array_equal(swept.values["gradcam"][placement][role][metric], values)
    assert result.runs["tiny3"]["layer2.1"].feature_shape != result.runs["tiny3"]["layer4.1"].feature_shape
    paths = write_sweep(result, tmp_path)
    assert [p.name for p in paths] == ["tiny3_sweep.csv", "tiny3_sweep.md", "tiny3_sweep.png", "tiny3_sweep.html"]
    html = paths[3].read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths[1].read_text()
    assert "| layer2.1 |" in text and "| layer4.1 |" in text and "n/a" in text  # one seed: no between-seed SD


def test_the_cli_sweeps_layers_and_names_the_files_by_layer(tmp_path):
    models = tiny_models_file(tmp_path / "mine")
    out = tmp_path / "out"
    base = [sys.executable, "-m", "cbam_viz", "evaluate", "--models", str(models), "--set", "tiny3", "-n", "4",
            "--no-road", "--workers", "0", "--out", str(out)]
    done = subprocess.run(base + ["--layers", "stages"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    names = {p.name for p in out.iterdir()}
    assert {"tiny3_summary.md", "tiny3_layer1.1_summary.md", "tiny3_layer3.1_per_image.csv", "tiny3_sweep.md",
            "tiny3_sweep.html"} <= names
    assert "Layer and seed sweep of set `tiny3`" in done.stdout
    plan = done.stderr.splitlines()[0]  # said before anything runs
    assert plan.startswith("will run: set 'tiny3' x 4 layer(s) (layer1.1, layer2.1, layer3.1, layer4.1) x gradcam on 4 "
                           "generated images (seed 3), without ROAD: 4 run(s)"), plan
    assert "run 1 of 4 took" in done.stderr and "min more for the other 3" in done.stderr
    bad = subprocess.run(base + ["--layers", "layer7.0"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "unknown layer(s) layer7.0" in bad.stderr and "Traceback" not in bad.stderr


def test_an_interrupted_sweep_recomputes_none_of_its_finished_runs(tmp_path, monkeypatch, capsys):
    from cbam_viz.cli import main
    from cbam_viz.evaluate import run

    models, out = tiny_models_file(tmp_path / "mine"), tmp_path / "out"
    real, computed = run.score_batch, []

    def counting(models, targets, *args, **kwargs):
        if len(computed) == stop_after:
            raise KeyboardInterrupt
        computed.append((kwargs.get("layer", args[-1]), [t.index for t in targets]))
        return real(models, targets, *args, **kwargs)

    monkeypatch.setattr(run, "score_batch", counting)
    argv = ["evaluate", "--models", str(models), "--set", "tiny3", "-n", "4", "--batch-size", "2", "--no-road",
            "--workers", "0", "--out", str(out), "--layers", "layer2.1,layer4.1"]
    stop_after = 3  # the first run's two batches, then one of the second run's
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    assert sorted(p.name for p in out.glob("*_partial-*")) == ["tiny3_layer2.1_partial-0of1.jsonl", "tiny3_partial-0of1.jsonl"]
    stop_after, computed[:] = None, []
    capsys.readouterr()
    assert main(argv) == 0
    assert computed == [("layer4.1", [2, 3])]  # only the batch the interruption left
    assert "min more for the other" not in capsys.readouterr().err  # no estimate from runs read back
    assert list(out.glob("*_partial-*")) == [] and (out / "tiny3_sweep.csv").is_file()
    computed[:] = []
    assert main(argv) == 0 and len(computed) == 4  # a finished sweep starts over


def test_rewriting_outputs_that_fail_midway_leaves_the_last_ones_whole(three, tmp_path, monkeypatch):
    """A rerun that fails while writing a file (full disk, Ctrl+C) leaves the last run's file whole and no
    temporary file: readers (the app serves `<set>_sweep.html`) see an old file or a new one, never part of one."""
    import cbam_viz.evaluate.summary as summary
    from cbam_viz.evaluate.summary import write_outputs

    result = sweep(["tiny3"], ["layer2.1", None], lambda name: three, _run)
    evaluation = result.runs["tiny3"]["layer4.1"]
    before = {p: p.read_bytes() for p in [*write_sweep(result, tmp_path), *write_outputs(evaluation, tmp_path)]}

    class DiskFull(list):  # some rows are written, then the disk is full
        def __iter__(self):
            yield from self[:2]
            raise OSError("No space left on device")

    with pytest.raises(OSError):
        write_sweep(result, tmp_path, DiskFull(sweep_rows(result)))
    real = summary.write_scores
    monkeypatch.setattr(summary, "write_scores", lambda f, scores, **kw: real(f, DiskFull(scores), **kw))
    with pytest.raises(OSError):
        write_outputs(evaluation, tmp_path)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in before)


def test_replicates_train_with_other_seeds_on_the_same_data(tmp_path):
    recipe = Recipe(width=8, size=48, train_size=64, val_size=32, test_size=16, epochs=1, batch_size=32, seed=3, difficulty="easy")
    trained = train_replicates(recipe, tmp_path, "demo", seeds=2, roles=("baseline", "cbam"))
    assert list(trained) == ["demo", "demo-seed4"]
    for name, results in trained.items():
        register_set(results, tmp_path, name, replicates=["demo-seed4"] if name == "demo" else None)
    manifest = read_manifest(tmp_path)
    assert list(manifest["sets"]) == ["demo", "demo-seed4"] and manifest["sets"]["demo"]["replicates"] == ["demo-seed4"]
    assert [manifest["models"][f"{n}-cbam"]["seed"] for n in trained] == [3, 4]
    assert replicate_names("demo", tmp_path) == ["demo", "demo-seed4"]
    alone = train_set(recipe, tmp_path / "alone", roles=("baseline",))  # the first replicate is the set trained alone
    first, second = (load_set(n, tmp_path, device="cpu").models["baseline"].state_dict() for n in trained)
    solo = torch.load(tmp_path / "alone" / alone["baseline"]["file"], weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], solo[k]) for k in first)
    assert not all(torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
    # re-registering the first set without naming replicates keeps them
    register_set(trained["demo"], tmp_path, "demo")
    assert read_manifest(tmp_path)["sets"]["demo"]["replicates"] == ["demo-seed4"]
    result = sweep(replicate_names("demo", tmp_path), ["layer3.1", None], lambda n: load_set(n, tmp_path, device="cpu"), _run)
    assert result.labels == {"demo": "seed3", "demo-seed4": "seed4"} and result.layers == ["layer3.1", "layer4.1"]
    assert "seed3: diff [95%] | seed4: diff [95%]" in sweep_markdown(result, sweep_rows(result))


def test_replicates_in_a_models_file_are_checked(tmp_path):
    path = tiny_models_file(tmp_path)
    text = path.read_text()
    path.write_text(text + 'replicates = ["tiny3-seed1"]\n')
    with pytest.raises(SetUnavailable, match="unknown replicate set"):
        replicate_names("tiny3", user=read_models_config(path))
    two_roles = '\n[sets.tiny3-seed1]\nmodels = { baseline = "tiny3-baseline", cbam = "tiny3-cbam" }\n'
    path.write_text(text + 'replicates = ["tiny3-seed1"]\n' + two_roles)
    with pytest.raises(SetUnavailable, match="other roles"):
        replicate_names("tiny3", user=read_models_config(path))
    same = '\n[sets.tiny3-seed1]\nmodels = { cbam = "tiny3-cbam", baseline = "tiny3-baseline", se = "tiny3-se" }\n'
    path.write_text(text + 'replicates = ["tiny3-seed1"]\n' + same)
    assert replicate_names("tiny3", user=read_models_config(path)) == ["tiny3", "tiny3-seed1"]
    path.write_text(text + "replicates = 3\n")
    with pytest.raises(ModelsConfigError, match="key 'replicates'"):
        read_models_config(path)


def test_across_seeds_a_side_wins_only_when_it_wins_in_every_seed():
    assert across_seeds(["CBAM better"] * 3) == "CBAM better"
    assert across_seeds(["CBAM better", "CBAM better", "no clear difference"]) == DEPENDS_ON_SEED
    assert across_seeds(["CBAM better", "Baseline better", "CBAM better"]) == DEPENDS_ON_SEED
    assert across_seeds(["no clear difference", "depends on placement"]) == "no clear difference"
    assert across_seeds(["depends on placement"] * 2) == "depends on placement"


def test_across_layers_names_a_verdict_that_flips_with_the_layer():
    assert across_layers(["CBAM better"] * 4) == "CBAM better"
    assert across_layers(["CBAM better", "no clear difference", "Baseline better"]) == DEPENDS_ON_LAYER
    assert across_layers(["CBAM better", DEPENDS_ON_SEED]) == DEPENDS_ON_LAYER
    assert across_layers([DEPENDS_ON_SEED, "no clear difference"]) == DEPENDS_ON_SEED
    assert across_layers(["no clear difference", "depends on placement"]) == "no clear difference"


def _seed_run(se_shift: float, cbam_shift: float, seed: int, layer: str = "layer4.1") -> Evaluation:
    """Per-image values of one training seed with known differences from the baseline: energy +``se_shift``
    (SE) and +``cbam_shift`` (CBAM) under both placements; pointing and IoU equal to the baseline."""
    n = 200
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.5, n)
    jitter = np.tile([0.01, -0.01], n // 2)
    hits = rng.random(n) < 0.7

    def values(shift: float) -> dict:
        return {"pointing": hits, "energy": base + shift + (jitter if shift else 0), "iou": base}

    by_role = {"baseline": values(0), "se": values(se_shift), "cbam": values(cbam_shift)}
    flat = {"pointing": hits, "energy": np.full(n, 0.25), "iou": np.full(n, 0.1)}
    roles = ["baseline", "se", "cbam"]
    return Evaluation(f"seed{seed}", roles, [str(i) for i in range(n)], ["circle"] * n, 3, (64, 64), {r: (4, 4) for r in roles},
                      {r: hits for r in roles}, {"gradcam": {"half-pixel": by_role, "receptive-field": by_role}},
                      {name: {r: flat for r in roles} for name in ("uniform", "centre")}, layer=layer)


def test_the_verdict_across_seeds_on_data_with_a_known_answer():
    """At layer4.1, CBAM: +0.05 energy in every seed (wins); SE: +0.05 in two seeds, 0 in the third (depends
    on the seed). At layer3.1 no difference, and none in the pointing game and IoU anywhere."""
    shifts = {0: (0.05, 0.05), 1: (0.05, 0.04), 2: (0.0, 0.06)}
    result = Sweep("demo", {f"r{s}": f"seed{s}" for s in shifts},
                   {f"r{s}": {"layer3.1": _seed_run(0, 0, s, "layer3.1"), "layer4.1": _seed_run(se, cbam, s)}
                    for s, (se, cbam) in shifts.items()})
    every = sweep_rows(result)
    assert {r["analysis"] for r in every} == {"all correct", "all images"}  # no own-class maps here
    rows = [r for r in every if r["analysis"] == "all images"]
    verdict = {(r["model"], r["metric"], r["placement"]): r["verdict"] for r in rows if r["layer"] in ("layer4.1", "-")}
    assert {r["verdict"] for r in rows if r["layer"] == "layer3.1"} == {"no clear difference"}
    assert verdict[("cbam", "energy pointing game", "half-pixel")] == "CBAM better"
    assert verdict[("se", "energy pointing game", "receptive-field")] == DEPENDS_ON_SEED
    for model in ("se", "cbam"):
        assert verdict[(model, "IoU@0.5", "half-pixel")] == verdict[(model, "pointing game", "half-pixel")] == "no clear difference"
    se = next(r for r in rows if r["model"] == "se" and r["metric"] == "energy pointing game" and r["layer"] == "layer4.1"
              and r["analysis"] == "all images")
    assert se["diff_mean"] == pytest.approx(0.1 / 3) and se["diff_sd"] == pytest.approx(np.std([0.05, 0.05, 0.0], ddof=1))
    assert [se[f"seed{s}_verdict"] for s in shifts] == ["SE better", "SE better", "no clear difference"]
    text = sweep_markdown(result, every)
    assert "Verdicts across seeds, **all images** (n = seed0 200, seed1 200, seed2 200), gradcam" in text
    assert "| layer4.1 | · | seed-dependent | · | · | CBAM better | · |" in text and "| layer3.1 | · | · | · | · | · | · |" in text
    assert "| **every layer** | **·** | **seed-dependent** | **·** | **·** | **layer-dependent** | **·** |" in text
    assert json.dumps(rows)  # plain values: the CSV and the app can read them


def test_a_run_at_another_layer_names_its_files_and_report_by_the_layer(three, tmp_path):
    evaluation = evaluate(three, ["gradcam"], n=4, seed=5, batch_size=4, road=False, layer="layer2.1", out=tmp_path, report=True)
    assert sorted(p.name for p in evaluation.files) == ["tiny3_layer2.1_per_image.csv", "tiny3_layer2.1_report.html",
                                                        "tiny3_layer2.1_summary.csv", "tiny3_layer2.1_summary.md"]
    assert "CAMs at layer2.1." in (tmp_path / "tiny3_layer2.1_report.html").read_text()
    assert "target layer layer2.1 map 12x12" in (tmp_path / "tiny3_layer2.1_summary.md").read_text()


def test_replicates_must_differ_only_in_the_seed(tmp_path):
    def entry(generator: str, seed: int) -> dict:
        return {"kind": "shipped", "file": "x.pt", "sha256": "0", "generator": generator, "input_size": 96, "seed": seed,
                "class_names": ["a", "b"], "architecture": {"depth": 18, "attention": None, "options": {}}}

    models = {"a-baseline": entry("hard", 0), "a-cbam": entry("hard", 0), "b-baseline": entry("hard", 1),
              "b-cbam": entry("medium", 1)}
    sets = {"a": {"models": {"baseline": "a-baseline", "cbam": "a-cbam"}, "replicates": ["b"]},
            "b": {"models": {"baseline": "b-baseline", "cbam": "b-cbam"}}}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": models, "sets": sets}))
    with pytest.raises(SetUnavailable, match="its cbam model differs in generator"):
        replicate_names("a", tmp_path)
    sets["a"]["replicates"] = ["b", "a"]
    (tmp_path / "manifest.json").write_text(json.dumps({"models": models, "sets": sets}))
    with pytest.raises(SetUnavailable, match="twice, or itself"):
        replicate_names("a", tmp_path)


def test_a_difference_that_only_holms_correction_stops_is_marked():
    """SE: energy +0.002 in every seed, consistent (paired SD 0.01, 200 images): each interval excludes 0 and
    p < 0.05 on all images, yet after Holm's correction over that analysis's tests it is no clear difference; the sweep says so."""
    result = Sweep("demo", {f"r{s}": f"seed{s}" for s in range(3)},
                   {f"r{s}": {"layer3.1": _seed_run(0, 0, s, "layer3.1"), "layer4.1": _seed_run(0.002, 0.05, s)}
                    for s in range(3)})
    rows = sweep_rows(result)
    se = next(r for r in rows if r["model"] == "se" and r["metric"] == "energy pointing game" and r["layer"] == "layer4.1"
              and r["analysis"] == "all images")
    assert all(se[f"seed{s}_lo"] > 0 and se[f"seed{s}_p"] < 0.05 <= se[f"seed{s}_p_holm"] for s in range(3))
    assert se["verdict"] == "no clear difference"
    text = sweep_markdown(result, rows)
    assert "not after Holm's correction over that seed's tests of the same analysis" in text
    line = next(line for line in text.splitlines() if line.startswith("| all images | layer4.1 | gradcam | energy pointing game | "
                                                                       "half-pixel | SE |"))
    assert line.endswith("| · (Holm), · (Holm), · (Holm) | no clear difference (Holm's correction, in every seed) |")
    cbam = next(line for line in text.splitlines() if line.startswith("| all images | layer4.1 | gradcam | energy pointing game | "
                                                                       "half-pixel | CBAM |"))
    assert "(Holm)" not in cbam and cbam.endswith("| CBAM better |")

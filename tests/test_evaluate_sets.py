"""Evaluating every model of a set (2-4 models) against its baseline: real tiny models on generated
images, and constructed per-image values with known answers for Holm across models."""
import csv
import io

import numpy as np
import pytest

from cbam_viz.data import CLASSES, DIFFICULTIES, energy_pointing_game, pointing_game, rank_hit, render_sample, roc_auc
from cbam_viz.evaluate import Evaluation, evaluate, markdown_table, ordered_roles, summary_rows, surviving, write_outputs
from cbam_viz.evaluate.summary import read_scores, write_scores
from cbam_viz.explain import explain_batch
from cbam_viz.models.sets import ModelSet
from tests.evaluate_support import SIZE, tiny, tiny_set


@pytest.fixture(scope="module")
def three():
    return tiny_set()


@pytest.fixture(scope="module")
def evaluation(three):
    return evaluate(three, ["gradcam", "eigencam"], n=6, seed=5, batch_size=4, road=True)


def test_every_model_is_scored_and_compared_with_the_baseline(three, evaluation, tmp_path):
    assert evaluation.roles == ["baseline", "cbam", "se"] and evaluation.reference_role == "baseline"
    samples = [render_sample(5, i, SIZE, difficulty=DIFFICULTIES["easy"]) for i in range(6)]
    direct = explain_batch(three.models, [s.image for s in samples], targets=[s.label for s in samples])
    own = explain_batch(three.models, [s.image for s in samples])  # each model's own top-1 class
    for role in ("baseline", "se", "cbam"):
        values = evaluation.values["gradcam"]["half-pixel"][role]
        shape = direct[role][0].raw_cam.shape
        assert values["pointing"].tolist() == [pointing_game(r.cam, s.mask, feature_shape=shape) for r, s in zip(direct[role], samples)]
        assert np.allclose(values["energy"], [energy_pointing_game(r.cam, s.box) for r, s in zip(direct[role], samples)])
        assert np.allclose(values["auc"], [roc_auc(r.cam, s.mask) for r, s in zip(direct[role], samples)], atol=1e-6)
        assert evaluation.accuracy[role].tolist() == [r.prediction == s.label for r, s in zip(direct[role], samples)]
        mine = evaluation.own["gradcam"]["half-pixel"][role]  # the map of the model's own prediction
        assert np.allclose(mine["rank_hit"], [rank_hit(r.cam, s.mask) for r, s in zip(own[role], samples)], atol=1e-6)
        assert evaluation.predicted[role] == [CLASSES[r.prediction] for r in own[role]]
    wrong = ~evaluation.accuracy["baseline"]
    assert wrong.any()  # random weights: the own-prediction maps differ from the annotated-class maps somewhere
    assert evaluation.all_correct.sum() < 2  # ...and no analysis of the images every model gets right
    rows = summary_rows(evaluation)
    # accuracy per compared model; all images: methods x 7 tested metrics x models x placements; own prediction: no ROAD
    assert len(rows) == 2 + 2 * 7 * 2 * 2 + 2 * 6 * 2 * 2
    assert {r["analysis"] for r in rows} == {"all images", "own prediction"} and {r["n"] for r in rows} == {6}
    assert {r["model"] for r in rows} == {"se", "cbam"} and {r["reference"] for r in rows} == {"baseline"}
    smallest = min(rows, key=lambda r: r["p"])
    assert smallest["p_holm"] == pytest.approx(min(1.0, len(rows) * smallest["p"]))
    table = markdown_table(evaluation, rows)
    assert "Every model is compared with Baseline" in table and "| gradcam | pointing game | half-pixel | SE |" in table
    per_image, _, md = write_outputs(evaluation, tmp_path)
    lines = per_image.read_text().splitlines()
    assert lines[0] == ("image,index,class,model,method,placement,target,predicted,accuracy,all_correct,pointing,auc,rank_hit,"
                        "energy,energy_matched,concentration,iou,road")
    assert len(lines) == 1 + 6 * 3 * (2 * 2 * 2 + 2)  # images x models x (methods x placements x targets + reference maps)
    assert lines[1].startswith(f"00000,0,{CLASSES[0]},baseline,gradcam,half-pixel,annotated,{evaluation.predicted['baseline'][0]},")
    assert md.read_text() == table


def test_partial_rows_read_back_exactly(evaluation):
    buffer = io.StringIO()
    write_scores(buffer, evaluation.scores(), precise=True, header=False)
    buffer.seek(0)
    rows = read_scores(csv.reader(buffer))
    again = Evaluation.from_scores(rows, evaluation.roles, list(evaluation.values), True, name="tiny3", seed=5,
                                   image_shape=evaluation.image_shape, feature_shapes=evaluation.feature_shapes)
    for role in evaluation.roles:
        for metric in ("pointing", "auc", "rank_hit", "energy", "energy_matched", "concentration", "iou", "road"):
            assert np.array_equal(again.values["eigencam"]["receptive-field"][role][metric],
                                  evaluation.values["eigencam"]["receptive-field"][role][metric])
        assert np.array_equal(again.own["gradcam"]["half-pixel"][role]["auc"], evaluation.own["gradcam"]["half-pixel"][role]["auc"])
    assert again.predicted == evaluation.predicted
    assert summary_rows(again) == summary_rows(evaluation)


def test_scores_do_not_depend_on_the_batch(three, evaluation):
    """ROAD's noise is seeded per image: another batch size gives the same per-image scores."""
    other = evaluate(three, ["gradcam", "eigencam"], n=6, seed=5, batch_size=6, road=True)
    for role in evaluation.roles:
        for metric in ("pointing", "auc", "energy", "energy_matched", "iou", "road"):
            a = other.values["gradcam"]["half-pixel"][role][metric]
            b = evaluation.values["gradcam"]["half-pixel"][role][metric]
            assert np.allclose(a, b, rtol=1e-4, atol=1e-6), (role, metric)


def test_a_set_without_baseline_is_compared_with_its_first_model():
    model_set = ModelSet("nobase", "", {"se": tiny("se", 1), "cbam": tiny("cbam", 2)}, {})
    roles, note = ordered_roles(model_set)
    assert roles == ["se", "cbam"] and "no 'baseline' model" in note and "'se'" in note
    result = evaluate(model_set, ["gradcam"], n=2, seed=5, batch_size=2, road=False)
    rows = summary_rows(result)
    assert {r["reference"] for r in rows} == {"se"} and {r["model"] for r in rows} == {"cbam"}
    assert note in markdown_table(result, rows)


def test_a_model_without_the_generated_classes_is_refused(three):
    other = tiny(None, 3)
    other.info.class_names = [f"c{i}" for i in range(len(CLASSES))]
    with pytest.raises(ValueError, match="model 'odd' of set 'tiny3' was not trained on the generated shapes"):
        evaluate(ModelSet("tiny3", "", {**three.models, "odd": other}), ["gradcam"], n=2)


def _constructed() -> Evaluation:
    """SE: energy +0.05 under both placements (survives Holm); CBAM: energy +0.05 under half-pixel only."""
    n = 200
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, n)
    jitter = np.tile([0.01, -0.01], n // 2)
    hits = np.ones(n, bool)

    def values(shift: float) -> dict:
        return {"pointing": hits, "energy": base + shift + jitter, "iou": base}

    by_placement = {"half-pixel": {"baseline": values(0) | {"energy": base}, "se": values(0.05), "cbam": values(0.05)},
                    "receptive-field": {"baseline": values(0) | {"energy": base}, "se": values(0.05), "cbam": values(0.0)}}
    flat = {"pointing": hits, "energy": np.full(n, 0.25), "iou": np.full(n, 0.1)}
    roles = ["baseline", "se", "cbam"]
    return Evaluation("constructed", roles, [str(i) for i in range(n)], ["circle"] * n, 3, (64, 64), {r: (4, 4) for r in roles},
                      {r: hits for r in roles}, {"gradcam": by_placement},
                      {name: {r: flat for r in roles} for name in ("uniform", "centre")})


def test_holm_runs_across_models_and_the_summary_names_what_survives():
    evaluation = _constructed()
    rows = summary_rows(evaluation)
    assert len(rows) == 2 + 2 * 3 * 2 * 2  # every model is right on every image: two analyses of the same images
    calls = {(r["model"], r["metric"], r["placement"]): r["call"] for r in rows if r["analysis"] == "all correct"}
    assert calls[("se", "energy pointing game", "receptive-field")] == "SE better"
    assert calls[("cbam", "energy pointing game", "half-pixel")] == "CBAM better"
    assert calls[("cbam", "energy pointing game", "receptive-field")] == "no clear difference"
    assert surviving(rows) == [f"SE vs Baseline, gradcam, energy pointing game: SE better "
                               f"({next(r['diff'] for r in rows if r['model'] == 'se' and r['metric'] == 'energy pointing game'):+.3f})"]
    table = markdown_table(evaluation, rows)
    assert "| energy pointing game | CBAM | depends on placement |" in table
    assert "| energy pointing game | SE | SE better |" in table
    assert "agree across placements (`all correct` images; accuracy: all images): \n\n- SE vs Baseline" in table

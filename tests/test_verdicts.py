"""Evaluation verdict rules on constructed data with known answers, the placement's premise, and the
refusal of seen dataset seeds."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cbam_viz.evaluate import Evaluation, combine_placements, decide, markdown_table, summary_rows, surviving
from cbam_viz.training import Recipe, build_demo_model

ROOT = Path(__file__).resolve().parents[1]
N = 200


def test_decide_needs_adjusted_p_and_interval():
    assert decide(0.01, 0.01, 0.05) == "CBAM better"
    assert decide(0.01, -0.05, -0.01) == "baseline better"
    assert decide(0.01, 0.01, 0.05, "SE", "Baseline") == "SE better"
    assert decide(0.01, -0.05, -0.01, "SE", "Baseline") == "Baseline better"
    assert decide(0.06, 0.01, 0.05) == "no clear difference"
    assert decide(0.001, -0.01, 0.05) == "no clear difference"
    assert decide(0.001, 0.0, 0.05) == "no clear difference"


def test_combine_placements():
    assert combine_placements(["CBAM better", "CBAM better"]) == "CBAM better"
    assert combine_placements(["no clear difference"]) == "no clear difference"
    assert combine_placements(["CBAM better", "no clear difference"]) == "depends on placement"
    assert combine_placements(["baseline better", "CBAM better"]) == "depends on placement"


def _constructed(seen_as: str | None = None) -> Evaluation:
    """Energy: CBAM +0.05 under half-pixel placement only. IoU: CBAM -0.05 under both.
    Pointing: 12 images only CBAM hits, 3 only the baseline (McNemar p = 0.035 before Holm)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, N)
    jitter = np.tile([0.01, -0.01], N // 2)
    hits_base, hits_cbam = np.zeros(N, bool), np.zeros(N, bool)
    hits_base[:150] = hits_cbam[:150] = True
    hits_cbam[150:162] = True
    hits_base[162:165] = True

    def roles(energy_shift: float) -> dict:
        return {"baseline": {"pointing": hits_base, "energy": base, "iou": base},
                "cbam": {"pointing": hits_cbam, "energy": base + energy_shift + jitter, "iou": base - 0.05 + jitter}}

    uniform = {"pointing": np.ones(N, bool), "energy": np.full(N, 0.25), "iou": np.full(N, 0.1)}
    centre = {**uniform, "energy": np.full(N, 0.35)}
    return Evaluation("constructed", ["baseline", "cbam"], [f"{i:05d}" for i in range(N)], ["circle"] * N, 3, (64, 64),
                      {"baseline": (4, 4), "cbam": (4, 4)}, {r: np.ones(N, bool) for r in ("baseline", "cbam")},
                      {"gradcam": {"half-pixel": roles(0.05), "receptive-field": roles(0.0)}},
                      {"uniform": {"baseline": uniform, "cbam": uniform}, "centre": {"baseline": centre, "cbam": centre}},
                      seen_as=seen_as)


def test_summary_rows_apply_holm_and_the_placement_rule():
    evaluation = _constructed()
    rows = [r for r in summary_rows(evaluation) if r["analysis"] == "all images"]  # one Holm family: accuracy and 6 rows
    assert [(r["metric"], r["placement"]) for r in rows] == [("top-1 accuracy", "-")] + [
        (m, p) for m in ("pointing game", "energy pointing game", "IoU@0.5") for p in ("half-pixel", "receptive-field")]
    by_key = {(r["metric"], r["placement"]): r for r in rows}
    accuracy = by_key[("top-1 accuracy", "-")]
    assert accuracy["baseline"] == 1.0 and accuracy["baseline_lo"] == pytest.approx(N / (N + 1.959964 ** 2))
    assert accuracy["diff_lo"] < 0 < accuracy["diff_hi"] and accuracy["verdict"] == "no clear difference"

    energy_half, energy_field = by_key[("energy pointing game", "half-pixel")], by_key[("energy pointing game", "receptive-field")]
    assert energy_half["call"] == "CBAM better" and energy_field["call"] == "no clear difference"
    assert energy_half["verdict"] == energy_field["verdict"] == "depends on placement"
    for placement in ("half-pixel", "receptive-field"):
        assert by_key[("IoU@0.5", placement)]["verdict"] == "Baseline better"

    pointing = by_key[("pointing game", "half-pixel")]
    assert pointing["p"] == pytest.approx(0.03515625) and pointing["diff_lo"] > 0  # significant alone...
    assert pointing["p_holm"] > 0.05 and pointing["verdict"] == "no clear difference"  # ...not among 7 rows
    smallest = min(rows, key=lambda r: r["p"])
    assert smallest["p_holm"] == pytest.approx(len(rows) * smallest["p"])
    assert all(r["p_holm"] >= r["p"] for r in rows)
    assert energy_half["uniform_baseline"] == 0.25 and energy_half["centre_model"] == 0.35
    assert accuracy["uniform_model"] == ""


def test_markdown_reports_verdict_grid_and_seen_seed_warning():
    table = markdown_table(_constructed(), summary_rows(_constructed()))
    assert "| energy pointing game | CBAM | depends on placement |" in table
    assert "| IoU@0.5 | CBAM | Baseline better |" in table
    assert "- CBAM vs Baseline, gradcam, IoU@0.5: Baseline better (-0.050)" in table
    assert "pointing tolerance 8 px" in table and "Warning" not in table
    warned = markdown_table(_constructed("training"), summary_rows(_constructed("training")))
    assert "**Warning: dataset seed 3 is the set's training seed" in warned


def test_layer4_cells_are_centred_on_stride_times_index():
    """The premise of the receptive-field placement: layer4 unit (i, j) of the demo architecture sees
    an input region centred on pixel (16 i, 16 j)."""
    torch.manual_seed(0)
    model = build_demo_model(Recipe(), None).eval()
    captured = {}
    handle = model.layer4.register_forward_hook(lambda module, inputs, output: captured.update(out=output))
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0), requires_grad=True)
    model(x)
    handle.remove()
    assert captured["out"].shape[-2:] == (16, 16)
    for i, j in ((8, 8), (7, 9)):
        grad, = torch.autograd.grad(captured["out"][0, :, i, j].sum(), x, retain_graph=True)
        ys, xs = grad[0].abs().sum(0).nonzero(as_tuple=True)
        assert 0 < ys.min() and ys.max() < 255 and 0 < xs.min() and xs.max() < 255  # not clipped by the border
        assert ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2) == (16 * i, 16 * j)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbam_viz", "evaluate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("seed, use", [(1, "training"), (2, "validation")])
def test_evaluate_refuses_seen_seeds(tmp_path, seed, use):
    result = _cli("--seed", str(seed), "-n", "2", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: dataset seed {seed} is the {use} seed of set 'demo'")
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_evaluate_scores_a_seen_seed_only_when_asked_and_says_so(tmp_path):
    result = _cli("--seed", "1", "--allow-training-seed", "-n", "2", "--batch-size", "2", "--no-road", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "warning: dataset seed 1 is the set's training seed" in result.stderr
    assert "**Warning: dataset seed 1 is the set's training seed" in (tmp_path / "demo_summary.md").read_text()
    assert "**Warning: dataset seed 1 is the set's training seed" in (tmp_path / "demo_sweep.md").read_text()  # replicates


def test_only_images_every_model_gets_right_decide_which_model_localizes_better():
    """The baseline misclassifies images 0-59 and localizes worse there; CBAM is right everywhere. CBAM's
    energy advantage over all images comes only from the baseline's mistakes: it must not survive."""
    evaluation = _constructed()
    evaluation.accuracy["baseline"] = np.arange(N) >= 60
    wrong_se = np.zeros(N, bool)
    wrong_se[[3, 70, 71]] = True  # a third model wrong elsewhere: the filter needs every model right
    evaluation.roles.append("se")
    evaluation.accuracy["se"] = ~wrong_se
    for by_role in evaluation.values["gradcam"].values():
        base = by_role["baseline"]["energy"]
        by_role["cbam"] = dict(by_role["cbam"], energy=base + np.where(np.arange(N) < 60, 0.2, np.tile([0.01, -0.01], N // 2)))
        by_role["se"] = dict(by_role["baseline"])
    for by_role in evaluation.reference.values():
        by_role["se"] = by_role["baseline"]
    keep = {analysis: k for analysis, k, _ in evaluation.analyses()}
    assert np.flatnonzero(keep["all correct"]).tolist() == [i for i in range(60, N) if i not in (70, 71)]
    assert keep["all images"].all() and "own prediction" not in keep  # no own-class maps in this evaluation
    rows = summary_rows(evaluation)
    energy = {r["analysis"]: r for r in rows if r["model"] == "cbam" and r["metric"] == "energy pointing game"}
    assert energy["all correct"]["n"] == N - 62 and energy["all images"]["n"] == N
    assert energy["all images"]["verdict"] == "CBAM better"
    assert energy["all correct"]["verdict"] == "no clear difference"
    assert not any("energy pointing game: CBAM better" in line for line in surviving(rows))
    assert "**all correct** (n = 138)" in markdown_table(evaluation, rows)

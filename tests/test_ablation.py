"""`train --ablation`: the paper's ablation variants on a tiny budget, end to end through the CLI."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cbam_viz.ablation import GROUPS, VARIANTS, score
from cbam_viz.models import load_checkpoint
from cbam_viz.training import Recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train-size", "48", "--val-size", "16", "--epochs", "1", "--batch-size", "16", "--size", "48", "--width", "8"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbam_viz", "train", "--ablation", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    done = run(*TINY, "--out-dir", str(out), "--table", str(out / "ablation.md"), "--eval-n", "12",
               "--variants", "baseline,channel-max,parallel")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_every_variant_builds_what_its_title_says():
    assert [v.attention for v in VARIANTS.values()].count(None) == 1
    assert VARIANTS["channel-avg"].options == {"channel_pools": ("avg",), "spatial": False}
    assert {n for names in GROUPS.values() for n in names} == set(VARIANTS)


def test_the_table_and_csv_report_every_trained_variant(ablation):
    md = (ablation / "ablation.md").read_text()
    assert "reduced budget (48 training images seen" in md
    assert md.count("| baseline (no attention) |") == 3 and md.count("| channel: max pool |") == 1
    assert md.count("| channel and spatial in parallel |") == 1 and "spatial first" not in md
    with open(ablation / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["variant"], r["metric"]) for r in rows} == {(v, m) for v in ("baseline", "channel-max", "parallel")
                                                          for m in ("accuracy", "pointing", "energy")}
    assert all(float(r["lo"]) <= float(r["value"]) <= float(r["hi"]) and r["n"] == "12" for r in rows)
    model = load_checkpoint(ablation / "ablation-channel-max.pt")
    assert model.info.attention == "cbam" and model.info.options["channel_pools"] in (["max"], ("max",))


def test_scores_in_the_csv_are_recomputed_from_the_checkpoints(ablation):
    recipe = Recipe(size=48, width=8)
    scores = score(load_checkpoint(ablation / "ablation-parallel.pt"), recipe, 12)
    with open(ablation / "ablation.csv", newline="") as f:
        stored = {r["metric"]: float(r["value"]) for r in csv.DictReader(f) if r["variant"] == "parallel"}
    assert np.allclose([scores[m][0] for m in ("accuracy", "pointing", "energy")], [stored[m] for m in ("accuracy", "pointing", "energy")], atol=1e-6)


def test_a_rerun_keeps_finished_variants_and_unknown_ones_are_refused(ablation):
    before = (ablation / "ablation-baseline.pt").stat().st_mtime_ns
    done = run(*TINY, "--out-dir", str(ablation), "--table", str(ablation / "again.md"), "--eval-n", "4", "--variants", "baseline")
    assert done.returncode == 0 and "already trained with this recipe; keeping it" in done.stderr
    assert (ablation / "ablation-baseline.pt").stat().st_mtime_ns == before
    bad = run(*TINY, "--out-dir", str(ablation), "--variants", "baseline,eca")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: unknown variant(s) eca")

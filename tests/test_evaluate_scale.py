"""Evaluate at scale: resuming an interrupted run without recomputing finished images, and torchrun
with 2 CPU processes (gloo on loopback) giving the per-image results of a single process."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cbam_viz.evaluate.run as run
from cbam_viz.data import DIFFICULTIES, write_samples
from cbam_viz.evaluate import evaluate_folder
from cbam_viz.evaluate.distributed import PartialFile
from tests.evaluate_support import SIZE, tiny_models_file, tiny_set

ROOT = Path(__file__).resolve().parents[1]
N, SEED = 6, 5


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    write_samples(out, N, SEED, SIZE, DIFFICULTIES["easy"])
    return out


def test_an_interrupted_run_resumes_without_recomputing_finished_images(samples, tmp_path, monkeypatch):
    three = tiny_set()
    real, computed = run.score_batch, []

    def counting(models, targets, *args, **kwargs):
        if stop_after is not None and len(computed) == stop_after:
            raise KeyboardInterrupt
        computed.append([t.index for t in targets])
        return real(models, targets, *args, **kwargs)

    monkeypatch.setattr(run, "score_batch", counting)
    stop_after = 2
    options = dict(seed=SEED, batch_size=2, road=False)
    with pytest.raises(KeyboardInterrupt):
        evaluate_folder(three, samples, samples / "labels.csv", "csv", ["gradcam"], out=tmp_path, **options)
    partial = tmp_path / f"tiny3_{samples.name}_partial-0of1.jsonl"
    assert len(partial.read_text().splitlines()) == 3  # settings + two finished batches
    with open(partial, "a") as f:
        f.write('{"batch": 2, "scores": [["00004_')  # a line the interruption cut short
    stop_after, computed[:] = None, []
    resumed = evaluate_folder(three, samples, samples / "labels.csv", "csv", ["gradcam"], out=tmp_path, **options)
    assert computed == [[4, 5]] and not partial.exists()
    assert [p.name for p in resumed.files][:2] == [f"tiny3_{samples.name}_per_image.csv", f"tiny3_{samples.name}_summary.csv"]
    computed[:] = []
    straight = evaluate_folder(three, samples, samples / "labels.csv", "csv", ["gradcam"], **options)
    assert computed == [[0, 1], [2, 3], [4, 5]] and straight.files == []
    for role in straight.roles:
        for metric, values in straight.values["gradcam"]["receptive-field"][role].items():
            assert np.array_equal(values, resumed.values["gradcam"]["receptive-field"][role][metric])


def test_a_partial_file_of_other_settings_is_not_resumed(tmp_path, capsys):
    path = tmp_path / "x_partial-0of1.jsonl"
    PartialFile(path, {"methods": ["gradcam"]}).append({"batch": 0, "scores": [], "skipped": [], "shapes": {}})
    assert list(PartialFile(path, {"methods": ["gradcam"]}).load()) == [0]
    assert PartialFile(path, {"methods": ["layercam"]}).load() == {} and not path.exists()
    assert "ignoring x_partial-0of1.jsonl: it belongs to a run with other settings" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes_matches_one_process(samples, tmp_path):
    models = tiny_models_file(tmp_path / "models")
    args = ["-m", "cbam_viz", "evaluate", "--models", str(models), "--set", "tiny3", "--images", str(samples),
            "--annotations", str(samples / "labels.csv"), "--batch-size", "2", "--workers", "0", "--seed", str(SEED)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    double = subprocess.run([*launcher, *args, "--out", str(tmp_path / "two")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    assert "[rank 0/2]" in double.stderr and "[rank 1/2]" in double.stderr
    assert double.stdout.count(f"wrote {tmp_path / 'two'}") == 3  # rank 0 reports, once
    for name in (f"tiny3_{samples.name}_per_image.csv", f"tiny3_{samples.name}_summary.csv", f"tiny3_{samples.name}_summary.md"):
        one, two = (tmp_path / "one" / name).read_text(), (tmp_path / "two" / name).read_text()
        assert one == two, name
    rows = (tmp_path / "two" / f"tiny3_{samples.name}_per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + N * 3 * 6  # images x models x (2 placements x 2 targets + 2 reference maps)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.suffix for p in (tmp_path / "two").iterdir()) == [".csv", ".csv", ".md"]  # no partial file left


def test_a_torchrun_sweep_matches_one_process_and_leaves_no_partial_file(tmp_path):
    """A sweep keeps each run's partial files until the sweep is written (every rank its own), then removes them.
    When rank 0 cannot write the sweep, no rank removes its partial files: the rerun reads every batch back."""
    models = tiny_models_file(tmp_path / "models")
    args = ["-m", "cbam_viz", "evaluate", "--models", str(models), "--set", "tiny3", "-n", "8", "--batch-size", "2",
            "--no-road", "--workers", "0", "--layers", "layer2.1,layer4.1"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]

    def evaluate(command: list[str], out: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *args, "--out", str(tmp_path / out)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)

    (tmp_path / "two" / "tiny3_sweep.csv").mkdir(parents=True)  # rank 0 cannot write the sweep's table
    failed = evaluate(launcher, "two")
    assert failed.returncode != 0
    partials = sorted(p.name for p in (tmp_path / "two").glob("*_partial-*"))
    assert partials == [f"tiny3_{layer}partial-{rank}of2.jsonl" for layer in ("layer2.1_", "") for rank in (0, 1)]
    (tmp_path / "two" / "tiny3_sweep.csv").rmdir()
    for command, out in (([sys.executable], "one"), (launcher, "two")):
        done = evaluate(command, out)
        assert done.returncode == 0, done.stderr[-3000:]
    assert all(f"already scored in {name}" in done.stderr for name in partials)  # the rerun computed nothing again
    one, two = (sorted(p.name for p in (tmp_path / out).iterdir()) for out in ("one", "two"))
    assert one == two and "tiny3_sweep.csv" in two and not [n for n in two if "partial" in n]
    for name in ("tiny3_sweep.csv", "tiny3_layer2.1_per_image.csv", "tiny3_per_image.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text(), name

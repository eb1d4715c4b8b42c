"""Load test of the user-study vote path: simulated participants voting concurrently through
gradio_client against app.py started as a subprocess, with a SIGKILL + restart in the middle.

For each backend (SQLite file; PostgreSQL on a throwaway cluster, served by TWO app processes
sharing it), it:
  1. writes a random-init demo set (or uses --models-dir) and a study of --votes trials,
  2. starts the server(s) and joins --participants participants (each its own gradio_client),
  3. lets them all vote at once; when half of all votes are acknowledged it kills every server
     with SIGKILL and restarts it on the same database; participants whose call failed
     reconnect (as a page reload would) and resubmit the same answer,
  4. reads the database directly and checks that every acknowledged vote is stored exactly once.

It prints votes acknowledged, votes stored, duplicates, lost votes and the p50/p95 latency of a
vote call as the client sees it (submit -> next trial received), and exits 1 if a vote was lost
or stored twice.

    .venv/bin/python -m benchmarks.study_load [--backend sqlite|postgresql|both] [--participants 50]
        [--votes 20] [--think 1,3] [--client-procs 5] [--no-kill] [--models-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # study_ui_fixtures, pg_cluster (plain modules)

STUDY = "load-test"
ANSWERS = ("A", "B", "same", "neither")
CALL_TIMEOUT_S = 60
POSITION, STATUS = 3, 4  # in study_vote's outputs (progress, question, image and maps inline, position, status)


# --- servers ------------------------------------------------------------------------------


class Server:
    """app.py in a subprocess; `kill()` is SIGKILL, `start()` (re)starts it on the same port."""

    def __init__(self, port: int, args: list[str], env: dict[str, str], log: Path):
        self.port, self.args, self.env, self.log = port, args, env, log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 180) -> float:
        t0 = time.perf_counter()
        with self.log.open("a") as log:
            log.write(f"\n=== start {time.strftime('%X')} ===\n")
            log.flush()
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *self.args, "--port", str(self.port)],
                                         cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until_up(self.url, timeout, self.proc)
        return time.perf_counter() - t0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until_up(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2, verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up within {timeout} s")


# --- participants (run in client processes, one thread each) ------------------------------


def connect(url: str, killed=None):
    """A new gradio_client session (what a page reload is), once the server is back."""
    from gradio_client import Client

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if killed is not None and killed.value:  # the main process restarts the server: wait for it
            time.sleep(0.2)
            continue
        try:
            # ssl_verify=False: plain http on loopback, and httpx would otherwise load the CA bundle on
            # every request gradio_client makes (~25 ms of CPU each): the load generator would be the
            # bottleneck of this 2-core machine, not the server
            return Client(url, verbose=False, download_files=False, analytics_enabled=False, max_workers=2,
                          ssl_verify=False)
        except Exception:  # noqa: BLE001 - not up yet: try again
            time.sleep(1.0)
    raise TimeoutError(f"{url} did not come back")


def call(client, *args, api_name: str):
    return client.submit(*args, api_name=api_name).result(timeout=CALL_TIMEOUT_S)


def participant(index: int, url: str, think: tuple[float, float], joined: mp.Barrier, acked, killed, out: list) -> None:
    from gradio_client.exceptions import AppError

    rng = random.Random(index)
    client = connect(url)
    result = call(client, "", "prefer not to say", False, "", api_name="/study_start")
    credential, position = result[0], result[1 + POSITION]
    pid = credential.rpartition(".")[0]  # the participant id the server issued
    joined.wait()
    reconnected = False
    answer = None
    while position is not None:
        if answer is None:  # a new trial: look at it first (a resubmission is sent at once)
            answer = rng.choice(ANSWERS)
            pause = rng.uniform(*think)
            time.sleep(pause)
        t0 = time.perf_counter()
        try:
            result = call(client, credential, position, answer, round(pause * 1000), api_name="/study_vote")
        except AppError as exc:  # the server refused the vote: must never happen here
            out.append({"pid": pid, "position": position, "answer": answer, "rejected": str(exc)})
            return
        except Exception:  # noqa: BLE001 - connection lost (the server was killed): reload
            out.append({"pid": pid, "position": position, "answer": answer, "failed": True, "killed": killed.value})
            client = connect(url, killed)
            reconnected = True
            continue
        latency = time.perf_counter() - t0
        out.append({"pid": pid, "position": position, "answer": answer, "ms": latency * 1000,
                    "duplicate": "already been recorded" in (result[STATUS] or ""), "retry": reconnected,
                    "during_kill": bool(killed.value)})
        with acked.get_lock():
            acked.value += 1
        position, answer, reconnected = result[POSITION], None, False


def client_process(indices: list[int], urls: list[str], think: tuple[float, float], joined, acked, killed,
                   queue) -> None:
    out: list = []
    threads = [threading.Thread(target=participant, args=(i, urls[i % len(urls)], think, joined, acked, killed, out))
               for i in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(out)


# --- one run ------------------------------------------------------------------------------


def run(backend: str, db_url: str | None, work: Path, models_dir: Path, args: argparse.Namespace) -> bool:
    from pg_cluster import free_port

    from cbam_viz.study import open_store

    work.mkdir(parents=True, exist_ok=True)
    config = work / "study.toml"
    config.write_text(f'name = "{STUDY}"\npair = "demo"\ntrials_per_participant = {args.votes}\n'
                      f'[stimuli]\nkind = "demo"\nseed = 7\ncount = {max(40, args.votes)}\n')
    env = {**os.environ, "CBAM_VIZ_MODELS": str(models_dir), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    server_args = ["--sets", "demo", "--study", str(config), "--data-dir", str(work / "data")]
    if db_url:
        server_args += ["--db", db_url]
    count = 2 if backend == "postgresql" else 1  # two app processes share one PostgreSQL
    servers = [Server(free_port(), server_args, env, work / f"server{i}.log") for i in range(count)]
    try:
        for server in servers:
            print(f"[{backend}] server on :{server.port} up in {server.start():.1f} s", flush=True)
        time.sleep(2)  # stimulus maps render in the background at start-up
        total = args.participants * args.votes
        joined = mp.Barrier(args.participants + 1)
        acked, killed = mp.Value("i", 0), mp.Value("i", 0)
        queue: mp.Queue = mp.Queue()
        groups = [list(range(args.participants))[k::args.client_procs] for k in range(args.client_procs)]
        urls = [s.url for s in servers]
        procs = [mp.Process(target=client_process, args=(g, urls, args.think, joined, acked, killed, queue))
                 for g in groups if g]
        for proc in procs:
            proc.daemon = True  # never outlive a failed run
            proc.start()
        joined.wait()
        t_start = time.perf_counter()
        print(f"[{backend}] {args.participants} participants joined; voting", flush=True)
        restart_s = None
        if not args.no_kill:
            while acked.value < total // 2 and any(p.is_alive() for p in procs):
                time.sleep(0.02)
            killed.value = 1
            for server in servers:
                server.kill()
            print(f"[{backend}] SIGKILL after {acked.value} acknowledged votes; restarting", flush=True)
            t0 = time.perf_counter()
            for server in servers:
                server.start()
            restart_s = time.perf_counter() - t0
            killed.value = 0
        records = [r for _ in procs for r in queue.get()]
        for proc in procs:
            proc.join()
        wall = time.perf_counter() - t_start
    finally:
        for server in servers:
            server.stop()

    with open_store(db_url, work / "data") as store:
        stored = store.votes(STUDY)
    acks = [r for r in records if "ms" in r]
    failed = [r for r in records if r.get("failed")]
    rejected = [r for r in records if "rejected" in r]
    stored_keys = [(v.participant_id, v.position) for v in stored]
    stored_answer = {(v.participant_id, v.position): v.answer for v in stored}
    lost = [r for r in acks if stored_answer.get((r["pid"], r["position"])) != r["answer"]]
    acked_keys = {(r["pid"], r["position"]) for r in acks}
    duplicates = len(stored_keys) - len(set(stored_keys))
    steady = sorted(r["ms"] for r in acks if not r["retry"] and not r["during_kill"])
    pct = lambda q: steady[min(len(steady) - 1, int(q * len(steady)))] if steady else float("nan")  # noqa: E731
    summary = {
        "backend": backend + (" (2 app processes)" if len(servers) > 1 else ""),
        "participants": args.participants, "votes_each": args.votes, "think_s": list(args.think),
        "votes_acknowledged": len(acks), "acknowledged_distinct": len(acked_keys),
        "votes_stored": len(stored), "expected": total,
        "acknowledged_not_stored": len(lost), "stored_twice": duplicates,
        "stored_not_acknowledged": len(set(stored_keys) - acked_keys),
        "calls_failed_by_kill": len(failed), "resubmissions_already_recorded": sum(r["duplicate"] for r in acks),
        "rejected": len(rejected),
        "latency_ms_p50": round(statistics.median(steady), 1) if steady else None,
        "latency_ms_p95": round(pct(0.95), 1), "latency_ms_max": round(steady[-1], 1) if steady else None,
        "latency_n": len(steady), "restart_s": None if restart_s is None else round(restart_s, 1),
        "wall_s": round(wall, 1), "votes_per_s": round(len(acks) / wall, 1),
    }
    if rejected:
        summary["first_rejection"] = rejected[0]["rejected"]
    print(json.dumps(summary), flush=True)
    print(f"[{backend}] votes acknowledged {len(acks)}, votes stored {len(stored)} (of {total}), "
          f"duplicates {duplicates}, acknowledged but not stored {len(lost)}, rejected {len(rejected)}; "
          f"vote latency p50 {summary['latency_ms_p50']} ms, p95 {summary['latency_ms_p95']} ms "
          f"(n={len(steady)}, through gradio_client)", flush=True)
    return not lost and not duplicates and not rejected and len(stored) == total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--votes", type=int, default=20)
    parser.add_argument("--client-procs", type=int, default=5, help="processes the participant threads are spread over")
    parser.add_argument("--think", type=lambda v: tuple(float(x) for x in v.split(",")), default=(1.0, 3.0),
                        metavar="MIN,MAX", help="seconds a participant looks at a trial before voting, drawn "
                                                "uniformly (default 1,3; 0,0 = vote back to back, a stress test)")
    parser.add_argument("--no-kill", action="store_true", help="skip the SIGKILL + restart")
    parser.add_argument("--models-dir", type=Path, help="models folder with a 'demo' set (default: random-init set)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cbam-viz-load-"))
    print(f"work folder (server logs): {work}", flush=True)
    if args.models_dir:
        models_dir = args.models_dir.resolve()
    else:
        from study_ui_fixtures import write_demo_models

        models_dir = write_demo_models(work / "models")
    ok = True
    if args.backend in ("sqlite", "both"):
        ok &= run("sqlite", None, work / "sqlite", models_dir, args)
    if args.backend in ("postgresql", "both"):
        from pg_cluster import throwaway_cluster

        with throwaway_cluster() as url:
            ok &= run("postgresql", url, work / "postgresql", models_dir, args)
    print("PASS: every acknowledged vote stored exactly once" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())

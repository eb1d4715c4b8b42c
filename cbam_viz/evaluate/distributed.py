"""Running one evaluation in several processes (``torchrun --nproc-per-node N -m cbam_viz evaluate ...``)
and resuming it: batch ``b`` belongs to rank ``b % world``, and every finished batch is appended to
the rank's partial file, so an interrupted run continues where it stopped.

torch.distributed uses NCCL when the process has a GPU (``cuda:LOCAL_RANK``) and gloo otherwise; the
same works across nodes. Batches are the same in every layout (consecutive dataset items), so the
per-image results do not depend on how many processes computed them. Resuming needs the same number
of processes (each rank reads its own partial file).
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..fileio import atomic_write


@dataclass(frozen=True)
class Shard:
    """This process's place in the run: rank ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | None) -> str:
        """The device of this process: ``requested`` (default cuda when available), the local rank's GPU under torchrun."""
        device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world > 1 else device


def start(device: str | None = None) -> Shard:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    shard = Shard(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        gpu = shard.device(device).startswith("cuda")
        if gpu:
            torch.cuda.set_device(shard.local_rank)
        dist.init_process_group("nccl" if gpu else "gloo")
    return shard


def barrier(shard: Shard) -> None:
    """Wait for every rank."""
    if shard.world > 1:
        dist.barrier()


def stop(shard: Shard) -> None:
    """Wait for every rank, then leave the process group."""
    if shard.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def from_main(shard: Shard, value: Any) -> Any:
    """Rank 0's ``value``, on every rank."""
    if shard.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(shard: Shard, value: Any) -> list[Any] | None:
    """Every rank's ``value`` on rank 0 (in rank order); None on the other ranks."""
    if shard.world == 1:
        return [value]
    out = [None] * shard.world if shard.main else None
    dist.gather_object(value, out, dst=0)
    return out


class PartialFile:
    """Finished batches of one rank, one JSON line each, after a header line with the run's settings.

    A line is written and flushed as a whole once its batch is done; a line cut short by an
    interruption is dropped when the file is read back. Floats survive JSON exactly.
    """

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, json.loads(json.dumps(settings))
        self._file = None
        self.loaded = 0  # batches read back by `load`

    def load(self) -> dict[int, dict[str, Any]]:
        """The batches already finished by a run with the same settings (the file is trimmed to them);
        a file from other settings is discarded."""
        if not self.path.is_file():
            return {}
        lines = self.path.read_text().split("\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if header != {"settings": self.settings}:
            print(f"ignoring {self.path.name}: it belongs to a run with other settings", file=sys.stderr)
            self.path.unlink()
            return {}
        done, kept = {}, [lines[0]]
        for line in lines[1:]:
            try:
                batch = json.loads(line)
            except ValueError:
                continue  # cut short by the interruption
            done[batch["batch"]] = batch
            kept.append(line)
        atomic_write(self.path, lambda f: f.write(("\n".join(kept) + "\n").encode()))
        self.loaded = len(done)
        return done

    def append(self, batch: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.is_file()
            self._file = open(self.path, "a")
            if new:
                self._file.write(json.dumps({"settings": self.settings}) + "\n")
        self._file.write(json.dumps(batch) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def merge(per_rank: Iterable[dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The batches of every rank, in batch order."""
    batches = {b: batch for done in per_rank for b, batch in done.items()}
    return [batches[b] for b in sorted(batches)]

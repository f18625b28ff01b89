"""Evaluation across processes with PyTorch's own launcher: ``torchrun --nproc_per_node N -m harness.run ...``
(and across nodes with torchrun's usual rendezvous flags). Without torchrun nothing changes.

* The images are sharded deterministically: rank r of N takes images r, r+N, r+2N, ... of the scan, the same
  on every run, so a resume gives each rank the same images.
* Each rank appends its records, as they are produced, to its own ``records.rank<r>.jsonl`` under its own
  lock; rank 0 holds the folder's lock for the whole run, merges the rank files into records.jsonl at the end
  and writes the summary, tables and page — which are then byte-equal to a single-process run's (records are
  aggregated in a fixed order, `harness.results.select`).
* A rank that dies loses only the image it was working on: its finished records stay in its rank file, and
  the next run (any number of processes, or none) merges them before deciding what is left to do.
* On CUDA each process uses the GPU of its LOCAL_RANK (NCCL); on the CPU the gloo backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from harness.records import RECORDS_FILE, RecordStore, read_records

RANK_FILE = "records.rank{rank}.jsonl"


def rank_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not launched by torchrun."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun set up; returns this rank's device (cuda:LOCAL_RANK on CUDA)."""
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def finish(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def rank_store(out: Path, rank: int) -> RecordStore:
    return RecordStore(out, RANK_FILE.format(rank=rank), lock_name=f".lock.rank{rank}")


def merge_rank_files(store: RecordStore, out: Path) -> int:
    """Move every rank file's records into `store` (the folder's records.jsonl, locked by the caller); returns
    how many were merged. A rank file is removed once its records are safely appended."""
    n = 0
    for path in sorted(Path(out).glob(RANK_FILE.format(rank="*"))):
        records, _ = read_records(path)
        for rec in records:
            store.append(rec)
            n += 1
        store.flush()
        path.unlink()
        lock = Path(out) / f".lock.rank{path.name.split('rank')[1].split('.')[0]}"
        lock.unlink(missing_ok=True)
    return n


def main_records(out: Path) -> list[dict]:
    """The folder's merged records, read without its lock (ranks other than 0 only read them)."""
    return read_records(Path(out) / RECORDS_FILE)[0]

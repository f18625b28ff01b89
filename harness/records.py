"""Per-image result records: an append-only JSONL file, a lock on the output folder, crash repair.

Each finished image is one JSON line, written and flushed as soon as it is scored, so a killed run loses
at most the image in flight. On open, a half-written last line (a kill in the middle of a write) is cut
off and reported. One run at a time may write to an output folder: a second gets `RunLockedError`.

Record fields (schema 1): schema, method, mode, weights, type, file, status ("ok" | "failed"), psnr,
ssim, predicted (type name or null), error (null when ok), notes, pair_sha, convention, seconds.
Everything except `seconds` is deterministic for a given command, machine and data.
"""

from __future__ import annotations

import fcntl
import json
import os
import traceback
from collections.abc import Iterable
from pathlib import Path

from harness.fileio import write_text_atomic

SCHEMA_VERSION = 1
RECORDS_FILE = "records.jsonl"
TIMING_FIELDS = frozenset({"seconds"})


class RunLockedError(RuntimeError):
    pass


def error_text(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """The `error` of a failed record: one line naming the input file, the exception and where it was raised."""
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{f'{path}: ' if path is not None else ''}{type(exc).__name__}: {exc}{where}"


def record_key(rec: dict) -> tuple[str, str, str, str]:
    return (rec["method"], rec["mode"], rec["type"], rec["file"])


def dumps(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True, allow_nan=True, separators=(",", ":"))


def record_problem(rec: object) -> str | None:
    """Why `rec` is not a usable record (a hand-edited or foreign line), or None."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for k in ("method", "mode", "type", "file"):
        if not isinstance(rec.get(k), str) or not rec.get(k):
            return f"field {k!r} is missing or not a string"
    if rec.get("status") not in ("ok", "failed"):
        return f"field 'status' is {rec.get('status')!r}, expected 'ok' or 'failed'"
    if rec["status"] == "ok" and rec.get("mode") != "classify":
        for k in ("psnr", "ssim"):
            v = rec.get(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return f"field {k!r} is {type(v).__name__}, expected a number"
    if not isinstance(rec.get("notes", []), list):
        return "field 'notes' is not a list"
    return None


def read_records(path: Path, repair: bool = False) -> tuple[list[dict], list[str]]:
    """Read a JSONL records file; returns (records, warnings).

    A line that is not a complete JSON record (a kill in the middle of a write leaves a half line at the
    end) is dropped with a warning; with `repair` the file is rewritten without it (atomically).
    """
    path = Path(path)
    if not path.exists():
        return [], []
    data = path.read_bytes()
    warnings: list[str] = []
    records: list[dict] = []
    pos = 0
    for line in data.splitlines(keepends=True):
        try:
            rec = json.loads(line) if line.endswith(b"\n") else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            rec = None
        problem = record_problem(rec) if rec is not None else None
        if rec is not None and problem is None:
            records.append(rec)
        elif rec is not None and line.strip():
            warnings.append(f"{path}: ignored the record at byte {pos}: {problem}; that image will be redone")
        elif line.strip():
            where = "half-written last record" if pos + len(line) == len(data) else f"corrupt record at byte {pos}"
            warnings.append(f"{path}: dropped a {where} ({len(line)} bytes); that image will be redone")
        pos += len(line)
    if repair and warnings:
        write_text_atomic(path, "".join(dumps(r) + "\n" for r in records))
    return records, warnings


STALE_FILE = "records.stale.jsonl"


class RecordStore:
    """The records of one output folder, opened for appending under an exclusive lock held until `__exit__`.

    Interface: `append(rec)`, iteration over the current records, `get(key)`, `move_aside(records)` (to
    records.stale.jsonl, e.g. when the weights or the data changed) and `select(selection)`
    (`harness.results.select`). Nothing outside this class touches the file or its handle.
    """

    def __init__(self, out_dir: Path, filename: str = RECORDS_FILE, lock_name: str = ".lock"):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / filename
        self.lock_name = lock_name
        self.stale_path = self.out_dir / STALE_FILE
        self._lock_file = None
        self._fh = None
        self.records: dict[tuple, dict] = {}
        self.warnings: list[str] = []

    def __enter__(self) -> RecordStore:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.out_dir / self.lock_name
        self._lock_file = open(lock_path, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "unknown"
            self._lock_file.close()
            raise RunLockedError(
                f"another run (pid {holder}) is writing to {self.out_dir}; wait for it to finish or use "
                "another --out"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        recs, self.warnings = read_records(self.path, repair=True)
        for r in recs:
            self.records[record_key(r)] = r
        self._fh = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, rec: dict) -> None:
        rec = {"schema": SCHEMA_VERSION, **rec}
        self._fh.write(dumps(rec) + "\n")
        self._fh.flush()
        self.records[record_key(rec)] = rec

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def __iter__(self):
        return iter(list(self.records.values()))

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: tuple[str, str, str, str]) -> dict | None:
        return self.records.get(key)

    def select(self, selection=None) -> list[dict]:
        from harness.results import select

        return select(self.records.values(), selection)

    def move_aside(self, stale: Iterable[dict]) -> None:
        """Move records out of the folder's results into records.stale.jsonl (kept for reference, never read)."""
        stale_keys = {record_key(r) for r in stale}
        moved = [r for k, r in self.records.items() if k in stale_keys]
        keep = [r for k, r in self.records.items() if k not in stale_keys]
        with open(self.stale_path, "a", encoding="utf-8") as f:
            f.writelines(dumps(r) + "\n" for r in moved)
        write_text_atomic(self.path, "".join(dumps(r) + "\n" for r in keep))
        self._fh.close()  # it appended to the replaced file: reopen on the new one
        self._fh = open(self.path, "a", encoding="utf-8")
        self.records = {record_key(r): r for r in keep}

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()


def latest(records: Iterable[dict]) -> list[dict]:
    """The last record for each key (a re-done image replaces its earlier record), in first-seen order."""
    out: dict[tuple, dict] = {}
    for r in records:
        out[record_key(r)] = r
    return list(out.values())

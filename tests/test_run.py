"""`python -m harness.run` end to end on tiny layouts: records, resume, failures, lock, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import methods_for_tests  # noqa: F401 - registers test-* methods
import numpy as np
import pytest
from conftest import TESTS, make_layout
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness.degradations import TYPES
from harness.records import read_records
from harness.run import main


def _run(data: Path, out: Path, *extra: str) -> int:
    return main(["--data", str(data), "--out", str(out), "--quiet", "--workers", "1", *extra])


def _stable(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_records(path)[0]]


def test_identity_run_matches_skimage(layout, tmp_path):
    out = tmp_path / "out"
    assert _run(layout, out, "--methods", "identity") == 0
    recs = read_records(out / "records.jsonl")[0]
    assert len(recs) == 22 and all(r["status"] == "ok" for r in recs)
    from PIL import Image

    r = next(r for r in recs if r["type"] == "low_snow" and r["file"] == "im1.png")
    gt = np.asarray(Image.open(layout / "clear" / "im1.png")) / 255.0
    x = np.asarray(Image.open(layout / "low_snow" / "im1.png")) / 255.0
    assert r["psnr"] == pytest.approx(peak_signal_noise_ratio(gt, x, data_range=1.0), abs=1e-9)
    assert r["ssim"] == pytest.approx(structural_similarity(gt, x, channel_axis=-1, data_range=1.0), abs=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["fingerprint"] and summary["metric"]["convention"] == "cdd11"
    assert summary["environment"]["packages"]["torch"]
    table = (out / "table1.md").read_text()
    assert "I Haze" in table and "Avg" in table and "Input" in table
    assert (out / "table1.tex").read_text().count("\\\\") == 13  # header + 11 types + Avg


def test_resume_recomputes_nothing_and_equals_uninterrupted(layout, tmp_path):
    full = tmp_path / "full"
    assert _run(layout, full, "--methods", "identity,test-slow", "--mode", "text") == 0
    part = tmp_path / "part"
    assert _run(layout, part, "--methods", "identity,test-slow", "--mode", "text", "--limit", "1") == 0
    before = {(r["method"], r["type"], r["file"]): r for r in read_records(part / "records.jsonl")[0]}
    assert _run(layout, part, "--methods", "identity,test-slow", "--mode", "text") == 0
    after = read_records(part / "records.jsonl")[0]
    assert len(after) == 44
    for r in after:  # the first-run records are kept as they were, seconds included
        if (r["method"], r["type"], r["file"]) in before:
            assert r == before[(r["method"], r["type"], r["file"])]
    assert (part / "table1.md").read_text() == (full / "table1.md").read_text()


def test_half_written_last_record_is_repaired(layout, tmp_path):
    out = tmp_path / "out"
    _run(layout, out, "--methods", "identity")
    path = out / "records.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    ref = (out / "table1.md").read_text()
    assert _run(layout, out, "--methods", "identity") == 0
    recs, warnings = read_records(path)
    assert len(recs) == 22 and not warnings
    assert (out / "table1.md").read_text() == ref


def test_failing_method_is_recorded_and_run_continues(layout, tmp_path):
    out = tmp_path / "out"
    rc = _run(layout, out, "--methods", "test-faulty,identity", "--mode", "text")
    assert rc == 1
    recs = {(r["method"], r["type"], r["file"]): r for r in read_records(out / "records.jsonl")[0]}
    assert "deliberate failure" in recs[("test-faulty", "haze", "im0.png")]["error"]
    assert "NaN/Inf" in recs[("test-faulty", "rain", "im0.png")]["error"]
    assert "output shape" in recs[("test-faulty", "snow", "im1.png")]["error"]
    assert recs[("test-faulty", "low", "im0.png")]["status"] == "ok"
    assert all(recs[("identity", t, "im0.png")]["status"] == "ok" for t in TYPES)
    assert "Failed images" in (out / "table1.md").read_text()
    assert json.loads((out / "summary.json").read_text())["failed_images"] == 6


def test_bad_image_is_a_failed_record_not_a_crash(layout, tmp_path):
    (layout / "haze" / "im0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    assert _run(layout, out, "--methods", "identity") == 1
    rec = next(r for r in read_records(out / "records.jsonl")[0] if r["type"] == "haze" and r["file"] == "im0.png")
    assert rec["status"] == "failed" and "haze/im0.png" in rec["error"]


def test_structural_problem_stops_before_model_work(tmp_path, capsys):
    (tmp_path / "d" / "haze").mkdir(parents=True)
    assert _run(tmp_path / "d", tmp_path / "out", "--methods", "identity") == 2
    assert "no 'clear/' folder" in capsys.readouterr().err
    assert not (tmp_path / "out" / "records.jsonl").exists()


def test_unknown_method_suggests(layout, tmp_path, capsys):
    assert _run(layout, tmp_path / "o", "--methods", "identty") == 2
    assert "Did you mean 'identity'" in capsys.readouterr().err


def test_list_methods(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("identity", "onerestore", "promptir", "airnet", "vlur"):
        assert name in out


WEIGHTED_ARGS = ("--methods", "identity,test-weighted", "--mode", "text", "--limit", "1")


def _weighted_run(layout: Path, tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A first text-mode run of identity + test-weighted (weights file holding 0.9): (weights file, out)."""
    weights = tmp_path / "w.txt"
    weights.write_text("0.9")
    monkeypatch.setenv("TEST_WEIGHTS_FILE", str(weights))
    out = tmp_path / "out"
    assert _run(layout, out, *WEIGHTED_ARGS) == 0
    return weights, out


def test_changed_weights_are_evaluated_again_on_resume(layout, tmp_path, monkeypatch, capsys):
    weights, out = _weighted_run(layout, tmp_path, monkeypatch)
    args = WEIGHTED_ARGS
    first = {(r["method"], r["type"]): r for r in read_records(out / "records.jsonl")[0]}
    assert _run(layout, out, *args) == 0  # same weights: nothing is recomputed
    assert {(r["method"], r["type"]): r for r in read_records(out / "records.jsonl")[0]} == first
    capsys.readouterr()

    weights.write_text("0.8")
    assert _run(layout, out, *args) == 0
    assert "the weights of test-weighted changed" in capsys.readouterr().err
    after = {(r["method"], r["type"]): r for r in read_records(out / "records.jsonl")[0]}
    assert len(after) == len(first)
    for key, r in after.items():
        if key[0] == "identity":
            assert r == first[key]  # other methods are untouched
        else:
            assert r["weights_sha"] != first[key]["weights_sha"] and r["psnr"] != first[key]["psnr"]
    stale = read_records(out / "records.stale.jsonl")[0]
    assert {(r["method"], r["type"]) for r in stale} == {k for k in first if k[0] == "test-weighted"}


def test_records_without_a_weights_fingerprint_are_evaluated_again(layout, tmp_path, monkeypatch, capsys):
    _, out = _weighted_run(layout, tmp_path, monkeypatch)
    args = WEIGHTED_ARGS
    records = read_records(out / "records.jsonl")[0]
    for r in records:  # as written by a version that did not fingerprint weights
        r.pop("weights_sha", None)
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    assert _run(layout, out, *args) == 0
    assert "(not recorded -> " in capsys.readouterr().err
    after = read_records(out / "records.jsonl")[0]
    assert all(r.get("weights_sha") for r in after if r["method"] == "test-weighted")
    assert all("weights_sha" not in r for r in after if r["method"] == "identity")  # no weights: kept as is
    stale = read_records(out / "records.stale.jsonl")[0]
    assert {r["method"] for r in stale} == {"test-weighted"}


def test_two_runs_are_byte_identical_apart_from_timing(layout, tmp_path):
    for o in ("a", "b"):
        assert _run(layout, tmp_path / o, "--methods", "identity,test-slow") == 0
    assert _stable(tmp_path / "a" / "records.jsonl") == _stable(tmp_path / "b" / "records.jsonl")


def test_oom_falls_back_to_tiles(tmp_path):
    data = make_layout(tmp_path / "d", n=1, size=(300, 280), types=("haze",))
    out = tmp_path / "o"
    assert _run(data, out, "--methods", "test-oom") == 0
    rec = read_records(out / "records.jsonl")[0][0]
    assert rec["status"] == "ok" and any("tiles" in n for n in rec["notes"])


def test_data_change_between_runs(layout, tmp_path, capsys):
    out = tmp_path / "o"
    assert _run(layout, out, "--methods", "identity") == 0
    (layout / "haze" / "im1.png").unlink()
    from PIL import Image

    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(layout / "clear" / "im5.png")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(layout / "haze" / "im5.png")
    capsys.readouterr()
    assert _run(layout, out, "--methods", "identity") == 0
    err = capsys.readouterr()
    text = err.out + err.err
    assert "changed since the last run" in text and "no longer in" in text
    recs = read_records(out / "records.jsonl")[0]
    assert ("haze", "im5.png") in {(r["type"], r["file"]) for r in recs}
    assert ("haze", "im1.png") not in {(r["type"], r["file"]) for r in recs}
    assert json.loads((out / "summary.json").read_text())["data"]["counts"]["haze"] == 2


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.run", "--data", str(data), "--out", str(out), "--quiet",
            "--import", "methods_for_tests", "--methods", "test-slow", "--workers", "1", *extra]


def _env(**kw) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(kw)
    return env


def _wait_records(path: Path, n: int, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(path.read_bytes().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} records")


def test_kill_9_then_rerun_finishes_without_recomputing(tmp_path):
    data = make_layout(tmp_path / "d", n=2, types=TYPES[:3])
    out = tmp_path / "o"
    proc = subprocess.Popen(_cli(data, out), env=_env(TEST_SLOW_SECONDS="0.3"))
    _wait_records(out / "records.jsonl", 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _stable(out / "records.jsonl")
    assert 2 <= len(done) < 6
    assert subprocess.run(_cli(data, out), env=_env(TEST_SLOW_SECONDS="0")).returncode == 0
    final = _stable(out / "records.jsonl")
    assert final[: len(done)] == done and len(final) == 6
    ref = tmp_path / "ref"
    assert subprocess.run(_cli(data, ref), env=_env(TEST_SLOW_SECONDS="0")).returncode == 0
    assert sorted(map(json.dumps, final)) == sorted(map(json.dumps, _stable(ref / "records.jsonl")))
    assert (out / "table1.md").read_text() == (ref / "table1.md").read_text()


def test_ctrl_c_saves_and_second_writer_is_refused(tmp_path):
    data = make_layout(tmp_path / "d", n=2, types=TYPES[:3])
    out = tmp_path / "o"
    proc = subprocess.Popen(_cli(data, out), env=_env(TEST_SLOW_SECONDS="10"), stderr=subprocess.PIPE, text=True)
    _wait_records(out / "records.jsonl", 1)
    second = subprocess.run(_cli(data, out), env=_env(TEST_SLOW_SECONDS="0"), capture_output=True, text=True)
    assert second.returncode == 2 and "another run" in second.stderr
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err
    assert len(read_records(out / "records.jsonl")[0]) >= 1


def test_method_that_cannot_be_built_is_reported_not_a_crash(layout, tmp_path, capsys):
    rc = _run(layout, tmp_path / "o", "--methods", "promptir", "--weights-dir", str(tmp_path / "nothing-here"))
    assert rc == 2  # nothing ran (README: exit 2), and the log does not also claim tables were written
    text = capsys.readouterr().err
    assert "cannot build promptir" in text and "model.ckpt" in text and "no tables written" in text
    assert "wrote" not in text
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "promptir/auto" in summary["methods_failed"]

"""Hostile input and faults (issue "no finished score lost, no traceback, no wrong number"): each kind of bad
data, bad weights, bad arguments and fault gets a message naming the file and what is wrong, a failed
record instead of a dead run, and no lost result. Small files, seconds each."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_layout
from PIL import Image

import harness
from harness.data.cdd11 import ImageReadError, read_rgb8, scan
from harness.records import read_records
from harness.run import main as run_main
from harness.weights import WeightsError, read_checkpoint

TESTS = Path(__file__).parent


def _eval(data: Path, out: Path, **kw):
    return harness.evaluate(**{"data": data, "out": out, "progress": False, "workers": 0, **kw}, log=lambda m: None)


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A 100-byte PNG whose header declares width×height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------------------- images


def test_decompression_bomb_is_one_failed_record_and_the_limit_can_be_raised(tmp_path):
    data = make_layout(tmp_path / "d", n=2, types=("haze",))
    _png_declaring(data / "haze" / "im1.png", 30000, 30000)
    res = _eval(data, tmp_path / "o", methods=["identity"])
    by = {r["file"]: r for r in res.records}
    assert by["im0.png"]["status"] == "ok"
    assert by["im1.png"]["status"] == "failed" and "900,000,000 pixels" in by["im1.png"]["error"]
    assert "--max-pixels" in by["im1.png"]["error"]
    again = _eval(data, tmp_path / "o", methods=["identity"], retry_failed=True)  # a resume does not crash either
    assert again.exit_code == 1
    with pytest.raises(ImageReadError, match="above the limit of 100"):
        read_rgb8(data / "haze" / "im0.png", max_pixels=100)


def test_int32_images_are_converted_by_their_range_or_refused(tmp_path):
    ok = np.arange(24 * 32, dtype=np.int32).reshape(24, 32) * 80  # 0..61360: a 16-bit range
    Image.fromarray(ok, mode="I").save(tmp_path / "ok.tif")
    a, notes = read_rgb8(tmp_path / "ok.tif")
    assert np.array_equal(a[..., 0], (ok >> 8).astype(np.uint8)) and "16-bit" in notes[0]
    wide = ok * 1000  # up to 6.1e7: would wrap if narrowed as 16-bit
    Image.fromarray(wide, mode="I").save(tmp_path / "wide.tif")
    with pytest.raises(ImageReadError, match=r"32-bit integer image with values 0\.\.61360000"):
        read_rgb8(tmp_path / "wide.tif")


def test_float_images_in_unit_range_only(tmp_path):
    f = np.linspace(0, 1, 24 * 32, dtype=np.float32).reshape(24, 32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    a, notes = read_rgb8(tmp_path / "f.tif")
    assert np.array_equal(a[..., 1], np.round(f.astype(np.float64) * 255).astype(np.uint8)) and "round" in notes[0]
    Image.fromarray(f * 255, mode="F").save(tmp_path / "g.tif")
    with pytest.raises(ImageReadError, match=r"outside \[0, 1\]"):
        read_rgb8(tmp_path / "g.tif")


def test_exif_rotation_is_applied_to_both_images_and_recorded(tmp_path):
    data = make_layout(tmp_path / "d", n=1, size=(24, 32), types=("haze",))
    for folder in ("clear", "haze"):
        img = Image.open(data / folder / "im0.png")
        rotated = img.transpose(Image.ROTATE_90)  # stored rotated, EXIF says "rotate back"
        exif = Image.Exif()
        exif[0x0112] = 6
        rotated.save(data / folder / "im0.jpg", quality=100, exif=exif.tobytes())
        (data / folder / "im0.png").unlink()
    a, notes = read_rgb8(data / "haze" / "im0.jpg")
    assert a.shape == (24, 32, 3) and notes == ["EXIF orientation 6 applied"]
    rec = _eval(data, tmp_path / "o", methods=["identity"]).records[0]
    assert rec["status"] == "ok"
    assert "degraded: EXIF orientation 6 applied" in rec["notes"]
    assert "clear: EXIF orientation 6 applied" in rec["notes"]


def test_non_utf8_file_name_is_skipped_with_a_note(tmp_path):
    data = make_layout(tmp_path / "d", n=1, types=("haze",))
    raw = os.fsencode(data / "haze") + b"/bad\xff.png"
    with open(raw, "wb") as f:
        f.write((data / "haze" / "im0.png").read_bytes())
    s = scan(data)
    assert [p.name for p in s.pairs] == ["im0.png"] and len(s.bad_names) == 1
    assert "not valid UTF-8" in s.summary()
    assert _eval(data, tmp_path / "o", methods=["identity"]).exit_code == 0


# ----------------------------------------------------------------------------------------- records


def test_hand_edited_records_are_ignored_with_a_warning_and_redone(tmp_path):
    data = make_layout(tmp_path / "d", n=2, types=("haze",))
    out = tmp_path / "o"
    _eval(data, out, methods=["identity"])
    lines = (out / "records.jsonl").read_text().splitlines()
    bad = json.loads(lines[0])
    bad["psnr"] = "thirty"
    missing = json.loads(lines[1])
    del missing["file"]
    (out / "records.jsonl").write_text(json.dumps(bad) + "\n" + json.dumps(missing) + "\n")
    recs, warnings = read_records(out / "records.jsonl")
    assert recs == [] and len(warnings) == 2
    assert "'psnr' is str" in warnings[0] and "'file' is missing" in warnings[1]
    notes: list[str] = []
    res = harness.evaluate(data=data, out=out, methods=["identity"], progress=False, log=notes.append)
    assert res.exit_code == 0 and len(res.records) == 2 and any("ignored the record" in n for n in notes)


# ----------------------------------------------------------------------------------------- weights


def test_weights_messages_say_what_is_wrong(tmp_path):
    with pytest.raises(WeightsError, match="is a folder"):
        read_checkpoint(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"w": torch.zeros(1), "obj": Path("x")}, tmp_path / "objects.pt")
    with pytest.raises(WeightsError) as e:
        read_checkpoint(tmp_path / "objects.pt")
    assert "never runs code" in str(e.value) and "weights_only=False" not in str(e.value)


def test_malformed_checkpoint_fails_one_method_and_the_others_run(tmp_path):
    data = make_layout(tmp_path / "d", n=1, types=("haze",))
    torch.save({"config": {"channels": 16}, "state_dict": [1, 2, 3]}, tmp_path / "bad.pt")
    res = _eval(data, tmp_path / "o", methods=["identity", "onerestore"], modes="text", weights=tmp_path / "bad.pt")
    assert res.exit_code == 1
    assert any(r["method"] == "identity" and r["status"] == "ok" for r in res.records)
    (err,) = res.summary["methods_failed"].values()
    assert "bad.pt" in err


# ----------------------------------------------------------------------------------------- signals


def _env(**kw) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(kw)
    return env


def test_sigterm_is_handled_like_ctrl_c_and_the_resume_completes(tmp_path):
    data = make_layout(tmp_path / "d", n=2, types=("haze", "rain"))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "harness.run", "--data", str(data), "--out", str(out), "--quiet", "--import",
           "methods_for_tests", "--methods", "test-slow", "--workers", "1"]
    proc = subprocess.Popen(cmd, env=_env(TEST_SLOW_SECONDS="10"), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "records.jsonl").is_file() or \
            (out / "records.jsonl").read_text().count("\n") < 1:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "SIGTERM" in err and "run the same command again" in err
    summary = json.loads((out / "summary.json").read_text())  # what finished is summarised
    assert summary["interrupted"] is True and summary["results"]
    done = len(read_records(out / "records.jsonl")[0])
    assert 1 <= done < 4
    assert subprocess.run(cmd, env=_env(TEST_SLOW_SECONDS="0")).returncode == 0
    assert len(read_records(out / "records.jsonl")[0]) == 4


def test_bad_cli_arguments_are_refused(tmp_path, capsys):
    for argv in (["--device", "tpu"], ["--threads", "-1"], ["--limit", "0"], ["--workers", "-1"],
                 ["--max-pixels", "0"]):
        with pytest.raises(SystemExit) as e:
            run_main(["--out", str(tmp_path / "o"), *argv])
        assert e.value.code == 2
        assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--iters", "-1"], ["--warmup", "-2"], ["--min-seconds", "-1"],
                                  ["--peak-tflops", "-3"], ["--batch", "0"], ["--device", "tpu"],
                                  ["--threads", "-1"], ["--max-seconds", "nan"]])
def test_timing_arguments_are_validated(argv, capsys):
    from harness.timing.cli import main as timing_main

    with pytest.raises(SystemExit) as e:
        timing_main(["--methods", "identity", *argv])
    assert e.value.code == 2 and "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["onerestore", "promptir", "mirnetv2", "moce-ir"])
def test_a_state_dict_of_another_architecture_is_named_as_such(method, tmp_path):
    from harness.registry import MethodOptions, create_restorer

    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError) as e:
        create_restorer(method, MethodOptions(weights=tmp_path / "other.pt", mode="text"))
    assert "does not match" in str(e.value) and "other.pt" in str(e.value)
    assert "not found" not in str(e.value)


def test_a_full_disk_keeps_every_written_record_and_the_rerun_completes(tmp_path, monkeypatch, capsys):
    import errno

    from harness.records import RecordStore

    data = make_layout(tmp_path / "d", n=3, types=("haze", "rain"))
    out = tmp_path / "o"
    real_append, calls = RecordStore.append, []

    def append(self, rec):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real_append(self, rec)

    monkeypatch.setattr(RecordStore, "append", append)
    rc = run_main(["--data", str(data), "--out", str(out), "--quiet", "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left on device" in err and "records.jsonl" in err and "Traceback" not in err
    assert len(read_records(out / "records.jsonl")[0]) == 2  # what was written before the fault stays
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.part"))
    monkeypatch.setattr(RecordStore, "append", real_append)
    assert run_main(["--data", str(data), "--out", str(out), "--quiet", "--workers", "0"]) == 0
    assert len(read_records(out / "records.jsonl")[0]) == 6


def test_an_unreadable_folder_is_a_message(tmp_path, monkeypatch, capsys):
    data = make_layout(tmp_path / "d", n=1, types=("haze",))
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self.name == "haze":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert run_main(["--data", str(data), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot list" in err and "haze" in err and "Permission denied" in err and "Traceback" not in err

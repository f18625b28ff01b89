"""Evaluation at scale: --batch equals batch 1, autocast dtype and channels-last are recorded (and a dtype change
recomputes), and `torchrun --nproc_per_node 2` (gloo on the CPU) gives byte-equal tables to one process, with
a rank's finished records kept when the run is cut."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_layout

import harness
from harness.records import read_records

TESTS = Path(__file__).parent
TYPES3 = ("haze", "rain", "low_snow")


def _eval(data, out, **kw):
    return harness.evaluate(**{"data": data, "out": out, "progress": False, "workers": 0, "modes": "text", **kw},
                            log=lambda m: None)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("scale") / "d", n=3, size=(32, 40), types=TYPES3)


def test_batch_equals_batch_one(tmp_path):
    # 96x128 images: on the fixture's 32x40 ones a single 8-bit level that float rounding flips already moves a
    # PSNR by ~3e-5 dB; at 1080x720 one flip is ~1e-7 dB, so the 1e-5 dB bound is about batching, not rounding
    data = make_layout(tmp_path / "d", n=3, size=(96, 128), types=TYPES3)
    one = _eval(data, tmp_path / "b1", methods=["onerestore"])
    three = _eval(data, tmp_path / "b3", methods=["onerestore"], batch=3)
    a = {(r["type"], r["file"]): r["psnr"] for r in one.records}
    b = {(r["type"], r["file"]): r["psnr"] for r in three.records}
    assert a.keys() == b.keys() and max(abs(a[k] - b[k]) for k in a) < 1e-5
    assert all(r["compute"]["batch"] == 3 for r in three.records)


def test_dtype_and_channels_last_are_recorded_and_a_dtype_change_recomputes(data, tmp_path):
    out = tmp_path / "o"
    cl = _eval(data, out, methods=["onerestore"], channels_last=True)
    ref = _eval(data, tmp_path / "ref", methods=["onerestore"])
    assert max(abs(x["psnr"] - y["psnr"]) for x, y in zip(cl.records, ref.records)) < 1e-5
    assert cl.summary["compute"]["channels_last"] is True
    assert "channels-last" in " ".join(cl.summary["compute"]["notes"]["onerestore/text"])
    bf = _eval(data, out, methods=["onerestore"], dtype="bf16")
    assert {r["compute"]["dtype"] for r in bf.records} == {"bf16"}
    assert bf.summary["dtype"] == "bfloat16 autocast"
    assert len(read_records(out / "records.stale.jsonl")[0]) == 9  # the fp32 records were moved aside
    assert max(abs(x["psnr"] - y["psnr"]) for x, y in zip(bf.records, ref.records)) < 1.0  # close, not equal


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1")
    return env


def _cli(data: Path, out: Path) -> list[str]:
    return ["-m", "harness.run", "--data", str(data), "--out", str(out), "--methods", "identity,onerestore",
            "--mode", "auto,text", "--quiet", "--workers", "0", "--threads", "1", "--no-report"]


def test_torchrun_two_processes_equal_one(data, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    single = subprocess.run([sys.executable, *_cli(data, tmp_path / "one")], env=_env(), capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    two = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", *_cli(data, tmp_path / "two")],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    for name in ("table1.md", "table1.tex", "results.csv", "confusion_onerestore.md"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name

    def stable(out):
        return sorted(json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True)
                      for r in read_records(out / "records.jsonl")[0])

    assert stable(tmp_path / "one") == stable(tmp_path / "two")
    assert not list((tmp_path / "two").glob("records.rank*.jsonl"))  # merged into records.jsonl
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2


def test_a_dead_ranks_finished_records_are_merged_on_resume(data, tmp_path):
    out = tmp_path / "o"
    full = _eval(data, tmp_path / "ref", methods=["identity"])
    # what a rank that died after two images leaves behind: its own records file, never merged
    out.mkdir()
    recs = read_records(tmp_path / "ref" / "records.jsonl")[0][:2]
    (out / "records.rank1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    notes: list[str] = []
    again = harness.evaluate(data=data, out=out, methods=["identity"], modes="text", progress=False, workers=0,
                             log=notes.append)
    assert any("merged 2 record(s)" in n for n in notes)
    assert not (out / "records.rank1.jsonl").exists()
    done = {(r["type"], r["file"]): r["seconds"] for r in read_records(out / "records.jsonl")[0]}
    assert all(done[(r["type"], r["file"])] == r["seconds"] for r in recs)  # kept, not recomputed
    assert [r["psnr"] for r in again.records] == [r["psnr"] for r in full.records]


def test_overlapped_scoring_gives_the_same_records(data):
    from harness.data.cdd11 import iter_loaded, scan
    from harness.evaluation import EvalConfig, scored
    from harness.producers import build_method_runs

    cfg = EvalConfig(methods=("onerestore",), modes=("text",), batch=2).validate()
    (run,), _ = build_method_runs(cfg, __import__("torch").device("cpu"), lambda m: None)
    pairs = scan(data).pairs

    def records(overlap: bool) -> list[tuple]:
        return [(lp.pair.key, rec["psnr"], rec["ssim"], rec["status"])
                for lp, rec, _ in scored(run, iter_loaded(pairs, workers=0), "cdd11", overlap=overlap)]

    plain, overlapped = records(False), records(True)
    assert plain == overlapped and len(plain) == 9
    assert [k for k, *_ in plain] == [p.key for p in pairs]  # in order


def test_compile_wraps_the_network_and_keeps_the_warm_up_out_of_the_records(data, tmp_path, monkeypatch):
    import torch

    compiled = []

    def fake_compile(model, **kw):  # torch.compile's contract: a callable module; the real one needs a compiler
        compiled.append(type(model).__name__)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    res = _eval(data, tmp_path / "o", methods=["onerestore"], compile=True)
    assert compiled == ["OneRestore"]
    assert res.summary["compute"]["compile"] is True
    assert "onerestore/text" in res.summary["compute"]["compile_warmup_seconds"]
    assert all(r["compute"]["compile"] for r in res.records) and len(res.records) == 9

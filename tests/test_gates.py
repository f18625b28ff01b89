"""PSNR/SSIM regression gate (harness.gates) on tiny layouts with a test method steered by env vars."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest
from conftest import make_layout

from harness import gates, registry
from harness.registry import register

TYPES3 = ("haze", "low", "rain")


class _Scaled:
    """Output = input × GATE_TEST_SCALE (default 0.9); raises on the type named by GATE_TEST_FAIL (text mode)."""

    weights_label = "none"

    def to(self, device):
        return self

    def restore(self, images, degradation=None):
        if degradation and degradation[0] == os.environ.get("GATE_TEST_FAIL"):
            raise RuntimeError("deliberate gate-test failure")
        return (images * float(os.environ.get("GATE_TEST_SCALE", "0.9"))).clamp(0, 1)


@register("test-gate-scaled", modes=("text",), description="scales its input (gate tests)")
def _scaled(opts):
    if os.environ.get("GATE_TEST_BROKEN"):
        raise RuntimeError("weights file gone")
    return _Scaled()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("GATE_TEST_SCALE", raising=False)
    monkeypatch.delenv("GATE_TEST_FAIL", raising=False)
    monkeypatch.delenv("GATE_TEST_BROKEN", raising=False)
    data = make_layout(tmp_path / "data", n=2, types=TYPES3)
    return data, tmp_path / "reports" / "baseline.json"


def _update(data: Path, baseline: Path, *extra: str) -> int:
    return gates.main(["--baseline", str(baseline), "--update-baseline", "--data", str(data), "--methods",
                       "identity,test-gate-scaled", "--modes", "text", "--types", ",".join(TYPES3), "--limit", "2",
                       *extra])


def _gate(baseline: Path, *extra: str) -> int:
    return gates.main(["--baseline", str(baseline), *extra])


def summary_torch() -> str:
    from harness.provenance import package_versions

    return package_versions()["torch"]


def _row(out: str, method: str, t: str) -> list[str]:
    line = next(x for x in out.splitlines() if x.startswith(f"| {method} ") and f"| {t} " in x)
    return [c.strip() for c in line.strip("|").split("|")]


def test_update_writes_a_stable_baseline_and_the_gate_passes_on_it(env, capsys):
    data, baseline = env
    assert _update(data, baseline) == 0
    text = baseline.read_text()
    base = json.loads(text)
    assert text == gates.dumps_baseline(base)  # sorted keys, one layout
    assert list(base) == sorted(base)
    assert base["slice"] == {"data": str(data), "methods": ["identity", "test-gate-scaled"], "modes": ["text"],
                             "types": ["low", "haze", "rain"], "limit": 2, "convention": "cdd11", "imports": []}
    prov = base["provenance"]
    assert prov["git_commit"] and prov["packages"]["torch"] == summary_torch()
    assert prov["data_fingerprint"] and prov["data_counts"] == {t: 2 for t in TYPES3}
    assert "weights_sha256" in prov
    cell = base["results"]["test-gate-scaled"]["text"]["haze"]
    assert cell["n"] == 2 and cell["psnr"] == round(cell["psnr"], 6) and 0 < cell["ssim"] < 1
    assert set(base["results"]["identity"]["text"]) == set(TYPES3)
    capsys.readouterr()
    assert _gate(baseline) == 0
    out = capsys.readouterr().out
    assert "gate passed: 6 method/type result(s) within tolerance" in out
    assert _row(out, "test-gate-scaled", "low")[-2] == "ok"
    # a second update with nothing changed rewrites the very same bytes
    assert _update(data, baseline) == 0 and baseline.read_text() == text


def test_regression_fails_with_a_readable_table(env, capsys, monkeypatch):
    data, baseline = env
    assert _update(data, baseline) == 0
    capsys.readouterr()
    monkeypatch.setenv("GATE_TEST_SCALE", "0.8")
    assert _gate(baseline) == 1
    out = capsys.readouterr().out
    row = _row(out, "test-gate-scaled", "haze")
    assert row[1] == "text" and row[-2] == "REGRESSION" and float(row[6]) < -0.05
    assert float(row[6]) == pytest.approx(float(row[5]) - float(row[4]), abs=2e-3)
    assert _row(out, "identity", "haze")[-2] == "ok"
    assert "gate FAILED: 3 regression" in out and "REGRESSION: test-gate-scaled (text) haze: PSNR -" in out
    # a generous tolerance lets the same change through
    assert _gate(baseline, "--tolerance-psnr", "100", "--tolerance-ssim", "1") == 0


def test_improvement_is_stale_and_update_rewrites(env, capsys, monkeypatch):
    data, baseline = env
    assert _update(data, baseline) == 0
    before = json.loads(baseline.read_text())
    capsys.readouterr()
    monkeypatch.setenv("GATE_TEST_SCALE", "0.97")
    assert _gate(baseline) == 1  # two-sided: a rise beyond tolerance means the baseline is stale
    out = capsys.readouterr().out
    assert _row(out, "test-gate-scaled", "rain")[-2] == "STALE" and "--update-baseline" in out
    assert gates.main(["--baseline", str(baseline), "--update-baseline"]) == 0  # slice taken from the baseline
    after = json.loads(baseline.read_text())
    assert after["slice"] == before["slice"]
    for t in TYPES3:
        new, old = after["results"]["test-gate-scaled"]["text"][t], before["results"]["test-gate-scaled"]["text"][t]
        assert new["psnr"] > old["psnr"]
    assert after["results"]["identity"] == before["results"]["identity"]
    monkeypatch.setenv("GATE_TEST_SCALE", "0.9")  # back to the old behaviour: now a regression
    assert _gate(baseline) == 1


def test_missing_method_fails(env, capsys, monkeypatch):
    data, baseline = env
    assert _update(data, baseline) == 0
    capsys.readouterr()
    monkeypatch.delitem(registry._REGISTRY, "test-gate-scaled")
    assert _gate(baseline) == 1
    out = capsys.readouterr().out
    row = _row(out, "test-gate-scaled", "low")
    assert row[-2] == "MISSING" and "not registered" in row[-1]
    assert _row(out, "identity", "low")[-2] == "ok" and "3 missing" in out


def test_missing_type_fails(env, capsys):
    data, baseline = env
    assert _update(data, baseline) == 0
    capsys.readouterr()
    shutil.rmtree(data / "rain")
    assert _gate(baseline) == 1
    out = capsys.readouterr().out
    assert _row(out, "identity", "rain")[-2] == "MISSING" and "no type folder" in _row(out, "identity", "rain")[-1]
    assert _row(out, "identity", "haze")[-2] == "ok"


def test_fewer_images_fail(env, capsys):
    data, baseline = env
    assert _update(data, baseline) == 0
    capsys.readouterr()
    (data / "low" / "im1.png").unlink()
    assert _gate(baseline) == 1
    row = _row(capsys.readouterr().out, "identity", "low")
    assert row[3] == "2→1" and row[-2] == "MISSING"


def test_failing_method_fails_and_blocks_an_update(env, capsys, monkeypatch):
    data, baseline = env
    assert _update(data, baseline) == 0
    text = baseline.read_text()
    capsys.readouterr()
    monkeypatch.setenv("GATE_TEST_FAIL", "low")
    assert _gate(baseline) == 1
    out = capsys.readouterr().out
    row = _row(out, "test-gate-scaled", "low")
    assert row[-2] == "FAILED" and "2 image(s) failed" in row[-1]
    assert "deliberate gate-test failure" in out
    assert gates.main(["--baseline", str(baseline), "--update-baseline"]) == 1
    assert "baseline NOT written" in capsys.readouterr().out and baseline.read_text() == text


def test_method_that_cannot_be_built_fails(env, capsys, monkeypatch):
    data, baseline = env
    assert _update(data, baseline) == 0
    capsys.readouterr()
    monkeypatch.setenv("GATE_TEST_BROKEN", "1")
    assert _gate(baseline) == 1
    row = _row(capsys.readouterr().out, "test-gate-scaled", "haze")
    assert row[-2] == "FAILED" and "cannot build" in row[-1] and "weights file gone" in row[-1]


def test_slice_comes_from_the_baseline(env, capsys):
    data, baseline = env
    assert _gate(baseline) == 2
    assert "--update-baseline" in capsys.readouterr().err
    assert _update(data, baseline) == 0
    assert _gate(baseline, "--limit", "1") == 2
    assert "pass --update-baseline to change it" in capsys.readouterr().err
    assert _gate(baseline, "--limit", "2") == 0  # agreeing with the baseline is fine


def test_out_folder_kept_and_must_be_fresh(env, tmp_path, capsys):
    data, baseline = env
    assert _update(data, baseline) == 0
    out = tmp_path / "gate-run"
    assert _gate(baseline, "--out", str(out)) == 0
    assert (out / "records.jsonl").exists() and (out / "summary.json").exists()
    assert _gate(baseline, "--out", str(out)) == 2
    assert "fresh folder" in capsys.readouterr().err


def _ev(psnr: float, ssim: float) -> gates.Evaluation:
    return gates.Evaluation({"m": {"text": {"haze": {"n": 2, "failed": 0, "psnr": psnr, "ssim": ssim, "error": None}}}},
                            {}, {}, 0, "")


def test_tolerance_edges():
    base = {"results": {"m": {"text": {"haze": {"n": 2, "psnr": 30.0, "ssim": 0.9}}}}}
    status = [gates.compare(base, _ev(p, s))[0].status for p, s in
              [(29.95, 0.9), (29.949999, 0.9), (30.0, 0.899), (30.0, 0.898999), (30.051, 0.9), (30.0, 0.9)]]
    assert status == ["ok", "REGRESSION", "ok", "REGRESSION", "STALE", "ok"]
    assert [r.status for r in gates.compare(base, _ev(29.9, 0.9), tol_psnr=0.2)] == ["ok"]


def test_nan_never_passes():
    base = {"results": {"m": {"text": {"haze": {"n": 2, "psnr": float("nan"), "ssim": 0.9}}}}}
    assert gates.compare(base, _ev(30.0, 0.9))[0].status == "FAILED"
    good = {"results": {"m": {"text": {"haze": {"n": 2, "psnr": 30.0, "ssim": 0.9}}}}}
    assert gates.compare(good, _ev(float("nan"), 0.9))[0].status == "FAILED"


def test_nan_tolerance_is_refused(env, capsys):
    data, baseline = env
    assert _update(data, baseline) == 0
    capsys.readouterr()
    assert _gate(baseline, "--tolerance-psnr", "nan") == 2
    assert "finite number" in capsys.readouterr().err


def test_mini_data_spec(monkeypatch, tmp_path):
    fake = types.SimpleNamespace(ensure=lambda split="test", **kw: tmp_path / split)
    monkeypatch.setitem(sys.modules, "harness.data.mini", fake)  # no generation, no heavy import
    assert gates.resolve_data("cdd11-mini:test") == tmp_path / "test"
    assert gates.resolve_data(str(tmp_path / "x")) == tmp_path / "x"
    assert gates.DEFAULT_SLICE["data"] == "cdd11-mini:test"


def test_a_folder_of_restored_images_is_gated_like_a_model(env, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    data, baseline = env
    folder = tmp_path / "released"
    for t in TYPES3:
        (folder / t).mkdir(parents=True)
        for f in sorted((data / t).iterdir()):
            Image.open(f).save(folder / t / f.name)
    spec = f"outputs:released={folder}"
    assert gates.main(["--baseline", str(baseline), "--update-baseline", "--data", str(data), "--methods",
                       f"identity,{spec}", "--modes", "text", "--types", ",".join(TYPES3), "--limit", "2"]) == 0
    assert "released" in json.loads(baseline.read_text())["results"]
    assert _gate(baseline) == 0
    f = folder / TYPES3[0] / "im0.png"
    a = np.asarray(Image.open(f)).astype(np.int16)
    Image.fromarray(np.clip(a + 40, 0, 255).astype(np.uint8)).save(f)  # one output much worse
    capsys.readouterr()
    assert _gate(baseline) == 1
    assert _row(capsys.readouterr().out, "released", TYPES3[0])[-2] == "REGRESSION"

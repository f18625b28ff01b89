"""The Python API (`harness.evaluate`), the one record path (`harness.results`), precomputed outputs as a
method (`outputs:NAME=DIR`), and the three wrong results of the old run path as regression tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_layout
from PIL import Image
from pngwrite import write_png
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import harness
from harness import results
from harness.degradations import TYPES
from harness.evaluation import ConfigError, EvalConfig
from harness.records import read_records
from harness.run import main as run_main

TYPES2 = ("haze", "rain")


class Halve:
    """A plain `Restorer` object (not registered): scales the image by 0.6 (v·0.6 is never halfway between two
    8-bit levels, so the expected values need no rounding convention)."""

    name = "halve"
    weights_label = "none"

    def restore(self, images, degradation=None):
        return images * 0.6

    def to(self, device):
        return self


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "data", n=3, types=TYPES2)


def _eval(data: Path, out: Path | None, **kw):
    return harness.evaluate(**{"data": data, "out": out, "progress": False, "workers": 0, **kw}, log=lambda m: None)


def test_evaluate_returns_frames_for_names_and_objects(data):
    res = _eval(data, None, methods=["identity"], restorers=[Halve()], modes="text")
    assert res.exit_code == 0 and res.out is None
    table = res.table
    assert set(table["column"]) == {"Input", "halve"}
    for t in TYPES2:  # halve scored against skimage on the same files
        clear = [np.asarray(Image.open(data / "clear" / f"im{i}.png")) for i in range(3)]
        deg = [np.asarray(Image.open(data / t / f"im{i}.png")) for i in range(3)]
        want = np.mean([peak_signal_noise_ratio(c, np.round(d * 0.6).astype(np.uint8)) for c, d in zip(clear, deg)])
        got = table[(table["column"] == "halve") & (table["type"] == t)]["psnr"].item()
        assert got == pytest.approx(want, abs=1e-6)
    assert len(res.records_frame) == 2 * 3 * 2


def test_identity_is_one_input_column_under_auto_text(data, tmp_path):
    res = _eval(data, tmp_path / "o", methods=["identity"], modes="auto,text")
    assert {r["mode"] for r in res.records} == {"auto"}  # evaluated once
    agg = res.summary["results"]
    assert list(agg) == ["Input"] and agg["Input"]["haze"]["n"] == 3  # not 6
    # an old folder holding identity in both modes still shows one Input column with n = 3
    recs, _ = read_records(tmp_path / "o" / "records.jsonl")
    dup = [{**r, "mode": "text"} for r in recs]
    assert results.aggregate(results.select(recs + dup))["Input"]["rain"]["n"] == 3


def test_tables_follow_the_last_run_selection(data, tmp_path):
    out = tmp_path / "o"
    _eval(data, out, methods=["identity"], restorers=[Halve()], modes="text")
    assert "halve" in (out / "table1.md").read_text()
    _eval(data, out, methods=["identity"], modes="text")
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["results"]) == ["Input"]
    assert "halve" not in (out / "table1.md").read_text()
    assert len(read_records(out / "records.jsonl")[0]) == 12  # nothing was lost: halve's records are kept


def test_run_json_records_the_real_caller(data, tmp_path):
    _eval(data, tmp_path / "api", methods=["identity"])
    run = json.loads((tmp_path / "api" / "run.json").read_text())
    assert run["command"] is None and run["api"] == "harness.evaluate"
    assert run_main(["--data", str(data), "--out", str(tmp_path / "cli"), "--quiet", "--workers", "0"]) == 0
    run = json.loads((tmp_path / "cli" / "run.json").read_text())
    assert run["command"][:3] == ["python", "-m", "harness.run"] and "--out" in run["command"]


def test_narrower_limit_is_a_view_not_a_change(data, tmp_path):
    out = tmp_path / "o"
    _eval(data, out, restorers=[Halve()], methods=["identity"], modes="text")
    before = {(r["method"], r["type"], r["file"]): r["seconds"] for r in read_records(out / "records.jsonl")[0]}
    res = _eval(data, out, restorers=[Halve()], methods=["identity"], modes="text", limit=1, types=["rain"])
    assert len(res.records) == 2 and not (out / "records.stale.jsonl").exists()
    _eval(data, out, restorers=[Halve()], methods=["identity"], modes="text")  # widen again: nothing recomputed
    after = {(r["method"], r["type"], r["file"]): r["seconds"] for r in read_records(out / "records.jsonl")[0]}
    assert after == before


def test_save_failure_keeps_the_score(data, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "images").write_text("a file where the images folder should be")
    res = _eval(data, out, restorers=[Halve()], modes="text", methods=[], save_images=True)
    assert res.exit_code == 0 and all(r["status"] == "ok" for r in res.records)
    assert res.summary["save_errors"] and "cannot save" in res.summary["save_errors"][0]


def test_same_stem_inputs_are_saved_apart_and_load_back(tmp_path):
    data = make_layout(tmp_path / "data", n=1, types=("haze",))
    Image.open(data / "clear" / "im0.png").save(data / "clear" / "im0.bmp")
    Image.open(data / "haze" / "im0.png").transpose(Image.FLIP_LEFT_RIGHT).save(data / "haze" / "im0.bmp")
    out = tmp_path / "o"
    first = _eval(data, out, restorers=[Halve()], methods=[], modes="text", save_images=True)
    saved = sorted(p.name for p in (out / "images" / "halve-text" / "haze").iterdir())
    assert saved == ["im0.bmp.png", "im0.png.png"]
    again = _eval(data, tmp_path / "o2", methods=[f"outputs:halve={out / 'images' / 'halve-text'}"], modes="text")
    assert [(r["file"], r["psnr"], r["ssim"]) for r in again.records] == \
           [(r["file"], r["psnr"], r["ssim"]) for r in first.records]


def test_outputs_round_trip_of_saved_images(tmp_path):
    data = make_layout(tmp_path / "data", n=2, types=TYPES)
    out = tmp_path / "o"
    first = _eval(data, out, restorers=[Halve()], methods=[], modes="text", save_images=True)
    spec = f"outputs:again={out / 'images' / 'halve-text'}"
    second = _eval(data, tmp_path / "o2", methods=[spec], modes="text")
    assert second.exit_code == 0
    a = {(r["type"], r["file"]): (r["psnr"], r["ssim"]) for r in first.records}
    b = {(r["type"], r["file"]): (r["psnr"], r["ssim"]) for r in second.records}
    assert a == b and len(a) == 22


def _release(tmp_path: Path) -> tuple[Path, Path]:
    """A data set and an outputs folder: one good output, one missing, one of the wrong size, one extra file."""
    data = make_layout(tmp_path / "data", n=3, types=("haze",))
    folder = tmp_path / "method" / "haze"
    folder.mkdir(parents=True)
    blurred = Image.open(data / "haze" / "im0.png").resize((16, 12)).resize((32, 24))
    blurred.save(folder / "im0.png")
    Image.new("RGB", (30, 24)).save(folder / "im2.png")
    Image.new("RGB", (32, 24)).save(folder / "unrelated.png")
    return data, tmp_path / "method"


def test_outputs_method_scores_as_skimage_and_fails_per_image(tmp_path):
    data, method = _release(tmp_path)
    notes: list[str] = []
    res = harness.evaluate(data=data, out=tmp_path / "o", methods=[f"outputs:blur={method}"], progress=False,
                           log=notes.append)
    by = {r["file"]: r for r in res.records}
    gt = np.asarray(Image.open(data / "clear" / "im0.png"))
    out = np.asarray(Image.open(method / "haze" / "im0.png"))
    assert by["im0.png"]["psnr"] == pytest.approx(peak_signal_noise_ratio(gt, out, data_range=255), abs=1e-9)
    ssim = structural_similarity(gt / 255.0, out / 255.0, win_size=7, channel_axis=-1, data_range=1.0)
    assert by["im0.png"]["ssim"] == pytest.approx(ssim, abs=1e-6)
    assert by["im1.png"]["status"] == "failed" and "missing output" in by["im1.png"]["error"]
    assert str(method / "haze" / "im1") in by["im1.png"]["error"]
    assert by["im2.png"]["status"] == "failed"
    assert "30x24" in by["im2.png"]["error"] and "32x24" in by["im2.png"]["error"]
    assert any("unrelated.png" in n and "not scored" in n for n in notes)
    assert res.exit_code == 1


def test_outputs_16bit_is_converted_and_noted(tmp_path):
    data = make_layout(tmp_path / "data", n=1, types=("haze",))
    folder = tmp_path / "m" / "haze"
    folder.mkdir(parents=True)
    gray = np.asarray(Image.open(data / "clear" / "im0.png").convert("L")).astype(np.uint16) * 257
    write_png(folder / "im0.png", gray)
    res = _eval(data, tmp_path / "o", methods=[f"outputs:g={tmp_path / 'm'}"])
    rec = res.records[0]
    assert rec["status"] == "ok" and any("round(v / 257)" in n for n in rec["notes"])


def test_strict_json_with_an_exact_restoration(tmp_path):
    data = make_layout(tmp_path / "data", n=1, types=("haze",))
    Image.open(data / "clear" / "im0.png").save(data / "haze" / "im0.png")  # identical pair: PSNR inf
    res = _eval(data, tmp_path / "o", methods=["identity"])
    text = (tmp_path / "o" / "summary.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert res.summary["results"]["Input"]["haze"]["psnr"] == float("inf")
    assert json.loads(text)["results"]["Input"]["haze"]["psnr"] == "inf"


@pytest.mark.parametrize("kw, words", [
    ({"modes": ","}, "no mode"), ({"modes": "fast"}, "unknown mode"), ({"types": ["fog"]}, "unknown type"),
    ({"device": "tpu"}, "device"), ({"threads": -1}, "threads"), ({"limit": 0}, "limit"),
    ({"workers": -2}, "workers"), ({"methods": ["outputs:x"]}, "outputs:NAME=DIR"),
])
def test_bad_arguments_are_refused_up_front(data, tmp_path, kw, words):
    with pytest.raises((ConfigError, ValueError)) as e:
        _eval(data, tmp_path / "o", **{"methods": ["identity"], **kw})
    assert words in str(e.value)
    assert not (tmp_path / "o").exists()


def test_cli_exit_codes_for_bad_usage(data, tmp_path, capsys):
    base = ["--data", str(data), "--out", str(tmp_path / "o"), "--quiet"]
    assert run_main([*base, "--mode", ","]) == 2
    assert "no mode" in capsys.readouterr().err
    assert run_main([*base, "--types", "fog"]) == 2
    assert "unknown type" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_main([*base, "--threads", "-1"])
    assert e.value.code == 2
    (tmp_path / "file").write_text("x")
    assert run_main(["--data", str(data), "--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert "existing file" in capsys.readouterr().err


def test_config_object_and_kwargs_are_the_same(data):
    a = harness.evaluate(EvalConfig(methods=("identity",), data=data, progress=False), log=lambda m: None)
    b = harness.evaluate({"methods": ["identity"], "data": data, "progress": False}, log=lambda m: None)
    assert a.table.equals(b.table)


def test_quick_scope_scores_a_few_of_every_type(tmp_path):
    data = make_layout(tmp_path / "data", n=4, types=TYPES2)
    res = _eval(data, None, methods=["identity"], quick=True)
    assert {t: n for t, n in res.summary["data"]["counts"].items()} == {"haze": 2, "rain": 2}

"""Table rendering from records alone: aggregation order, bold/underline placement, LaTeX, CSV, published."""

from __future__ import annotations

import math

import pytest

from harness.degradations import TABLE1_ORDER
from harness.records import dumps
from harness.tables import aggregate, load_published, main, render_latex, render_markdown, render_published


def rec(method, t, f, psnr, ssim, mode="text", status="ok", weights="official"):
    return {"method": method, "mode": mode, "type": t, "file": f, "psnr": psnr, "ssim": ssim, "status": status,
            "weights": weights}


def test_mean_per_image_then_type_then_unweighted_over_types():
    recs = [rec("a", "haze", "1", 10, 0.5), rec("a", "haze", "2", 20, 0.7), rec("a", "low", "1", 40, 0.9)]
    agg = aggregate(recs)["a"]
    assert agg["haze"]["psnr"] == 15 and agg["low"]["psnr"] == 40
    assert agg["average"]["psnr"] == pytest.approx(27.5)  # not (10+20+40)/3
    assert agg["average"]["ssim"] == pytest.approx((0.6 + 0.9) / 2)


def test_failed_images_excluded_and_counted():
    recs = [rec("a", "haze", "1", 10, 0.5), rec("a", "haze", "2", None, None, status="failed")]
    agg = aggregate(recs)["a"]
    assert agg["haze"]["n"] == 1 and agg["haze"]["failed"] == 1 and agg["haze"]["psnr"] == 10
    assert "Failed images" in render_markdown(aggregate(recs)) and "a: 1" in render_markdown(aggregate(recs))


def test_later_record_replaces_earlier_for_same_image():
    recs = [rec("a", "haze", "1", 10, 0.5, status="failed"), rec("a", "haze", "1", 12, 0.6)]
    assert aggregate(recs)["a"]["haze"]["psnr"] == 12


def _three_methods():
    recs = []
    for t in ("haze", "low"):
        recs += [rec("identity", t, "1", 15.0, 0.6), rec("m1", t, "1", 30.0, 0.90), rec("m2", t, "1", 28.0, 0.95),
                 rec("m3", t, "1", 29.0, 0.80, weights="demo")]
    return recs


def test_bold_best_underline_second_input_excluded():
    md = render_markdown(aggregate(_three_methods()))
    row = next(line for line in md.splitlines() if line.startswith("| I Haze"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "15.00 / 0.6000"  # Input: never marked
    assert cells[2] == "**30.00** / <u>0.9000</u>"
    assert cells[3] == "28.00 / **0.9500**"
    assert cells[4] == "<u>29.00</u> / 0.8000"
    assert "m3†" in md and "demo weights" in md


def test_ties_in_printed_value_share_the_mark():
    recs = [rec("a", "haze", "1", 30.001, 0.9), rec("b", "haze", "1", 30.004, 0.8), rec("c", "haze", "1", 29, 0.7)]
    row = next(line for line in render_markdown(aggregate(recs)).splitlines() if line.startswith("| I Haze"))
    assert row.count("**30.00**") == 2 and "<u>29.00</u>" in row


def test_rows_in_table1_order_with_roman_numerals():
    recs = [rec("a", t, "1", 20, 0.5) for t in reversed(TABLE1_ORDER)]
    lines = [line for line in render_markdown(aggregate(recs)).splitlines() if line.startswith("| ")][1:]
    assert [line.split("|")[1].split()[0] for line in lines] == [
        "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "Avg"]


def test_latex_booktabs():
    tex = render_latex(aggregate(_three_methods()))
    assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("\\midrule") == 2
    assert "\\textbf{30.00} / \\underline{0.9000}" in tex and "m3$^\\dagger$" in tex


def test_modes_become_separate_columns():
    recs = [rec("a", "haze", "1", 20, 0.5, mode="auto"), rec("a", "haze", "1", 22, 0.6, mode="text")]
    assert set(aggregate(recs)) == {"a (auto)", "a (text)"}


def test_columns_do_not_depend_on_record_order():
    recs = [rec("vlur", "haze", "1", 22, 0.6, mode="text"), rec("onerestore", "haze", "1", 21, 0.6, mode="auto"),
            rec("identity", "haze", "1", 15, 0.5), rec("onerestore", "haze", "1", 23, 0.7, mode="text"),
            rec("vlur", "haze", "1", 20, 0.6, mode="auto")]
    want = ["Input", "onerestore (auto)", "onerestore (text)", "vlur (auto)", "vlur (text)"]
    assert list(aggregate(recs)) == want and list(aggregate(recs[::-1])) == want
    assert render_markdown(aggregate(recs)) == render_markdown(aggregate(recs[::-1]))
    from harness.stats import scores

    assert list(scores(recs)) == want and list(scores(recs[::-1])) == want  # the significance report too


def test_published_numbers_and_difference():
    pub = load_published()
    assert pub[("onerestore", "text")]["haze"][0] == pytest.approx(32.67, abs=0.5)
    mean_input = sum(p for p, _ in pub[("identity", "auto")].values()) / 11
    assert mean_input == pytest.approx(16.00, abs=0.01)  # the release's own average
    text = render_published([rec("identity", "haze", "1", 16.873378, 0.8)])
    row = next(line for line in text.splitlines() if "I Haze" in line)
    assert "15.87" in row and "+1.00" in row


def test_cli_renders_from_records_alone(tmp_path, capsys):
    (tmp_path / "records.jsonl").write_text("".join(dumps(r) + "\n" for r in _three_methods()))
    assert main([str(tmp_path), "--published"]) == 0
    assert (tmp_path / "table1.md").exists() and (tmp_path / "table1.tex").exists()
    csv_text = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_text[0] == "method,type,row,n,failed,psnr,ssim"
    assert any(line.startswith("m1,haze,I,1,0,30.0") for line in csv_text)
    assert main([str(tmp_path / "nothing")]) == 2


def test_nan_cells_render_as_dash():
    recs = [rec("a", "haze", "1", None, None, status="failed"), rec("b", "haze", "1", 20, 0.5)]
    agg = aggregate(recs)
    assert math.isnan(agg["a"]["haze"]["psnr"]) and "– / –" in render_markdown(agg)

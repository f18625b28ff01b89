"""Paired, stratified bootstrap (harness.stats) and the significance marks of Table I."""

from __future__ import annotations

import numpy as np
import pytest

from harness import stats
from harness.records import dumps
from harness.tables import SIG_MARK, aggregate, render_latex, render_markdown, write_tables
from harness.tables import main as tables_main


def rec(method, t, f, psnr, ssim=0.9, mode="text", status="ok"):
    return {"method": method, "mode": mode, "type": t, "file": f, "psnr": psnr, "ssim": ssim, "status": status,
            "weights": "none"}


def recs_from(method: str, values: dict[str, list[float]], **kw) -> list[dict]:
    return [rec(method, t, f"im{i:02d}.png", v, **kw) for t, vs in values.items() for i, v in enumerate(vs)]


RNG = np.random.default_rng(7)
BASE = {t: list(20 + RNG.normal(0, 2, 6).round(3)) for t in ("haze", "low", "rain")}


def test_identical_methods_give_exactly_zero():
    sc = stats.scores(recs_from("a", BASE) + recs_from("b", BASE))
    d = stats.difference(sc, "a", "b")
    assert (d["lo"], d["hi"], d["estimate"]) == (0.0, 0.0, 0.0)
    assert d["zero_inside"] is True and d["significant"] is False and d["n"] == 18


def test_constant_offset_gives_exactly_the_offset():
    shifted = {t: [v + 0.5 for v in vs] for t, vs in BASE.items()}
    sc = stats.scores(recs_from("a", shifted) + recs_from("b", BASE))
    d = stats.difference(sc, "a", "b")
    assert d["lo"] == d["hi"] == pytest.approx(0.5, abs=1e-12)
    assert d["significant"] is True and d["zero_inside"] is False
    d = stats.difference(sc, "b", "a")
    assert d["lo"] == d["hi"] == pytest.approx(-0.5, abs=1e-12)


def test_exact_offset_with_representable_values():
    a = {"haze": [10.0, 12.0, 15.0], "low": [20.0, 21.0]}
    b = {t: [v - 0.25 for v in vs] for t, vs in a.items()}
    d = stats.difference(stats.scores(recs_from("a", a) + recs_from("b", b)), "a", "b")
    assert (d["lo"], d["hi"]) == (0.25, 0.25)


def test_interval_matches_direct_numpy_computation():
    a = {"haze": [10.0, 12.0, 15.0], "low": [20.0, 21.0, 23.5, 19.0]}
    sc = stats.scores(recs_from("a", a))
    got = stats.interval(sc, "a", n_resamples=1500, seed=123)
    rng = np.random.default_rng(123)
    haze, low = np.array(a["haze"]), np.array(a["low"])  # Table I order: haze (I) before low (II)
    ih = rng.integers(0, 3, size=(1500, 3))
    il = rng.integers(0, 4, size=(1500, 4))
    stat = (haze[ih].mean(axis=1) + low[il].mean(axis=1)) / 2
    lo, hi = np.percentile(stat, [2.5, 97.5])
    assert (got["lo"], got["hi"]) == (lo, hi)
    assert got["estimate"] == pytest.approx((np.mean(haze) + np.mean(low)) / 2)
    assert got["n"] == 7 and got["types"] == ["haze", "low"]


def test_two_image_hand_checked_interval():
    # means of 2 draws from {0, 1}: 0 (p 1/4), 0.5 (p 1/2), 1 (p 1/4): the 2.5/97.5 percentiles are 0 and 1
    sc = stats.scores(recs_from("a", {"haze": [0.0, 1.0]}))
    got = stats.interval(sc, "a")
    assert (got["lo"], got["hi"], got["estimate"]) == (0.0, 1.0, 0.5)


def test_estimate_equals_table_average_and_difference_is_paired():
    b = {t: [v - 0.3 + 0.1 * (i % 2) for i, v in enumerate(vs)] for t, vs in BASE.items()}
    records = recs_from("a", BASE) + recs_from("b", b)
    records.append(rec("b", "low", "im03.png", None, None, status="failed"))  # later record replaces the ok one
    sc = stats.scores(records)
    assert "im03.png" not in sc["b"]["low"]
    agg = aggregate(records)
    assert stats.interval(sc, "a")["estimate"] == pytest.approx(agg["a"]["average"]["psnr"], abs=1e-12)
    assert stats.interval(sc, "b")["estimate"] == pytest.approx(agg["b"]["average"]["psnr"], abs=1e-12)
    d = stats.difference(sc, "a", "b")
    assert d["n"] == 17  # the failed image of b is left out for both
    assert d["lo"] <= d["estimate"] <= d["hi"] and d["significant"] is True


def test_seeded_and_reproducible():
    sc = stats.scores(recs_from("a", BASE))
    one, two = stats.interval(sc, "a", seed=1), stats.interval(sc, "a", seed=1)
    assert one == two
    assert stats.interval(sc, "a", seed=2)["lo"] != one["lo"]
    assert one["n_resamples"] == stats.DEFAULT_RESAMPLES == 2000


def test_too_few_resamples_rejected():
    sc = stats.scores(recs_from("a", BASE))
    with pytest.raises(ValueError, match="at least 1000"):
        stats.interval(sc, "a", n_resamples=500)


def test_single_image_types_give_no_verdict():
    sc = stats.scores(recs_from("a", {"haze": [20.0]}) + recs_from("b", {"haze": [19.0]}))
    d = stats.difference(sc, "a", "b")
    assert d["significant"] is None and "no verdict" in d["note"]


def test_coverage_sanity():
    """~95 % of the intervals contain the true mean (percentile bootstrap, n = 25 per type, 2 types)."""
    rng = np.random.default_rng(0)
    hits, trials = 0, 120
    for k in range(trials):
        strata = [rng.normal(30, 2, 25), rng.normal(20, 3, 25)]
        lo, hi = stats.percentile_interval(stats.bootstrap_aggregate(strata, 1000, seed=k))
        hits += lo <= 25.0 <= hi
    assert 0.85 <= hits / trials <= 1.0


def test_interval_narrows_with_more_images():
    rng = np.random.default_rng(3)
    small = stats.percentile_interval(stats.bootstrap_aggregate([rng.normal(0, 1, 10)]))
    large = stats.percentile_interval(stats.bootstrap_aggregate([rng.normal(0, 1, 400)]))
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def _close_race() -> list[dict]:
    """'vlur' beats 'onerestore' by 0.04 dB on average with ±0.3 dB per-image scatter; 'airnet' is 1 dB behind."""
    rng = np.random.default_rng(11)
    records = []
    for t in ("haze", "low"):
        base = 30 + rng.normal(0, 1, 8)
        noise = rng.normal(0, 0.3, 8)
        noise -= noise.mean()
        for i in range(8):
            f = f"im{i}.png"
            records += [rec("identity", t, f, base[i] - 10), rec("vlur", t, f, base[i] + 0.04),
                        rec("onerestore", t, f, base[i] + noise[i]), rec("airnet", t, f, base[i] - 1.0)]
    return records


def test_significance_marks_placed_in_markdown_and_latex():
    records = _close_race()
    marks = stats.not_significant_vs_best(records)
    assert marks == {"haze": {"onerestore"}, "low": {"onerestore"}, "average": {"onerestore"}}
    md = render_markdown(aggregate(records), significance=marks)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in md.splitlines() if line.startswith("| ")}
    header = rows["Degradation"]
    col = {name: header.index(name) for name in ("Input", "vlur", "onerestore", "airnet")}
    for row in ("I Haze", "II Low", "Avg"):
        cells = rows[row]
        assert cells[col["onerestore"]].split(" / ")[0].endswith(SIG_MARK)
        assert cells[col["vlur"]].startswith("**") and SIG_MARK not in cells[col["vlur"]]
        assert SIG_MARK not in cells[col["airnet"]] and SIG_MARK not in cells[col["Input"]]
    assert f"{SIG_MARK} PSNR not significantly different from the best in its row" in md
    tex = render_latex(aggregate(records), significance=marks)
    assert tex.count("$^\\ddagger$") == 3 and f"% {SIG_MARK} PSNR not significantly" in tex  # note: a comment
    plain = render_markdown(aggregate(records))
    assert SIG_MARK not in plain  # off by default


def test_write_tables_and_cli_significance(tmp_path, capsys):
    (tmp_path / "records.jsonl").write_text("".join(dumps(r) + "\n" for r in _close_race()))
    write_tables(tmp_path)
    assert SIG_MARK not in (tmp_path / "table1.md").read_text()
    assert tables_main([str(tmp_path), "--significance"]) == 0
    assert (tmp_path / "table1.md").read_text().count(SIG_MARK) == 4  # 3 cells + footnote
    assert "$^\\ddagger$" in (tmp_path / "table1.tex").read_text()


def test_no_mark_note_when_everything_is_significant():
    records = [r for r in _close_race() if r["method"] != "onerestore"]
    marks = stats.not_significant_vs_best(records)
    assert marks == {}
    md = render_markdown(aggregate(records), significance=marks)
    assert f"No {SIG_MARK} mark" in md


def test_cli_prints_intervals_and_differences(tmp_path, capsys):
    (tmp_path / "records.jsonl").write_text("".join(dumps(r) + "\n" for r in _close_race()))
    assert stats.main([str(tmp_path), "--resamples", "1000", "--per-type"]) == 0
    out = capsys.readouterr().out
    assert "### Average PSNR (dB)" in out and "| vlur " in out
    # columns in table order (methods by name), so the differences read onerestore − vlur
    line = next(x for x in out.splitlines() if x.startswith("| onerestore − vlur"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "-0.04" and cells[4] == "yes" and cells[5] == "no"  # 0 inside: not significant
    line = next(x for x in out.splitlines() if x.startswith("| airnet − vlur"))
    assert [c.strip() for c in line.strip("|").split("|")][5] == "yes"
    assert "### I Haze: pairwise differences" in out
    assert stats.main([str(tmp_path / "missing")]) == 2
    assert stats.main([str(tmp_path), "--resamples", "10"]) == 2

"""harness.confusion: counts and accuracies on hand-made predictions, label order, rendering, and the
auto-vs-text misclassification split of a `harness.run` on a tiny layout."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_layout
from PIL import Image

from harness import confusion
from harness.confusion import Confusion, label_order
from harness.degradations import ALL_TYPES, CLEAR, TYPES
from harness.protocol import AutoRestorer, DegradationClassifier, classify_from_scores
from harness.records import read_records
from harness.registry import register
from harness.run import main as run_main

# ------------------------------------------------------------------ test methods: a marker-reading classifier

MARK_STEP = 20  # pixel (0, 0) red value = official type index × MARK_STEP; green = image number


def stamp_layout(root: Path) -> Path:
    """Write each image's true type (and number) into its top-left pixel so a test classifier can read it."""
    for t in ALL_TYPES:
        for f in sorted((root / t).glob("*.png")):
            a = np.array(Image.open(f))
            a[0, 0] = (ALL_TYPES.index(t) * MARK_STEP, int(f.stem[2:]), 0)
            Image.fromarray(a).save(f)
    return root


def true_types(images: torch.Tensor) -> list[str]:
    return [ALL_TYPES[round(v * 255 / MARK_STEP)] for v in images[:, 0, 0, 0].tolist()]


#: (true type, image number) -> deliberate wrong prediction; haze always, rain on im1 only, low_snow as clear.
MISTAKES = {("haze", 0): "low_haze", ("haze", 1): "low_haze", ("rain", 1): "snow",
            ("low_snow", 0): CLEAR, ("low_snow", 1): CLEAR}


class MarkerClassifier:
    """Right except on MISTAKES; 12 labels (can predict clear), like OneRestore's embedder."""

    name = "test-marker-clf"
    labels = ALL_TYPES

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        s = torch.zeros(images.shape[0], len(self.labels))
        for b, t in enumerate(true_types(images)):
            number = round(images[b, 1, 0, 0].item() * 255)
            s[b, self.labels.index(MISTAKES.get((t, number), t))] = 1.0
        return s

    def classify(self, images: torch.Tensor) -> list[str]:
        return classify_from_scores(self.scores(images), self.labels)


class MarkerRestorer:
    """Restores well (×0.9 + 0.05) when told the image's true type, badly (×0.6) when told another one."""

    name = "test-marker"
    weights_label = "none"

    def __init__(self):
        self.classifier = MarkerClassifier()

    def to(self, device):
        return self

    def restore(self, images, degradation=None):
        given = degradation if degradation is not None else self.classifier.classify(images)
        good = torch.tensor([g == t for g, t in zip(given, true_types(images))]).view(-1, 1, 1, 1)
        return torch.where(good, images * 0.9 + 0.05, images * 0.6)

    def restore_auto(self, images):
        pred = self.classifier.classify(images)
        return self.restore(images, pred), pred


class ClassifierOnly:
    """Has a classifier but no restore_auto: blind restore ignores it (predictions are still recorded)."""

    name = "test-marker-plain"
    weights_label = "none"

    def __init__(self):
        self.classifier = MarkerClassifier()

    def to(self, device):
        return self

    def restore(self, images, degradation=None):
        return images * 0.9 + 0.05


register("test-marker", modes=("auto", "text"), description="test AutoRestorer reading a type marker")(
    lambda opts: MarkerRestorer())
register("test-marker-plain", modes=("auto",), description="test restorer with a classifier, no restore_auto")(
    lambda opts: ClassifierOnly())


# ------------------------------------------------------------------ hand-made predictions

# 6 low (5 right, 1 -> rain), 2 haze (1 right, 1 -> low), 2 rain (both -> low): imbalanced classes.
HAND = [("low", "low")] * 5 + [("low", "rain"), ("haze", "haze"), ("haze", "low"), ("rain", "low"), ("rain", "low")]


def test_counts_and_accuracies_by_hand():
    c = Confusion.from_pairs(HAND, method="m", mode="auto")
    assert c.rows == TYPES and c.cols == TYPES
    assert c.n == 10 and c.correct == 6
    assert c.count("low", "low") == 5 and c.count("low", "rain") == 1 and c.count("rain", "low") == 2
    assert c.count("snow", "snow") == 0
    assert c.accuracy == pytest.approx(0.6)
    # recall: low 5/6, haze 1/2, rain 0/2; the other 8 types have no image (nan) and are left out of the mean
    assert c.recall["low"] == pytest.approx(5 / 6) and c.recall["haze"] == 0.5 and c.recall["rain"] == 0.0
    assert math.isnan(c.recall["snow"])
    assert c.mean_class_accuracy == pytest.approx((5 / 6 + 0.5 + 0.0) / 3)  # 0.4444 != accuracy 0.6
    # precision: low predicted 8 times (5 right), haze once (right), rain once (wrong), snow never (nan)
    assert c.precision["low"] == pytest.approx(5 / 8)
    assert c.precision["haze"] == 1.0 and c.precision["rain"] == 0.0
    assert math.isnan(c.precision["snow"])
    assert c.support["low"] == 6 and c.predicted_totals["low"] == 8
    frac = c.row_normalised()
    assert frac[0, 0] == pytest.approx(5 / 6) and np.isnan(frac[TYPES.index("snow")]).all()


def test_balanced_classes_mean_class_accuracy_equals_accuracy():
    c = Confusion.from_pairs([("low", "low"), ("low", "haze"), ("haze", "haze"), ("haze", "low")])
    assert c.accuracy == c.mean_class_accuracy == 0.5


def test_label_order_official_with_clear_only_when_needed():
    assert label_order(["haze", "low"], ["low"]) == (TYPES, TYPES)
    rows, cols = label_order(["haze"], ["haze", CLEAR])  # a clear prediction: a column, no row
    assert rows == TYPES and cols == (*TYPES, CLEAR)
    rows, cols = label_order(["haze", CLEAR], ["haze"])  # clear images classified: row and column
    assert rows == cols == (*TYPES, CLEAR)
    rows, cols = label_order(["haze"], ["fog"])  # a label outside CDD-11 still gets a column
    assert rows == TYPES and cols == (*TYPES, "fog")
    c = Confusion.from_pairs([("haze", CLEAR), ("low", "low")])
    assert c.count("haze", CLEAR) == 1 and c.precision[CLEAR] == 0.0 and c.accuracy == 0.5


def test_clear_row_and_accuracy_over_degraded_types():
    c = Confusion.from_pairs([(CLEAR, CLEAR), (CLEAR, "haze"), ("haze", "haze"), ("low", "low")])
    assert c.accuracy == 0.75 and c.accuracy_over(TYPES) == 1.0 and c.recall[CLEAR] == 0.5
    assert "accuracy on the 11 degraded types 100.00 %" in confusion.render_markdown(c)


def test_confusions_from_records_skip_unpredicted_and_keep_latest():
    recs = [{"method": "a", "mode": "auto", "type": "low", "file": "1", "predicted": "haze", "status": "ok"},
            {"method": "a", "mode": "auto", "type": "low", "file": "1", "predicted": "low", "status": "ok"},
            {"method": "a", "mode": "auto", "type": "haze", "file": "1", "predicted": None, "status": "failed"},
            {"method": "b", "mode": "text", "type": "low", "file": "1", "predicted": None, "status": "ok"}]
    (c,) = confusion.confusions(recs)
    assert (c.method, c.n, c.correct, c.failed) == ("a", 1, 1, 1)


# ------------------------------------------------------------------ rendering


def test_markdown_and_latex_contain_the_numbers():
    c = Confusion.from_pairs(HAND, method="m", mode="auto")
    md = confusion.render_markdown(c)
    assert "accuracy 60.00 %" in md and "mean-per-class accuracy 44.44 %" in md
    low_row = next(line for line in md.splitlines() if line.startswith("| Low "))
    cells = [x.strip() for x in low_row.strip("|").split("|")]
    assert cells == ["Low", "5", "0", "1", *["0"] * 8, "6", "83.33"]
    prec = next(line for line in md.splitlines() if line.startswith("| Precision"))
    cells = [x.strip() for x in prec.strip("|").split("|")]
    assert cells[1:5] == ["62.50", "100.00", "0.00", "—"]  # low, haze, rain, snow (never predicted)
    tex = confusion.render_latex(c)
    assert "\\begin{tabular}" in tex and "\\rotatebox{90}{Haze+Low+Snow}" in tex
    assert "Low & \\textbf{5} & 0 & 1 &" in tex
    assert "62.50 & 100.00 & 0.00 & --" in tex and "%" not in tex.split("\\begin")[1].replace("\\%", "")
    assert tex.count("\\\\") == 1 + 11 + 2  # header, 11 types, predicted totals, precision


def test_png_is_written_with_the_expected_size(tmp_path):
    for pairs in (HAND, [*HAND, ("haze", CLEAR)]):
        c = Confusion.from_pairs(pairs, method="m", mode="auto")
        path = confusion.render_png(c, tmp_path / f"c{len(c.cols)}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = heatmap_px = tuple(round(v * confusion.PNG_DPI) for v in confusion.heatmap_size(c))
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert abs(im.size[0] - w) <= 1 and abs(im.size[1] - h) <= 1, (im.size, heatmap_px)


def test_summary_compares_classifiers():
    a = Confusion.from_pairs(HAND, method="vlur", mode="classify", weights="demo")
    b = Confusion.from_pairs([(t, t) for t, _ in HAND], method="onerestore", mode="classify")
    md = confusion.render_summary([a, b])
    row_a = next(line for line in md.splitlines() if line.startswith("| vlur"))
    assert "60.00" in row_a and "44.44" in row_a and "†" in row_a
    row_b = next(line for line in md.splitlines() if line.startswith("| onerestore"))
    assert row_b.count("100.00") == 2
    assert "| Low " in md and "83.33 (6)" in md and "| Snow " not in md  # types without images are left out


# ------------------------------------------------------------------ through harness.run (auto and text)


def _run(data: Path, out: Path, *extra: str) -> int:
    return run_main(["--data", str(data), "--out", str(out), "--quiet", "--workers", "0", *extra])


def test_auto_vs_text_run_writes_confusion_and_misclassification(tmp_path):
    assert isinstance(MarkerRestorer(), AutoRestorer) and isinstance(MarkerClassifier(), DegradationClassifier)
    data = stamp_layout(make_layout(tmp_path / "data", n=2, size=(16, 16)))
    out = tmp_path / "out"
    assert _run(data, out, "--methods", "test-marker", "--mode", "auto,text") == 0
    recs = read_records(out / "records.jsonl")[0]
    auto = {(r["type"], r["file"]): r["predicted"] for r in recs if r["mode"] == "auto"}
    assert len(auto) == 22 and auto[("haze", "im0.png")] == "low_haze" and auto[("rain", "im0.png")] == "rain"
    assert auto[("low_snow", "im1.png")] == CLEAR
    assert all(r["predicted"] is None for r in recs if r["mode"] == "text")

    for name in ("confusion_test-marker.md", "confusion_test-marker.tex", "confusion_test-marker.png",
                 "classifiers.md", "confusion.json", "misclassification_test-marker.md"):
        assert (out / name).is_file(), name
    (c,) = confusion.confusions(recs)
    assert c.mode == "auto" and c.rows == TYPES and c.cols == (*TYPES, CLEAR)  # clear predicted: a column
    assert c.correct == 17 and c.accuracy == pytest.approx(17 / 22)
    assert c.recall["haze"] == 0 and c.recall["rain"] == 0.5 and c.count("low_snow", CLEAR) == 2
    assert c.mean_class_accuracy == pytest.approx((8 + 0.5) / 11)
    assert "accuracy 77.27 %" in (out / "confusion_test-marker.md").read_text()

    rows = {r.type: r for r in confusion.misclassification(recs, "test-marker")}
    assert list(rows)[-1] == "all" and len(rows) == 12
    assert (rows["haze"].correct.n, rows["haze"].wrong.n) == (0, 2)
    assert rows["haze"].mistaken_for == {"low_haze": 2}
    assert (rows["rain"].correct.n, rows["rain"].wrong.n) == (1, 1) and rows["rain"].accuracy == 0.5
    assert (rows["low"].correct.n, rows["low"].wrong.n) == (2, 0) and math.isnan(rows["low"].wrong.auto_psnr)
    assert (rows["all"].all.n, rows["all"].correct.n, rows["all"].wrong.n) == (22, 17, 5)
    # same type given on the correctly classified images: identical outputs; a wrong type costs PSNR
    assert rows["all"].correct.d_psnr == 0.0 and rows["all"].correct.d_ssim == 0.0
    assert rows["all"].wrong.d_psnr < -1.0 and rows["haze"].all.d_psnr < 0
    by_file = {(r["mode"], r["type"], r["file"]): r for r in recs}
    rain_wrong = by_file[("auto", "rain", "im1.png")]["psnr"] - by_file[("text", "rain", "im1.png")]["psnr"]
    assert rows["rain"].wrong.d_psnr == pytest.approx(rain_wrong)

    md = (out / "misclassification_test-marker.md").read_text()
    haze = next(line for line in md.splitlines() if line.startswith("| I Haze") and "Low" in line)
    assert "Haze+Low (2)" in haze
    low_snow = next(line for line in md.splitlines() if line.startswith("| IX Low+Snow") and "Clear" in line)
    assert "Clear (2)" in low_snow
    assert "| All images " in md and "+0.00 / +0.0000" in md


def test_text_only_run_writes_no_confusion(tmp_path):
    data = make_layout(tmp_path / "data", n=1, size=(16, 16), types=("haze", "low"))
    out = tmp_path / "out"
    assert _run(data, out, "--methods", "test-marker", "--mode", "text") == 0
    assert not list(out.glob("confusion*")) and not (out / "classifiers.md").exists()


def test_classifier_without_restore_auto_is_recorded(tmp_path):
    data = stamp_layout(make_layout(tmp_path / "data", n=1, size=(16, 16), types=("haze", "low")))
    out = tmp_path / "out"
    assert not isinstance(ClassifierOnly(), AutoRestorer)
    assert _run(data, out, "--methods", "test-marker-plain") == 0
    recs = read_records(out / "records.jsonl")[0]
    assert {r["type"]: r["predicted"] for r in recs} == {"haze": "low_haze", "low": "low"}
    assert (out / "confusion_test-marker-plain.md").is_file()
    assert not list(out.glob("misclassification_*"))  # no text-mode run to compare with


def test_rerender_cli(tmp_path, capsys):
    data = stamp_layout(make_layout(tmp_path / "data", n=1, size=(16, 16), types=("haze", "rain")))
    out = tmp_path / "out"
    assert _run(data, out, "--methods", "test-marker", "--mode", "auto,text") == 0
    before = (out / "misclassification_test-marker.md").read_text()
    (out / "misclassification_test-marker.md").unlink()
    assert confusion.main([str(out)]) == 0
    assert (out / "misclassification_test-marker.md").read_text() == before
    assert "test-marker (auto): 2 images, accuracy 50.00 %" in capsys.readouterr().out

"""`python -m harness.classify` end to end on tiny layouts: predictions, confusion outputs, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_layout
from PIL import Image

from harness import classify
from harness.confusion import PREDICTIONS_FILE, confusions
from harness.degradations import ALL_TYPES, CLEAR, TYPES
from harness.records import read_records
from harness.registry import register

CALLS = {"n": 0}


def stamp(root: Path) -> Path:
    """Top-left pixel red value = official type index × 20 (clear = 0), read back by `Marker`."""
    for t in ALL_TYPES:
        for f in sorted((root / t).glob("*.png")):
            a = np.array(Image.open(f))
            a[0, 0, 0] = ALL_TYPES.index(t) * 20
            Image.fromarray(a).save(f)
    return root


class Marker:
    """Reads the marker; calls every snow image rain and every clear image haze (it has no clear label)."""

    name = "test-marker-only"
    labels = TYPES

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        s = torch.zeros(images.shape[0], len(self.labels))
        for b, v in enumerate(images[:, 0, 0, 0].tolist()):
            t = ALL_TYPES[round(v * 255 / 20)]
            t = {"snow": "rain", CLEAR: "haze"}.get(t, t)
            s[b, self.labels.index(t)] = 1.0
        return s

    def classify(self, images: torch.Tensor) -> list[str]:
        CALLS["n"] += images.shape[0]
        return [self.labels[i] for i in self.scores(images).argmax(1).tolist()]


class WithClassifier:
    name = "test-cls"
    weights_label = "demo"

    def __init__(self):
        self.classifier = Marker()

    def to(self, device):
        return self

    def restore(self, images, degradation=None):
        raise AssertionError("harness.classify must not restore")


class WithoutClassifier(WithClassifier):
    def __init__(self):
        self.classifier = None


register("test-cls", modes=("auto", "text"), description="test classifier-driven method")(lambda o: WithClassifier())
register("test-nocls", modes=("text",), description="test method without a classifier")(
    lambda o: WithoutClassifier())


def _classify(data: Path, out: Path, *extra: str) -> int:
    return classify.main(["--data", str(data), "--out", str(out), "--quiet", "--workers", "1", *extra])


@pytest.fixture
def stamped(tmp_path) -> Path:
    return stamp(make_layout(tmp_path / "data", n=2, size=(16, 16)))


def test_classify_end_to_end_with_clear_and_resume(stamped, tmp_path):
    out = tmp_path / "cls"
    CALLS["n"] = 0
    assert _classify(stamped, out, "--methods", "test-cls", "--include-clear") == 0
    assert CALLS["n"] == 24  # 11 types × 2 + 2 clear images
    recs = read_records(out / PREDICTIONS_FILE)[0]
    assert len(recs) == 24 and all(r["status"] == "ok" and r["mode"] == "classify" for r in recs)
    pred = {(r["type"], r["file"]): r["predicted"] for r in recs}
    assert pred[("snow", "im0.png")] == "rain" and pred[("low", "im1.png")] == "low"
    assert pred[(CLEAR, "im0.png")] == "haze" and recs[0]["classifier"] == "test-marker-only"
    assert not (out / "records.jsonl").exists()

    (c,) = confusions(recs)
    assert c.rows == c.cols == (*TYPES, CLEAR)  # clear images evaluated: a clear row and column
    assert c.correct == 20 and c.accuracy == pytest.approx(20 / 24)
    assert c.accuracy_over(TYPES) == pytest.approx(20 / 22)
    assert c.mean_class_accuracy == pytest.approx(10 / 12)  # snow and clear at 0, ten types at 1
    assert c.precision["rain"] == 0.5 and c.precision["haze"] == 0.5 and np.isnan(c.precision["snow"])
    for name in ("confusion_test-cls.md", "confusion_test-cls.tex", "confusion_test-cls.png", "classifiers.md",
                 "confusion.json", "classify.json"):
        assert (out / name).is_file(), name
    md = (out / "confusion_test-cls.md").read_text()
    assert "| Clear " in md and "accuracy 83.33 %" in md and "accuracy on the 11 degraded types 90.91 %" in md
    assert "test-cls†" in (out / "classifiers.md").read_text()
    assert json.loads((out / "confusion.json").read_text())[0]["counts"][TYPES.index("snow")][2] == 2
    assert not list(out.glob("misclassification_*"))

    before = (out / PREDICTIONS_FILE).read_bytes()
    CALLS["n"] = 0
    assert _classify(stamped, out, "--methods", "test-cls", "--include-clear") == 0
    assert CALLS["n"] == 0 and (out / PREDICTIONS_FILE).read_bytes() == before  # resumed: nothing redone


def test_types_limit_and_missing_clear_partner(stamped, tmp_path):
    (stamped / "clear" / "im1.png").unlink()  # classification needs only the degraded image
    out = tmp_path / "cls"
    assert _classify(stamped, out, "--methods", "test-cls", "--types", "snow,haze", "--include-clear") == 0
    recs = read_records(out / PREDICTIONS_FILE)[0]
    assert sorted((r["type"], r["file"]) for r in recs) == [
        ("clear", "im0.png"), ("haze", "im0.png"), ("haze", "im1.png"), ("snow", "im0.png"), ("snow", "im1.png")]
    assert all(r["status"] == "ok" for r in recs)
    out2 = tmp_path / "cls2"
    assert _classify(stamped, out2, "--methods", "test-cls", "--limit", "1") == 0
    assert len(read_records(out2 / PREDICTIONS_FILE)[0]) == 11


def test_method_without_classifier_is_a_clear_error(stamped, tmp_path, capsys):
    out = tmp_path / "cls"
    assert _classify(stamped, out, "--methods", "test-nocls", "--types", "haze") == 2
    assert "method 'test-nocls' has no `.classifier`" in capsys.readouterr().err
    assert _classify(stamped, out, "--methods", "identity,test-cls", "--types", "haze") == 1
    assert "method 'identity' has no `.classifier`" in capsys.readouterr().err
    assert (out / "confusion_test-cls.md").is_file() and not (out / "confusion_identity.md").exists()
    assert _classify(stamped, out, "--methods", "nope") == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


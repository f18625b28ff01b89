"""The shipped demo weights given explicitly behave as the default, and the demo OneRestore says that its auto
mode runs VL-UR's demo scene classifier (its name, its files in the provenance)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_layout

import harness
from baselines import onerestore
from harness import registry
from harness.confusion import confusions, render_markdown
from harness.weights import WeightsError
from vlur import method as vlur_method

DEMO = vlur_method.WEIGHTS_DIR / vlur_method.DEMO_RESTORER
DEMO_SC = vlur_method.WEIGHTS_DIR / vlur_method.DEMO_SC


def test_explicit_demo_weights_find_the_classifier_like_the_default(monkeypatch):
    monkeypatch.chdir(DEMO.parent.parent.parent)  # as a user types it in the repository
    default = registry.create_restorer("vlur", registry.MethodOptions(mode="auto"))
    explicit = registry.create_restorer("vlur", registry.MethodOptions(mode="auto",
                                                                       weights=Path("vlur/weights/vlur_demo.pt")))
    assert explicit.classifier is not None
    assert explicit.weights_label == default.weights_label == "demo"
    assert [p.resolve() for p in explicit.weights_files] == [p.resolve() for p in default.weights_files]
    assert [p.resolve() for p in explicit.classifier.weights_files] == [DEMO_SC.resolve()]


def test_a_copied_demo_restorer_finds_the_classifier_its_metadata_names(tmp_path):
    copy = tmp_path / "mine.pt"
    shutil.copyfile(DEMO, copy)  # no classifier beside it: meta.sc.source names the shipped one
    r = registry.create_restorer("vlur", registry.MethodOptions(mode="auto", weights=copy))
    assert r.weights_label == "custom"
    assert [p.resolve() for p in r.weights_files] == [copy.resolve(), DEMO_SC.resolve()]
    shutil.copyfile(DEMO_SC, tmp_path / "vlur_sc_demo.pt")  # beside it, by the recorded name: preferred
    r = registry.create_restorer("vlur", registry.MethodOptions(mode="auto", weights=copy))
    assert r.classifier.weights_files == [tmp_path / "vlur_sc_demo.pt"]


def test_no_classifier_anywhere_names_where_it_looked(tmp_path):
    import torch

    ck = torch.load(DEMO, map_location="cpu", weights_only=True)
    ck["meta"]["sc"] = {"file": "sc.pt", "source": None}
    torch.save(ck, tmp_path / "model.pt")
    with pytest.raises(WeightsError, match="sc.pt"):
        registry.create_restorer("vlur", registry.MethodOptions(mode="auto", weights=tmp_path / "model.pt"))
    r = registry.create_restorer("vlur", registry.MethodOptions(mode="text", weights=tmp_path / "model.pt"))
    assert r.classifier is None


def test_demo_onerestore_names_and_lists_its_shared_classifier():
    r = registry.create_restorer("onerestore", registry.MethodOptions(mode="auto"))
    assert r.weights_label == "demo"
    assert r.classifier.name == "VL-UR scene classifier (shared)"
    assert [p.resolve() for p in r.classifier.weights_files] == [onerestore.DEMO_SC.resolve()]
    assert onerestore.DEMO_SC.resolve() == DEMO_SC.resolve()
    text = registry.create_restorer("onerestore", registry.MethodOptions(mode="text"))
    assert list(text.classifier.weights_files) == []  # text mode: the classifier does not change the outputs
    assert "shared" in registry.get_spec("onerestore").description


def test_summary_hashes_the_demo_onerestore_classifier(tmp_path):
    data = make_layout(tmp_path / "data", n=1, size=(16, 16), types=("haze",))
    res = harness.evaluate(methods=["onerestore"], modes=("auto", "text"), data=data, out=tmp_path / "out",
                           progress=False, report=False, log=lambda _m: None)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    files = {Path(p).name for p in summary["weights_sha256"]["onerestore"]}
    assert {"onerestore_demo.pt", "vlur_sc_demo.pt"} <= files
    auto = [r for r in res.records if r["mode"] == "auto"]
    assert auto and all(r["predicted"] for r in auto)


def test_confusion_outputs_name_the_classifier():
    recs = [{"method": "onerestore", "mode": "classify", "weights": "demo", "type": "haze", "file": f"{i}.png",
             "predicted": "haze", "status": "ok", "classifier": "VL-UR scene classifier (shared)"} for i in range(2)]
    (c,) = confusions(recs)
    assert c.classifier == "VL-UR scene classifier (shared)"
    assert "Classifier: VL-UR scene classifier (shared)." in render_markdown(c)
    assert c.to_json()["classifier"] == "VL-UR scene classifier (shared)"

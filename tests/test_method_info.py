"""Per-method metadata: one `MethodInfo` per registered method, README's method tables generated from them, and
`--list` showing paper and licence."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from harness import methods_doc, registry
from harness.run import main as run_main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
METHODS = list(registry.BUILTIN_MODULES)


@pytest.mark.parametrize("name", METHODS)
def test_every_builtin_method_has_complete_info(name):
    spec = registry.get_spec(name)
    info = registry.method_info(name)
    assert info is spec.info
    assert info.missing() == [], f"{name}: empty fields {info.missing()}"
    assert info.modes == spec.modes
    assert info.blind == (name not in ("onerestore", "vlur", "vlur-zeroshot"))
    for f in info.demo_weights:  # shipped files exist
        assert (ROOT / f).is_file(), f
    if info.paper is not None:
        assert 2000 < info.paper.year < 2100
    else:
        assert name == "identity"
    assert "\n" not in info.adapter  # one line


@pytest.mark.parametrize("name", METHODS)
def test_module_constants_come_from_info(name):
    module = importlib.import_module(registry.BUILTIN_MODULES[name])
    info = registry.method_info(name)
    if hasattr(module, "PUBLISHED_AT"):
        assert module.PUBLISHED_AT == info.published_at
    if hasattr(module, "CHECKPOINT_NAME"):
        assert module.CHECKPOINT_NAME == info.files[0]


def test_missing_weights_error_says_where_info_says(tmp_path):
    from harness.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError) as e:
        registry.create_restorer("promptir", registry.MethodOptions(weights_dir=tmp_path))
    assert registry.method_info("promptir").published_at in str(e.value)


def test_unknown_info_is_an_error():
    @registry.register("test-no-info", modes=("text",))
    def _factory(opts):  # pragma: no cover - never built
        raise AssertionError

    with pytest.raises(registry.UnknownMethodError, match="without info"):
        registry.method_info("test-no-info")
    with pytest.raises(ValueError, match="differ"):
        registry.register("test-bad-modes", modes=("auto",), info=registry.method_info("identity"))


def test_readme_tables_are_generated_from_info():
    assert methods_doc.check(README) == [], "README's method tables are stale: python -m harness.methods_doc " \
                                            "--write README.md"
    assert methods_doc.main(["--check", str(README)]) == 0


def test_editing_one_without_the_other_fails(tmp_path, monkeypatch):
    copy = tmp_path / "README.md"
    copy.write_text(README.read_text(encoding="utf-8"), encoding="utf-8")
    # README edited by hand: the check fails
    text = copy.read_text(encoding="utf-8")
    copy.write_text(text.replace("| `airnet` | `All.pth` |", "| `airnet` | `AllNew.pth` |"), encoding="utf-8")
    assert methods_doc.check(copy) and methods_doc.main(["--check", str(copy)]) == 1
    assert methods_doc.main(["--write", str(copy)]) == 0 and methods_doc.check(copy) == []
    # only the text between the markers was rewritten
    assert copy.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")
    # the metadata changed without README: the check fails too
    spec = registry.get_spec("airnet")
    changed = dataclasses.replace(spec, info=dataclasses.replace(spec.info, licence="MIT"))
    monkeypatch.setitem(registry._REGISTRY, "airnet", changed)
    assert any("MIT" in line for line in methods_doc.check(copy))


def test_markers_are_required(tmp_path):
    bad = tmp_path / "README.md"
    bad.write_text("# no markers\n", encoding="utf-8")
    assert methods_doc.main(["--check", str(bad)]) == 2


def test_list_shows_paper_and_licence(capsys):
    assert run_main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in METHODS:
        info = registry.method_info(name)
        assert f"licence: {info.licence}" in out
        if info.paper is not None:
            assert info.paper.title in out
    assert "shared" in out.split("onerestore", 1)[1].split("\n", 1)[0]  # the demo's classifier, said in --list

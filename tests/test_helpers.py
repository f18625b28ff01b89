"""The helpers defined once: atomic writes, TeX escaping, the checkpoint format, provenance, record errors."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import checkpoints, fileio, provenance
from harness.records import error_text
from harness.texutil import tex_escape
from harness.weights import WeightsError

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("harness", "baselines", "vlur")


def test_write_json_atomic_is_strict_and_leaves_no_temporary(tmp_path):
    path = fileio.write_json_atomic(tmp_path / "a.json", {"x": math.nan, "y": [math.inf, -math.inf, 1.5]})
    assert json.loads(path.read_text()) == {"x": None, "y": ["inf", "-inf", 1.5]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_replace_atomic_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = fileio.write_text_atomic(tmp_path / "t.txt", "old")

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fileio.replace_atomic(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_tex_escape():
    assert tex_escape("one_restore & 50% #1 {x} $") == r"one\_restore \& 50\% \#1 \{x\} \$"
    assert tex_escape("m†‡ ± — –") == r"m$^\dagger$$^\ddagger$ $\pm$ --- --"
    assert tex_escape(3) == "3"


def test_checkpoint_header_and_loader_dispatch(tmp_path):
    ck = checkpoints.make_checkpoint("toy", {"c": 2, "p": Path("/x")}, {"w": torch.ones(2)}, {"v": torch.tensor(3)})
    assert ck["format"] == checkpoints.FORMAT and ck["config"] == {"c": 2, "p": "/x"} and ck["meta"] == {"v": 3}
    path = checkpoints.save_checkpoint(ck, tmp_path / "sub" / "toy.pt")
    loaded = torch.load(path, weights_only=True)
    assert checkpoints.is_checkpoint(loaded) and checkpoints.check_checkpoint(loaded, str(path), "toy")["arch"] == "toy"
    with pytest.raises(WeightsError, match="arch 'toy', expected 'vlur'"):
        checkpoints.check_checkpoint(loaded, str(path), "vlur")
    with pytest.raises(WeightsError, match="version"):
        checkpoints.check_checkpoint({**loaded, "version": 99}, str(path))
    with pytest.raises(WeightsError, match="not a vlur-harness-checkpoint"):
        checkpoints.check_checkpoint({"state_dict": {}}, str(path))
    with pytest.raises(WeightsError, match="no loader"):
        checkpoints.restorer_from_checkpoint(loaded, path, "toy")
    module, _, name = checkpoints.LOADERS["onerestore"].partition(":")
    assert module.startswith("vlur.")  # the ablation loader lives in vlur/, named (not imported) by harness


def test_provenance_helpers():
    class Holder:
        def __init__(self):
            self.a = nn.Linear(3, 2)  # 8 parameters
            self.shared = [self.a, nn.Conv2d(1, 1, 1)]  # a again (counted once) + 2

    assert provenance.count_parameters(Holder()) == 10
    assert provenance.count_parameters(nn.Linear(4, 1)) == 5
    assert provenance.device_name("cpu").startswith("CPU (") and provenance.device_name("meta") == "meta (FLOPs only)"
    commit = provenance.git_commit()
    assert commit == "unknown" or len(commit.removesuffix("+dirty")) == 40


def test_error_text_names_file_exception_and_place():
    try:
        raise ValueError("bad pixel")
    except ValueError as e:
        text = error_text(e, Path("d/haze/1.png"))
    assert text.startswith("d/haze/1.png: ValueError: bad pixel (at test_helpers.py:")
    assert error_text(RuntimeError("x")) == "RuntimeError: x"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_layout_boundaries():
    """baselines/ never imports vlur/; the library never imports experiments/; the old colliding names are gone."""
    for path in (ROOT / "baselines").glob("*.py"):
        assert not {n for n in _imports(path) if n.split(".")[0] == "vlur"}, path
    for pkg in LIBRARY:
        for path in (ROOT / pkg).rglob("*.py"):
            assert not {n for n in _imports(path) if n.split(".")[0] == "experiments"}, path
    for gone in ("harness/cdd11.py", "harness/synth.py", "harness/reports.py"):
        assert not (ROOT / gone).exists(), gone

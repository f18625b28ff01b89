"""`python -m harness.restore`: one image or a folder, through the same model-loading path as evaluation."""

from __future__ import annotations

import numpy as np
from PIL import Image

from harness.restore import main


def test_identity_restores_a_file_and_a_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    a = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    Image.fromarray(a).save(src / "a.png")
    Image.fromarray(a[::-1]).save(src / "b.jpg", quality=95)
    assert main(["--method", "identity", str(src / "a.png"), str(tmp_path / "one.png"), "--quiet"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), a)
    assert main(["--method", "identity", str(src), str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "b.png")), np.asarray(Image.open(src / "b.jpg")))
    assert "one.png" in capsys.readouterr().out


def test_demo_onerestore_text_mode_changes_the_image(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    assert main(["--method", "onerestore", "--type", "haze", str(tmp_path / "a.png"), str(tmp_path / "o.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.shape == a.shape and not np.array_equal(out, a)


def test_bad_input_and_missing_weights_are_messages(tmp_path, capsys):
    assert main(["--method", "identity", str(tmp_path / "nothing.png"), str(tmp_path / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["--method", "promptir", "--weights-dir", str(tmp_path), str(tmp_path / "a.png"),
                 str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "model.ckpt" in err and "Traceback" not in err

"""VL-UR training CLI (2 steps end to end, exact --resume, the OneRestore ablation) and the harness method."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from conftest import make_layout

from harness.degradations import TYPES
from harness.protocol import AutoRestorer, Restorer
from harness.registry import MethodOptions, create_restorer
from harness.weights import WeightsError
from vlur import method as vlur_method
from vlur import train
from vlur.classifier import TINY_CLIP, SceneClassifier

COMMON = ["--channel", "8", "--heads", "2", "--patch", "36", "--batch", "2", "--negatives", "2", "--seed", "3",
          "--epoch-steps", "1", "--val-crop", "0", "--val-max", "4", "--no-progress", "--lr-decay-every", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("vlur") / "data", n=3, size=(40, 46))


@pytest.fixture(scope="module")
def sc_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    sc = SceneClassifier.zero_shot(TINY_CLIP, "none")
    path = tmp_path_factory.mktemp("sc") / "my_sc.pt"
    torch.save(sc.to_checkpoint({"steps": 0}), path)
    return path


def _run(data: Path, out: Path, *extra: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train.main(["--data", str(data), "--out", str(out), *COMMON, *extra]) == 0


def _run_raising(data: Path, out: Path, *extra: str) -> None:
    """The trainer without the command-line frame: refusals raise SystemExit(message) for pytest.raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train._main(train.parse_args(["--data", str(data), "--out", str(out), *COMMON, *extra]))


def test_two_steps_end_to_end_and_exact_resume(data, sc_file, tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    _run(data, full, "--steps", "2", "--sc", str(sc_file))
    assert "VLUR-TRAIN DONE arch=vlur steps=2/2" in capsys.readouterr().out
    ck = torch.load(full / "model.pt", map_location="cpu", weights_only=True)
    assert ck["format"] == "vlur-harness-checkpoint" and ck["version"] == 1 and ck["arch"] == "vlur"
    meta = ck["meta"]
    assert meta["steps"] == 2 and meta["seed"] == 3 and meta["vgg"] in ("imagenet", "random-seeded")
    assert meta["data_fingerprint"] and meta["git_commit"] and len(meta["history"]) == 2
    assert "train_state" not in ck and (full / "sc.pt").is_file() and (full / "train.log").is_file()
    assert "epoch 2 step 2/2" in (full / "train.log").read_text()

    _run(data, part, "--steps", "1", "--sc", str(sc_file))
    _run(data, part, "--steps", "2", "--sc", str(sc_file), "--resume")
    resumed = torch.load(part / "model.pt", map_location="cpu", weights_only=True)
    assert resumed["meta"]["steps"] == 2
    for k, v in ck["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    assert "resumed from" in (part / "train.log").read_text()

    with pytest.raises(SystemExit, match="settings differ"):
        _run_raising(data, part, "--steps", "3", "--sc", str(sc_file), "--resume", "--patch", "40")
    capsys.readouterr()
    argv = ["--data", str(data), "--out", str(part), *COMMON, "--steps", "3", "--sc", str(sc_file), "--resume",
            "--patch", "40"]
    assert train.main(argv) == 2  # the command line: a message and exit code 2, no traceback
    assert "error: --resume: settings differ" in capsys.readouterr().err


def test_cdrl_every_k_steps_is_recorded_and_changes_training(data, sc_file, tmp_path):
    _run(data, tmp_path / "k1", "--steps", "2", "--sc", str(sc_file))
    _run(data, tmp_path / "k2", "--steps", "2", "--sc", str(sc_file), "--cdrl-every", "2")
    k1, k2 = (torch.load(tmp_path / d / "model.pt", map_location="cpu", weights_only=True) for d in ("k1", "k2"))
    assert k1["meta"]["loss"] == "0.6*SmoothL1 + 0.3*(1-MS-SSIM) + 0.1*CDRL"
    assert k2["meta"]["loss"] == "0.6*SmoothL1 + 0.3*(1-MS-SSIM) + 0.1*CDRL on one step in 2"
    assert k2["meta"]["settings"]["cdrl_every"] == 2
    history = k2["meta"]["history"]  # one step per epoch: step 0 had CDRL, step 1 did not
    assert not math.isnan(history[0]["cdrl"]) and math.isnan(history[1]["cdrl"])
    # step 0 is identical (CDRL on both), step 1 differs (no CDRL in k2)
    assert k1["meta"]["history"][0]["loss"] == pytest.approx(history[0]["loss"])
    assert any(not torch.equal(v, k2["state_dict"][k]) for k, v in k1["state_dict"].items())


def test_redraws_are_fresh_seeded_syntheses_of_each_scene(data):
    from harness.data import synth

    base = train.PairData(data)
    n0 = len(base)
    added = base.add_redraws(2, seed=5)
    assert added == 3 * 2 * len(TYPES) and len(base) == n0 + added  # 3 scenes × 2 draws × 11 types
    assert set(base.by_scene) == {f"im{i}.png" for i in range(3)} | {f"im{i}.png#r{k}" for i in range(3)
                                                                     for k in (1, 2)}
    again = train.PairData(data)
    again.add_redraws(2, seed=5)
    other = train.PairData(data)
    other.add_redraws(1, seed=6)
    for s in base.samples[n0:]:
        assert s.clear == data / "clear" / s.name.split("#")[0]  # paired with the scene's own clear image
        img = base.image(s.degraded)
        assert torch.equal(img, again.image(s.degraded))  # deterministic in the seed
        # exactly what the synthesis makes of the clean image under that name
        clean = base.image(s.clear).permute(1, 2, 0).numpy()
        want = synth.degrade(synth.Scene.from_image(clean), s.type, 5, s.name)
        assert torch.equal(img, torch.from_numpy(want).permute(2, 0, 1))
    r1 = base.image(base.by_scene["im0.png#r1"]["rain"])
    assert not torch.equal(r1, base.image(base.by_scene["im0.png#r2"]["rain"]))  # draws differ
    assert not torch.equal(r1, other.image(other.by_scene["im0.png#r1"]["rain"]))  # seeds differ
    # negatives (drawn from by_scene[name]) of a redrawn sample come from the same draw only
    draw = [s for s in base.samples if s.name == "im1.png#r2"]
    assert set(base.by_scene["im1.png#r2"].values()) == {s.degraded for s in draw} and len(draw) == len(TYPES)
    idx = [base.samples.index(s) for s in draw[:2]]
    _, _, neg, _ = train.make_batch(base, idx, seed=0, step=0, patch=36, negatives=2)
    assert neg is not None and neg.shape == (2, 2, 3, 36, 36)


def test_redraws_setting_recorded_and_checked_on_resume(data, sc_file, tmp_path):
    _run(data, tmp_path / "r", "--steps", "1", "--sc", str(sc_file), "--redraws", "1")
    ck = torch.load(tmp_path / "r" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["meta"]["settings"]["redraws"] == 1
    assert "redraws: 22 pairs synthesised" in (tmp_path / "r" / "train.log").read_text()
    with pytest.raises(SystemExit, match="redraws saved 1 now 0"):
        _run_raising(data, tmp_path / "r", "--steps", "2", "--sc", str(sc_file), "--resume")


def test_smooth_l1_beta_recorded_changes_the_loss_and_checked_on_resume(data, sc_file, tmp_path):
    _run(data, tmp_path / "b1", "--steps", "1", "--sc", str(sc_file))
    _run(data, tmp_path / "b", "--steps", "1", "--sc", str(sc_file), "--smooth-l1-beta", "0.01")
    b1, b = (torch.load(tmp_path / d / "last.pt", map_location="cpu", weights_only=True) for d in ("b1", "b"))
    assert b["meta"]["settings"]["smooth_l1_beta"] == 0.01
    assert b["meta"]["loss"] == "0.6*SmoothL1(beta=0.01) + 0.3*(1-MS-SSIM) + 0.1*CDRL"
    # same first batch and init: only the SmoothL1 term differs, and it is larger with the small beta
    h1, h = b1["meta"]["history"][0], b["meta"]["history"][0]
    assert h["ms_ssim"] == pytest.approx(h1["ms_ssim"]) and h["smooth_l1"] > 5 * h1["smooth_l1"]
    with pytest.raises(SystemExit, match="smooth_l1_beta saved 0.01 now 1.0"):
        _run_raising(data, tmp_path / "b", "--steps", "2", "--sc", str(sc_file), "--resume")


def test_permute_rgb_reorders_the_channels_of_all_images_of_a_sample_alike(data):
    base = train.PairData(data)
    idx = [0, 5, 17, 30]
    plain = train.make_batch(base, idx, seed=1, step=4, patch=36, negatives=2)
    perm = train.make_batch(base, idx, seed=1, step=4, patch=36, negatives=2, permute_rgb=True)
    assert perm[3] == plain[3]  # same samples and types
    orders = set()
    for i in range(len(idx)):
        # same crop, flip and negatives as without it: each channel of the permuted sample is one of the plain ones
        order = [next(c for c in range(3) if torch.equal(perm[1][i, k], plain[1][i, c])) for k in range(3)]
        assert sorted(order) == [0, 1, 2]
        assert torch.equal(perm[0][i], plain[0][i, order]) and torch.equal(perm[2][i], plain[2][i][:, order])
        orders.add(tuple(order))
    assert len(orders) > 1  # drawn per sample (this seed and step draw more than one order)
    again = train.make_batch(base, idx, seed=1, step=4, patch=36, negatives=2, permute_rgb=True)
    assert all(torch.equal(a, b) for a, b in zip(perm[:3], again[:3]))  # seeded


def test_permute_rgb_recorded_and_checked_on_resume(data, sc_file, tmp_path):
    _run(data, tmp_path / "p", "--steps", "1", "--sc", str(sc_file), "--permute-rgb")
    ck = torch.load(tmp_path / "p" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["meta"]["settings"]["permute_rgb"] is True
    with pytest.raises(SystemExit, match="permute_rgb saved True now False"):
        _run_raising(data, tmp_path / "p", "--steps", "2", "--sc", str(sc_file), "--resume")


def test_learning_rate_schedules_against_closed_forms():
    # step: halved every 3 steps
    assert [train.learning_rate(s, 10, 1e-3, "step", 0.5, 3) for s in (0, 2, 3, 6, 9)] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4])
    # cosine: base at step 0, half at the middle, 0 after the last step
    assert train.learning_rate(0, 10, 1e-3, "cosine", 0.5, 3) == pytest.approx(1e-3)
    assert train.learning_rate(5, 10, 1e-3, "cosine", 0.5, 3) == pytest.approx(5e-4)
    last = 1e-3 * 0.5 * (1 + math.cos(0.9 * math.pi))
    assert train.learning_rate(9, 10, 1e-3, "cosine", 0.5, 3) == pytest.approx(last)
    with pytest.raises(ValueError, match="schedule"):
        train.learning_rate(0, 10, 1e-3, "linear", 0.5, 3)


def test_cosine_schedule_drives_the_logged_lr_and_is_checked_on_resume(data, sc_file, tmp_path):
    _run(data, tmp_path / "c", "--steps", "2", "--sc", str(sc_file), "--schedule", "cosine", "--lr", "1e-3")
    ck = torch.load(tmp_path / "c" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["meta"]["settings"]["schedule"] == "cosine"
    assert [h["lr"] for h in ck["meta"]["history"]] == pytest.approx([1e-3, 5e-4])  # one step per epoch here
    with pytest.raises(SystemExit, match="schedule saved 'cosine' now 'step'"):
        _run_raising(data, tmp_path / "c", "--steps", "3", "--sc", str(sc_file), "--resume")


def test_method_from_trained_checkpoint(data, sc_file, tmp_path):
    out = tmp_path / "run"
    _run(data, out, "--steps", "1", "--sc", str(sc_file))
    m = create_restorer("vlur", MethodOptions(mode="auto", weights=out / "model.pt"))
    assert isinstance(m, Restorer) and isinstance(m, AutoRestorer)
    assert m.weights_label == "custom" and [p.name for p in m.weights_files] == ["model.pt", "sc.pt"]
    x = torch.rand(2, 3, 27, 31)
    restored, types = m.restore_auto(x)
    assert restored.shape == x.shape and len(types) == 2 and set(types) <= set(TYPES)
    with torch.no_grad():  # auto mode = the SC's prediction driving the restorer
        assert torch.allclose(restored, m.restorer.forward_types(x, types))
        assert torch.allclose(m.restorer.text_features, m.classifier.text_features)
    text = m.restore(x, ["haze", "snow"])
    assert text.shape == x.shape
    # text mode does not use the classifier, so its file is not part of the weights fingerprint
    tm = create_restorer("vlur", MethodOptions(mode="text", weights=out / "model.pt"))
    assert [p.name for p in tm.weights_files] == ["model.pt"]
    (out / "model.pt").rename(out / "renamed.pt")
    t = create_restorer("vlur", MethodOptions(mode="auto", weights=out / "renamed.pt"))  # finds out/sc.pt
    assert t.classifier is not None
    (out / "sc.pt").unlink()
    t = create_restorer("vlur", MethodOptions(mode="auto", weights=out / "renamed.pt"))  # the recorded source
    assert t.classifier is not None and [p.name for p in t.weights_files] == ["renamed.pt", sc_file.name]
    hidden = sc_file.with_name("hidden.pt")
    sc_file.rename(hidden)
    try:
        t = create_restorer("vlur", MethodOptions(mode="text", weights=out / "renamed.pt"))  # text: no SC needed
        assert t.classifier is None and t.restore(x, ["rain", "low"]).shape == x.shape
        with pytest.raises(WeightsError, match="no scene classifier"):
            create_restorer("vlur", MethodOptions(mode="auto", weights=out / "renamed.pt"))
    finally:
        hidden.rename(sc_file)


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="nothing.pt"):
        create_restorer("vlur", MethodOptions(weights=tmp_path / "nothing.pt"))
    monkeypatch.setattr(vlur_method, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError, match="vlur_demo.pt"):
        create_restorer("vlur", MethodOptions())


def test_random_weights_build_the_published_width_without_files(tmp_path, monkeypatch):
    """`random_weights`: VL-UR at its default width + a random CLIP SC (the tiny CLIP here instead of ViT-B/32,
    which takes ~10 s to build on two cores); seeded, the caller's RNG untouched, no file read."""
    monkeypatch.setattr(vlur_method, "CLIP_ARCH", TINY_CLIP)
    monkeypatch.setattr(vlur_method, "WEIGHTS_DIR", tmp_path)  # the demo files are not needed
    before = torch.random.get_rng_state()
    m = create_restorer("vlur", MethodOptions(random_weights=True))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert m.weights_label == "random" and m.weights_files == [] and m.classifier is not None
    assert m.restorer.config["channel"] == 32 and m.restorer.config["attention"] == "pgca"
    assert torch.equal(m.restorer.text_features, m.classifier.text_features)
    again = create_restorer("vlur", MethodOptions(random_weights=True, mode="text"))
    assert all(torch.equal(v, again.restorer.state_dict()[k]) for k, v in m.restorer.state_dict().items())
    x = torch.rand(1, 3, 16, 16)
    restored, types = m.restore_auto(x)
    assert restored.shape == x.shape and set(types) <= set(TYPES)
    assert again.restore(x, ["haze"]).shape == x.shape


def test_onerestore_ablation_uses_same_pipeline(data, sc_file, tmp_path, capsys):
    pytest.importorskip("baselines.onerestore")
    out = tmp_path / "or"
    _run(data, out, "--steps", "1", "--sc", str(sc_file), "--arch", "onerestore", "--heads", "8")
    assert "arch=onerestore" in capsys.readouterr().out
    ck = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert ck["arch"] == "onerestore" and ck["config"]["channel"] == 8
    assert ck["type_table"].shape == (12, 324) and not ck["type_table"][0].any()
    from baselines.onerestore import OneRestore

    model = OneRestore(channel=8)
    model.load_state_dict(ck["state_dict"])
    # the checkpoint runs as the registered onerestore method: type table in text mode, the SC in auto mode
    from harness.registry import MethodOptions, create_restorer

    r = create_restorer("onerestore", MethodOptions(weights=out / "model.pt"))
    x = torch.rand(1, 3, 40, 56)
    assert r.weights_label == "custom" and (out / "sc.pt") in r.weights_files
    text = create_restorer("onerestore", MethodOptions(mode="text", weights=out / "model.pt"))
    assert text.weights_files == [out / "model.pt"]  # the type table is in the checkpoint itself
    assert r.restore(x, ["haze"]).shape == x.shape
    y, pred = r.restore_auto(x)
    assert pred[0] in r.classifier.labels
    assert torch.allclose(y, r.restore(x, pred), atol=1e-6)

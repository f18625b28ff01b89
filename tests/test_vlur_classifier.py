"""VL-UR Scene Classifier: prompts, offline tokenisation, zero-shot rule, weights handling, training CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import make_layout

from harness.degradations import TYPES
from harness.protocol import DegradationClassifier
from vlur import classifier as clf
from vlur.classifier import (
    TINY_CLIP,
    ClipWeightsError,
    SceneClassifier,
    build_clip,
    create_classifier,
    load_classifier,
    prompts,
    tokenize,
)


@pytest.fixture(scope="module")
def tiny_sc() -> SceneClassifier:
    torch.manual_seed(0)
    return SceneClassifier.zero_shot(TINY_CLIP, "none").eval()


def test_prompts():
    p = prompts()
    assert len(p) == 11
    assert p[TYPES.index("low")] == "The image has low light degradation"
    assert p[TYPES.index("low_haze_snow")] == "The image has haze, low light and snow degradation"


def test_prompts_tokenised_offline(monkeypatch):
    import open_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vocab = Path(open_clip.tokenizer.default_bpe())
    assert vocab.is_file() and Path(open_clip.__file__).parent in vocab.parents  # ships in the package
    tok = tokenize(prompts(), TINY_CLIP)
    assert tok.shape == (11, clf.TINY_CLIP_CONFIG["text_cfg"]["context_length"])
    assert (tok[:, 0] == 49406).all()  # start-of-text
    assert len({tuple(r.tolist()) for r in tok}) == 11  # all prompts distinct


def test_zero_shot_rule_on_a_known_answer(tiny_sc):
    """Eqs. 1–3: with F_text rows set to the images' own features, argmax picks the planted type."""
    sc = SceneClassifier(tiny_sc.visual, tiny_sc.text_features.clone(), tiny_sc.logit_scale, tiny_sc.config).eval()
    images = torch.stack([torch.zeros(3, 40, 60), torch.ones(3, 40, 60),
                          torch.linspace(0, 1, 40 * 60 * 3).view(3, 40, 60)])
    targets = ["rain", "low_haze", "snow"]
    with torch.no_grad():
        feats = sc.encode_image(images)
        table = torch.nn.functional.normalize(torch.randn(11, feats.shape[1]), dim=-1) * 0.0
        for f, t in zip(feats, targets):
            table[TYPES.index(t)] = f
        sc.text_features.copy_(table)
    assert isinstance(sc, DegradationClassifier)
    assert sc.classify(images) == targets
    s = sc.scores(images)
    assert s.shape == (3, 11) and torch.allclose(s.sum(1), torch.ones(3))
    expected = (sc.logit_scale.exp() * feats @ table.t()).softmax(-1)
    assert torch.allclose(s, expected, atol=1e-6)


def test_openai_offline_fails_clearly(monkeypatch):
    monkeypatch.setattr(clf, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(clf, "_cached_tag_file", lambda *a, **k: None)
    with pytest.raises(ClipWeightsError, match="local CLIP checkpoint") as e:
        build_clip("ViT-B-32", "openai")
    assert "--pretrained" in str(e.value) and ".safetensors" in str(e.value)


def test_hub_failure_is_explained(monkeypatch):
    import open_clip

    monkeypatch.setattr(clf, "_hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(clf, "_cached_tag_file", lambda *a, **k: None)

    def boom(*a, **k):
        raise RuntimeError("Failed to download weights for tag 'openai'")

    monkeypatch.setattr(open_clip, "create_model", boom)
    with pytest.raises(ClipWeightsError, match="pass its path"):
        build_clip("ViT-B-32", "openai")
    with pytest.raises(ClipWeightsError, match="neither an existing file"):
        build_clip("ViT-B-32", "no-such-tag")


def test_local_clip_file_loads(tmp_path):
    torch.manual_seed(5)
    model, _ = build_clip(TINY_CLIP, "none")
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    again, info = build_clip(TINY_CLIP, str(path))
    assert info["pretrained"] == str(path)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_sc_checkpoint_round_trip(tmp_path, tiny_sc):
    path = tmp_path / "sc.pt"
    torch.save(tiny_sc.to_checkpoint({"steps": 0}), path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert set(obj["state_dict"]) == {k for k in tiny_sc.state_dict()}
    assert not any(k.startswith("transformer.") for k in obj["state_dict"])  # no text tower
    sc = load_classifier(path)
    x = torch.rand(2, 3, 33, 47)
    assert torch.allclose(sc.scores(x), tiny_sc.scores(x), atol=1e-6)
    assert isinstance(create_classifier(pretrained=str(path)), SceneClassifier)


def test_train_classifier_cli(tmp_path):
    from vlur import train_classifier

    root = make_layout(tmp_path / "data", n=2, size=(30, 34))
    out = tmp_path / "sc.pt"
    assert train_classifier.main(["--data", str(root), "--out", str(out), "--steps", "2", "--batch", "4",
                                  "--no-progress", "--val-fraction", "0.5", "--eval-every", "1"]) == 0
    assert out.stat().st_size < 10e6
    sc = load_classifier(out)
    assert sc.meta["steps"] == 2 and len(sc.meta["history"]) == 2
    assert sc.meta["freeze_text"] is True  # --text auto with --pretrained none
    assert sc.text_features.shape == (11, clf.TINY_CLIP_CONFIG["embed_dim"])
    assert len(sc.classify(torch.rand(1, 3, 30, 34))) == 1


def test_train_classifier_redraws_add_labelled_images(tmp_path):
    from vlur import train_classifier

    root = make_layout(tmp_path / "data", n=2, size=(30, 34))
    x0, y0, _ = train_classifier.load_images(root, None, {"im1.png"}, 24, crop=False)
    x2, y2, _ = train_classifier.load_images(root, None, {"im1.png"}, 24, crop=False, redraws=2, seed=1)
    assert len(x0) == 11 and len(x2) == 11 * 3
    assert torch.equal(y2[:11], y0) and sorted(y2[11:].tolist()) == sorted(list(range(11)) * 2)
    assert all(min(x.shape[-2:]) == 24 for x in x2)
    assert not torch.equal(x2[11], x2[22])  # the two draws differ


def test_classifier_lr_schedules():
    from vlur.train_classifier import learning_rate

    assert [learning_rate(k, 10, 1.0, 4) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]  # warm-up
    assert learning_rate(9, 10, 1.0, 4) == 1.0  # constant
    cos = [learning_rate(k, 10, 1.0, 4, "cosine") for k in range(10)]
    assert cos[:3] == [0.25, 0.5, 0.75]
    # after the warm-up: 0.5·(1 + cos(π·(k − 3)/6)) for k = 4..9, ending at 0
    assert cos[4:] == pytest.approx([0.5 * (1 + math.cos(math.pi * j / 6)) for j in range(1, 7)])
    assert cos[-1] == pytest.approx(0.0, abs=1e-12) and all(a >= b for a, b in zip(cos[3:], cos[4:], strict=False))
    with pytest.raises(ValueError, match="schedule"):
        learning_rate(5, 10, 1.0, 4, "step")


def test_classifier_permute_rgb_augment_reorders_channels_only():
    import numpy as np

    from vlur.train_classifier import augment

    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 20, 26), dtype=torch.uint8, generator=gen) for _ in range(6)]
    plain = augment(images, np.random.default_rng(7), 16)
    perm = augment(images, np.random.default_rng(7), 16, permute_rgb=True)
    assert perm.shape == plain.shape == (6, 3, 16, 16)
    # the first image's crop and flip are drawn before any permutation: same pixels, channels reordered
    order = [next(c for c in range(3) if torch.equal(perm[0, k], plain[0, c])) for k in range(3)]
    assert sorted(order) == [0, 1, 2]
    assert not torch.equal(perm, plain)
    assert torch.equal(perm, augment(images, np.random.default_rng(7), 16, permute_rgb=True))  # seeded

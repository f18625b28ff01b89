"""The classifier-only zero-shot VL-UR scene classifier through the registry."""

from __future__ import annotations

import pytest
import torch

from harness.registry import MethodOptions, create_restorer, get_spec
from harness.weights import WeightsError
from vlur import method as vlur_method
from vlur.classifier import TINY_CLIP


def test_zero_shot_is_classifier_only_and_offline_error_is_clear(tmp_path, monkeypatch):
    assert get_spec("vlur-zeroshot").modes == ()  # harness.run skips it; harness.classify uses .classifier
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as e:
        create_restorer("vlur-zeroshot", MethodOptions())
    assert "local CLIP checkpoint" in str(e.value)
    with pytest.raises((WeightsError, FileNotFoundError, RuntimeError)) as e:
        create_restorer("vlur-zeroshot", MethodOptions(weights=tmp_path / "missing.pt"))
    assert "missing.pt" in str(e.value)


def test_zero_shot_random_weights_need_no_file(monkeypatch):
    monkeypatch.setattr(vlur_method, "CLIP_ARCH", TINY_CLIP)  # ViT-B/32 itself takes ~10 s to build
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = torch.random.get_rng_state()
    m = create_restorer("vlur-zeroshot", MethodOptions(random_weights=True))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert m.weights_label == "random" and m.weights_files == []
    assert len(m.classifier.classify(torch.rand(2, 3, 20, 24))) == 2

"""The classifier-only zero-shot VL-UR scene classifier through the registry."""

from __future__ import annotations

import pytest

from harness.registry import MethodOptions, create_restorer, get_spec
from harness.weights import WeightsError


def test_zero_shot_is_classifier_only_and_offline_error_is_clear(tmp_path, monkeypatch):
    assert get_spec("vlur-zeroshot").modes == ()  # harness.run skips it; harness.classify uses .classifier
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as e:
        create_restorer("vlur-zeroshot", MethodOptions())
    assert "local CLIP checkpoint" in str(e.value)
    with pytest.raises((WeightsError, FileNotFoundError, RuntimeError)) as e:
        create_restorer("vlur-zeroshot", MethodOptions(weights=tmp_path / "missing.pt"))
    assert "missing.pt" in str(e.value)

"""VL-UR Scene Restorer: shapes, gradients, the PGCA formula, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.checkpoints import check_checkpoint, make_checkpoint
from harness.degradations import TYPES
from vlur.restorer import (
    KEY_SIZE,
    PGCA,
    VLURRestorer,
    restorer_from_checkpoint,
)

TEXT_DIM = 16


def tiny(attention: str = "pgca", seed: int = 0) -> VLURRestorer:
    torch.manual_seed(seed)
    return VLURRestorer(channel=8, heads=2, text_dim=TEXT_DIM, attention=attention,
                        text_features=torch.randn(len(TYPES), TEXT_DIM))


@pytest.mark.parametrize("attention", ["pgca", "cross"])
@pytest.mark.parametrize("shape", [(1, 3, 37, 29), (2, 3, 19, 45), (1, 3, 5, 7)])
def test_odd_sizes(attention, shape):
    model = tiny(attention).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model.forward_types(x, ["haze"] * shape[0])
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_identity_at_zero_output_conv():
    """Eq. 5: I_r = C(features) + I_d — with the output conv zeroed, the input comes back unchanged."""
    model = tiny()
    with torch.no_grad():
        model.out_conv.weight.zero_()
        x = torch.rand(1, 3, 21, 17)
        assert torch.allclose(model.forward_types(x, ["rain"]), x, atol=1e-6)


@pytest.mark.parametrize("attention", ["pgca", "cross"])
def test_gradients_reach_every_parameter(attention):
    model = tiny(attention)
    x = torch.rand(2, 3, 24, 20)
    out = model.forward_types(x, ["low", "snow"])
    (out - x.flip(-1)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def _pgca_by_formula(m: PGCA, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Eq. 6 written out with einsum: out = V·(softmax(K_I Q_I τ) + softmax(K_I Q_T τ)), then project."""
    b, c, h, w = x.shape
    heads, cp = m.heads, c // m.heads
    if m.attention == "pgca":
        q_i, k_i, v = m.qkv_dwconv(m.qkv(x)).chunk(3, dim=1)
    else:
        q_i = None
        k_i, v = m.kv_dwconv(m.kv(x)).chunk(2, dim=1)
    tau = m.temperature.view(heads)
    v = v.reshape(b, heads, cp, h * w)
    k_img = k_i.reshape(b, heads, cp, h * w)
    k_img = k_img / k_img.norm(dim=-1, keepdim=True)
    k_small = F.interpolate(k_i, size=(KEY_SIZE, KEY_SIZE), mode="bilinear", align_corners=False, antialias=False)
    k_small = k_small.reshape(b, heads, cp, KEY_SIZE * KEY_SIZE)
    k_small = k_small / k_small.norm(dim=-1, keepdim=True)
    q_t = text @ m.q.weight.t()  # b × 324
    q_t = q_t / q_t.norm(dim=-1, keepdim=True)
    # every output channel i of every head uses the same text query
    a_t = torch.einsum("bp,bhjp->bhj", q_t, k_small) * tau.view(1, heads, 1)
    a_t = a_t.softmax(-1).unsqueeze(2).expand(b, heads, cp, cp)
    a = a_t
    if q_i is not None:
        q_img = q_i.reshape(b, heads, cp, h * w)
        q_img = q_img / q_img.norm(dim=-1, keepdim=True)
        a_i = (torch.einsum("bhin,bhjn->bhij", q_img, k_img) * tau.view(1, heads, 1, 1)).softmax(-1)
        a = a_i + a_t
    out = torch.einsum("bhij,bhjn->bhin", a, v).reshape(b, c, h, w)
    return F.conv2d(out, m.project_out.weight)


@pytest.mark.parametrize("attention", ["pgca", "cross"])
def test_pgca_equals_formula(attention):
    torch.manual_seed(1)
    m = PGCA(dim=4, heads=2, text_dim=3, attention=attention)
    with torch.no_grad():
        m.temperature.copy_(torch.tensor([0.7, 2.5]).view(2, 1, 1))
    x = torch.randn(2, 4, 5, 6)
    t = torch.randn(2, 3)
    assert torch.allclose(m(x, t), _pgca_by_formula(m, x, t), atol=1e-5)


def test_pgca_hand_checked_uniform_case():
    """τ = 0 makes both softmaxes uniform (1/c): out_i = 2·mean_j V_j per head (cross: 1·mean)."""
    torch.manual_seed(2)
    for attention, factor in (("pgca", 2.0), ("cross", 1.0)):
        m = PGCA(dim=4, heads=2, text_dim=3, attention=attention)
        with torch.no_grad():
            m.temperature.zero_()
            m.project_out.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        x = torch.randn(1, 4, 3, 5)
        conv = m.qkv_dwconv(m.qkv(x)) if attention == "pgca" else m.kv_dwconv(m.kv(x))
        v = conv.chunk(3 if attention == "pgca" else 2, dim=1)[-1]
        expected = torch.cat([factor * v[:, :2].mean(1, keepdim=True).expand(1, 2, 3, 5),
                              factor * v[:, 2:].mean(1, keepdim=True).expand(1, 2, 3, 5)], dim=1)
        assert torch.allclose(m(x, torch.randn(1, 3)), expected, atol=1e-6)


def test_text_changes_output_and_unknown_type():
    model = tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        a, b = model.forward_types(x, ["haze"]), model.forward_types(x, ["low_rain"])
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="unknown degradation type"):
        model.text_for(["fog"])


def test_checkpoint_round_trip(tmp_path):
    model = tiny("cross", seed=3).eval()
    ck = make_checkpoint("vlur", model.config, model.state_dict(), {"steps": 0, "seed": 3, "vgg": "random-seeded"})
    path = tmp_path / "r.pt"
    torch.save(ck, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    check_checkpoint(loaded, str(path), "vlur")
    again = restorer_from_checkpoint(loaded, str(path))
    x = torch.rand(1, 3, 23, 19)
    with torch.no_grad():
        assert torch.equal(model.forward_types(x, ["snow"]), again.forward_types(x, ["snow"]))
    assert again.config == model.config

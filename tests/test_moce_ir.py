"""MoCE-IR re-implementation: state_dict vs the official manifest, output vs the official test vector (with the
stored routing noise, and without noise), per-image expert routing in batches, the noise hooks, checkpoint
formats, the adapter and the registered method. CPU, offline, one model build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from baseline_checks import (
    assert_close_to_reference,
    assert_matches_manifest,
    assert_needs_weights,
    assert_odd_size_adapter,
    assert_official_restorer,
    assert_pads_to_multiple,
    assert_reads_checkpoint_with_objects,
    assert_reads_state_dict,
    assert_refuses_garbage,
    assert_restores_finite,
    assert_same_weights,
    assert_unknown_method_arg,
    case_meta,
    fill,
    filled,
    lightning_checkpoint,
    missing_file_message,
    module_prefixed,
    one_thread,  # noqa: F401 - autouse: one intra-op thread for the module
    random_restorer,
    rel_err,
    wrong_file_message,
)

import baselines.moce_ir  # noqa: F401 - registers "moce-ir" (registry entries for new modules come later)
from baselines.moce_ir import (
    CHECKPOINT_NAME,
    OFFICIAL_NOISE_STD,
    PUBLISHED_AT,
    FFTAttention,
    MoCEIR,
    MoCEIRRestorer,
    ReplayNoise,
    load_moce_ir,
    moce_ir_state_dict,
    pad_to_multiple,
)
from harness.registry import MethodArgError, MethodOptions, create_restorer, get_spec
from harness.weights import MissingWeightsError

DATA = Path(__file__).parent / "data"
CASE = "moce_ir_case0"


@pytest.fixture(scope="module")
def case() -> dict:
    return torch.load(DATA / f"{CASE}.pt", weights_only=True)


@pytest.fixture(scope="module")
def model(case) -> MoCEIR:
    """MoCE-IR-S with the deterministic test weights of the case, built once for the module."""
    meta = case_meta(CASE)
    return filled(MoCEIR().eval(), salt=meta["salt"], scale=meta.get("fill_scale"))


@pytest.fixture()
def noise_settings(model):
    """Restore the shared model's routing-noise settings after a test that changes them."""
    yield model
    model.noise_std = OFFICIAL_NOISE_STD
    model.noise_source = None


def _forcing_noise(choices: list[list[int]]):
    """A noise source making router call j send image b to expert choices[j][b] (huge one-hot draws)."""
    slabs = [torch.nn.functional.one_hot(torch.tensor(c), 4).float() * 400.0 for c in choices]
    return ReplayNoise(slabs)


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "moce_ir.manifest.json", n_keys=1262, n_params=11_477_752)
    assert sum(b.numel() for b in model.buffers()) == 40  # routers' `complexity`, training loss only


def _tiny(**kwargs) -> MoCEIR:
    return MoCEIR(dim=8, num_blocks=(1, 1, 1, 1), num_dec_blocks=(1, 1, 1), num_refinement_blocks=1, **kwargs)


def test_fresh_model_defaults():
    net = _tiny()
    assert net.noise_std == OFFICIAL_NOISE_STD and net.noise_source is None
    assert len(net.routers()) == 3
    r = net.routers()[0]
    torch.testing.assert_close(r.complexity.max(), torch.tensor(1.0))  # parameter counts relative to the largest
    kernel = net.freq_embed.high_conv[0].conv.weight
    assert kernel.shape == (64, 1, 3, 3) and kernel[0, 0, 1, 1] == 8 and kernel[0, 0, 0, 0] == -1
    assert _tiny(noise_std=0.0).noise_std == 0.0
    with pytest.raises(ValueError):
        _tiny(noise_std=-1.0)


# ------------------------------------------------------------------------------------------ reference case


def test_matches_official_test_vector(noise_settings, case):
    model = noise_settings
    replay = ReplayNoise(case["routing_noise"])
    model.noise_source = replay
    with torch.inference_mode():
        out = model(case["x"])
    assert replay.remaining == 0  # one draw per router call, 10 in all
    assert out.shape == case["out"].shape and out.dtype == torch.float32
    assert rel_err(out, case["out"]) <= 1e-4
    index, gate = model.routing_choices()
    assert torch.equal(index, case["expert_index"].to(index.dtype))
    torch.testing.assert_close(gate, case["gate_value"], rtol=0, atol=1e-5)


def test_matches_official_test_vector_without_noise(noise_settings, case):
    model = noise_settings
    model.noise_std = 0.0
    model.noise_source = ReplayNoise([])  # noise_std 0 draws nothing
    with torch.inference_mode():
        out = model(case["x"])
    assert rel_err(out, case["out_zero_noise"]) <= 1e-4


# ------------------------------------------------------------------------------------------ routing / batches


def test_batch_routes_each_image_to_its_own_expert(noise_settings):
    """The official eval path mixes the experts of a batch; here a batch equals its images run one by one."""
    model = noise_settings
    x = fill.make_input((2, 3, 16, 24), seed=5)
    choices = [[0, 3], [1, 2], [2, 2], [3, 0], [0, 1], [1, 0], [2, 3], [3, 3], [0, 2], [1, 1]]
    with torch.inference_mode():
        model.noise_source = _forcing_noise(choices)
        both = model(x)
        index, _ = model.routing_choices()
        assert index.tolist() == choices
        singles = []
        for b in range(2):
            model.noise_source = _forcing_noise([[c[b]] for c in choices])
            singles.append(model(x[b : b + 1]))
    assert_close_to_reference(both, torch.cat(singles))
    # And the routing matters: another expert changes the output.
    with torch.inference_mode():
        model.noise_source = _forcing_noise([[1 - c[0] % 2] for c in choices])
        other = model(x[:1])
    assert (other - singles[0]).abs().max().item() > 1e-3


def test_noise_sources(noise_settings):
    model = noise_settings
    x = fill.make_input((1, 3, 16, 16), seed=9)
    with torch.inference_mode():
        model.noise_source = torch.Generator().manual_seed(4)
        a = model(x)
        ia = model.routing_choices()[0]
        model.noise_source = torch.Generator().manual_seed(4)
        torch.manual_seed(123)  # a generator source ignores the global RNG
        b = model(x)
        assert torch.equal(a, b) and torch.equal(ia, model.routing_choices()[0])

        model.noise_source = None  # the official behaviour: torch.randn_like, global generator
        torch.manual_seed(0)
        c = model(x)
        torch.manual_seed(0)
        d = model(x)
        assert torch.equal(c, d)

        model.noise_source = lambda logits: torch.zeros(3)
        with pytest.raises(ValueError, match="shape"):
            model(x)
        model.noise_source = ReplayNoise(torch.zeros(2, 1, 4))
        with pytest.raises(RuntimeError, match="used up"):
            model(x)
    with pytest.raises(TypeError):
        model.noise_source = 5


def test_sizes_must_be_multiples_of_8(model):
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.zeros(1, 3, 20, 16))


def test_fft_attention_is_a_circular_convolution_per_patch():
    torch.manual_seed(0)
    att = FFTAttention(2, patch_size=4).eval()
    x = torch.randn(1, 2, 6, 5)
    with torch.no_grad():
        q = att.q_dwconv(att.q(x))
        k, v = att.kv_dwconv(att.kv(x)).chunk(2, dim=1)
        qp = torch.nn.functional.pad(q, (0, 3, 0, 2))  # zero-padded to 8×8: four 4×4 patches
        kp = torch.nn.functional.pad(k, (0, 3, 0, 2))
        conv = torch.zeros_like(qp)
        for pi in range(2):
            for pj in range(2):
                qs = qp[..., 4 * pi : 4 * pi + 4, 4 * pj : 4 * pj + 4]
                ks = kp[..., 4 * pi : 4 * pi + 4, 4 * pj : 4 * pj + 4]
                acc = torch.zeros_like(qs)
                for a in range(4):
                    for b in range(4):
                        acc += qs[..., a : a + 1, b : b + 1] * ks.roll((a, b), dims=(-2, -1))
                conv[..., 4 * pi : 4 * pi + 4, 4 * pj : 4 * pj + 4] = acc
        expected = att.proj_out(att.norm(conv[..., :6, :5]) * v)
        torch.testing.assert_close(att(x), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ adapter


@pytest.fixture(scope="module")
def restorer(model) -> MoCEIRRestorer:
    return MoCEIRRestorer(model, [])


def test_adapter_odd_size(restorer, model):
    def forward(padded: torch.Tensor) -> torch.Tensor:  # up to 40×56, bottom / right; clamped as the official test
        assert model.noise_source is None  # (called after the adapter) it leaves the module's settings as they were
        model.noise_source = torch.Generator().manual_seed(restorer.routing_seed)
        try:
            return model(padded)
        finally:
            model.noise_source = None

    assert_odd_size_adapter(restorer, forward, pad=3, atol=1e-6)


def test_adapter_batch_equals_single_calls_and_is_deterministic(restorer):
    x = fill.make_input((2, 3, 16, 16), seed=11)
    both = restorer.restore(x)
    again = restorer.restore(x)
    assert torch.equal(both, again)  # same seed for every image and call
    one = torch.cat([restorer.restore(x[:1]), restorer.restore(x[1:])])
    torch.testing.assert_close(both, one, rtol=0, atol=1e-6)
    swapped = restorer.restore(x.flip(0))  # independent of the position in the batch
    torch.testing.assert_close(swapped.flip(0), both, rtol=0, atol=1e-6)
    typed = restorer.restore(x, ["haze", "low_rain"])  # the type is ignored
    assert torch.equal(typed, both)
    assert restorer.to("cpu") is restorer


def test_pad_to_multiple_small_sides():
    assert_pads_to_multiple(pad_to_multiple, 8, rows=5, cols=3)


# ------------------------------------------------------------------------------------------------ loader


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The test weights in the released layout: MoCE_IR_S_CDD11/last.ckpt, Lightning, network under `net.`."""
    d = tmp_path_factory.mktemp("moce_ir_weights")
    path = d / CHECKPOINT_NAME
    path.parent.mkdir(parents=True)
    torch.save(lightning_checkpoint(model.state_dict(), epochs=200, global_step=4321, version="2.2.1"), path)
    yield d
    path.unlink()  # ~46 MB: do not leave it in pytest's kept temp folders


def test_loads_lightning_checkpoint(model, ckpt_dir):
    loaded = load_moce_ir(ckpt_dir / CHECKPOINT_NAME)
    assert not loaded.training
    assert_same_weights(loaded, model)
    x = fill.make_input((1, 3, 16, 16), seed=2)
    with torch.inference_mode():
        loaded.noise_std = model.noise_std = 0.0
        try:
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        finally:
            model.noise_std = OFFICIAL_NOISE_STD


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"patch_embed.proj.weight": torch.randn(32, 3, 3, 3), "output.weight": torch.randn(3, 32, 3, 3)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        module_prefixed,
        lambda sd: {"state_dict": module_prefixed(sd, "net."), "epoch": 3, "optimizer_states": []},
        lambda sd: {"state_dict": module_prefixed(sd, "module.net."), "global_step": 10},
        lambda sd: {"state_dict": module_prefixed(sd, "net.module."), "global_step": 10},
    ],
    ids=["plain", "module", "lightning", "lightning-module", "lightning-net-module"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    assert_reads_state_dict(moce_ir_state_dict, tmp_path / "w.ckpt", wrap(sd), sd)


def test_checkpoint_with_non_tensor_objects(tmp_path):
    assert_reads_checkpoint_with_objects(moce_ir_state_dict, tmp_path / "last.ckpt", _small_state_dict(), 200)


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "patch_embed.proj.weight": torch.zeros(48, 3, 3, 3),  # MoCE-IR (dim 48), not MoCE-IR-S
        "freq_embed.mlp.0.weight": torch.zeros(512, 256),
        "not_moce.weight": torch.zeros(2),
    }
    msg = wrong_file_message(load_moce_ir, tmp_path / "other.ckpt", {"state_dict": module_prefixed(wrong, "net.")})
    assert "1260 missing key(s)" in msg and "freq_embed.high_conv.0.conv.weight" in msg
    assert "unexpected key(s), first: not_moce.weight" in msg
    assert "patch_embed.proj.weight expected (32, 3, 3, 3) got (48, 3, 3, 3)" in msg

    assert_refuses_garbage(load_moce_ir, tmp_path / "garbage.ckpt")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_moce_ir, tmp_path / "last.ckpt")
    assert "last.ckpt" in msg and "https://github.com/eduardzamfir/MoCE-IR" in msg
    assert "eduardzamfir/MoCE-IR" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("moce-ir")
    assert spec.modes == ("auto", "text")
    assert "routing_seed=0" in spec.description

    # --weights-dir: the folder that holds the release folder MoCE_IR_S_CDD11
    restorer = create_restorer("moce-ir", MethodOptions(weights_dir=ckpt_dir))
    assert isinstance(restorer, MoCEIRRestorer) and restorer.name == "moce-ir"
    assert restorer.weights_label == "official" and restorer.weights_files == [ckpt_dir / CHECKPOINT_NAME]
    assert restorer.routing_seed == 0 and restorer.model.noise_std == OFFICIAL_NOISE_STD
    assert_same_weights(restorer.model, model)
    assert_official_restorer("moce-ir", MoCEIRRestorer, model, ckpt_dir / CHECKPOINT_NAME)  # the release folder

    # The release folder itself as --weights-dir, with method args.
    inner = create_restorer(
        "moce-ir",
        MethodOptions(weights_dir=ckpt_dir / "MoCE_IR_S_CDD11", method_args={"routing_seed": "7", "noise_std": "0"}),
    )
    assert inner.weights_files == [ckpt_dir / CHECKPOINT_NAME]
    assert inner.routing_seed == 7 and inner.model.noise_std == 0.0


def test_registered_method_random_weights_and_args():
    assert_restores_finite(random_restorer("moce-ir", seeded=False), (1, 3, 12, 10), seed=1)
    assert_unknown_method_arg("moce-ir", {"flag": "1"}, match="unknown --method-arg flag")
    assert_unknown_method_arg("moce-ir", {"noise_std": "-1"}, match="noise_std")
    with pytest.raises(MethodArgError):
        create_restorer("moce-ir", MethodOptions(random_weights=True, method_args={"routing_seed": "x"}))


def test_registered_method_without_weights(tmp_path):
    assert_needs_weights("moce-ir", "https://github.com/eduardzamfir/MoCE-IR", tmp_path, tmp_path / "x.ckpt")
    with pytest.raises(MissingWeightsError, match="x.ckpt"):
        create_restorer("moce-ir", MethodOptions(weights=tmp_path / "x.ckpt", weights_dir=tmp_path))
    with pytest.raises(MissingWeightsError, match="MoCE_IR_S_CDD11"):
        create_restorer("moce-ir", MethodOptions(weights_dir=tmp_path))

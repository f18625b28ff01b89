"""OneRestore re-implementation: exact state_dict layout, official test vectors, loaders and the registered method.

Everything runs on the CPU from files in tests/data (no weights download). The weights are the deterministic
`fill_state_dict(sd, salt=0)` ones the official code used to produce `onerestore_case0.pt`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from baseline_checks import assert_close_to_reference, assert_same_weights, assert_tensors_match_manifest, fill

from baselines import onerestore as orx
from baselines.onerestore import Embedder, OneRestore, load_embedder, load_onerestore
from harness.degradations import ALL_TYPES
from harness.protocol import AutoRestorer, DegradationClassifier, Restorer
from harness.registry import MethodOptions, create_restorer
from harness.weights import MissingWeightsError, WeightsError

DATA = Path(__file__).parent / "data"


def _filled(module: torch.nn.Module, salt: int = 0) -> torch.nn.Module:
    sd = module.state_dict()
    fill.fill_state_dict(sd, salt)
    module.load_state_dict(sd)
    return module.eval()


def _close(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref|, asserted ≤ 1e-4 · max(1, max |ref|)."""
    assert ours.shape == ref.shape
    return assert_close_to_reference(ours.float(), ref.float(), "max abs error")


@pytest.fixture(scope="module")
def case():
    return torch.load(DATA / "onerestore_case0.pt", weights_only=True)


@pytest.fixture(scope="module")
def restorer_model(case):
    return _filled(OneRestore(channel=32, antialias=bool(case["antialias"])))


@pytest.fixture(scope="module")
def embedder_model():
    return _filled(Embedder())


# ---------------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    "manifest, build",
    [("onerestore.manifest.json", lambda: OneRestore()), ("onerestore_embedder.manifest.json", Embedder)],
)
def test_state_dict_matches_manifest(manifest, build):
    assert_tensors_match_manifest(build().state_dict(), manifest)


def test_restorer_parameter_count():
    assert sum(p.numel() for p in OneRestore().parameters()) == 5_980_396


# ---------------------------------------------------------------------------------------------- test vectors


def test_text_mode_matches_reference(case, restorer_model, embedder_model):
    with torch.no_grad():
        _close(embedder_model.type_table(), case["type_table"])
        emb = embedder_model.text_embedding(case["type_names"])
        _close(emb, case["embedding_text"])
        _close(restorer_model(case["x"], emb), case["out_text"])


def test_visual_mode_matches_reference(case, restorer_model, embedder_model):
    with torch.no_grad():
        emb, idx = embedder_model(case["x224"])
        assert idx.tolist() == case["type_index_visual"].tolist()
        _close(emb, case["embedding_visual"])
        _close(restorer_model(case["x"], emb), case["out_visual"])
        # the visual path drives the restorer with the arg-max type's table row
        assert torch.equal(emb, embedder_model.type_table()[idx])
        assert embedder_model.logits(case["x224"]).argmax(1).tolist() == idx.tolist()


# ---------------------------------------------------------------------------------------------- shapes, batch


def test_odd_size_and_batch_match_single_images(restorer_model, embedder_model):
    x = fill.make_input((2, 3, 37, 53), seed=3)
    with torch.no_grad():
        emb = embedder_model.text_embedding(["haze", "low_rain"])
        out = restorer_model(x, emb)
        assert out.shape == x.shape and torch.isfinite(out).all()
        for i in range(2):
            single = restorer_model(x[i : i + 1], emb[i : i + 1])
            assert_close_to_reference(out[i : i + 1], single)


def test_embedding_shared_by_batch_and_checked(restorer_model, embedder_model):
    x = fill.make_input((2, 3, 16, 24), seed=4)
    with torch.no_grad():
        emb = embedder_model.text_embedding(["snow"])
        a = restorer_model(x, emb)
        b = restorer_model(x, emb.expand(2, -1))
        assert torch.allclose(a, b)
        with pytest.raises(ValueError, match="embedding"):
            restorer_model(x, torch.zeros(3, 324))


def test_antialias_changes_output(restorer_model):
    plain = restorer_model
    aa = OneRestore(antialias=True).eval()
    aa.load_state_dict(plain.state_dict())
    x = fill.make_input((1, 3, 40, 44), seed=5)  # first level 40×44 is larger than 18×18: antialias matters
    emb = torch.rand(1, 324)
    with torch.no_grad():
        assert (aa(x, emb) - plain(x, emb)).abs().max().item() > 1e-3


def test_small_channel_model_runs():
    m = _filled(OneRestore(channel=8))
    with torch.no_grad():
        out = m(fill.make_input((1, 3, 9, 11), seed=6), torch.rand(1, 324))
    assert out.shape == (1, 3, 9, 11)
    with pytest.raises(ValueError, match="multiple of 8"):
        OneRestore(channel=12)


# ---------------------------------------------------------------------------------------------- embedder


def test_prepare_resizes_whole_image(embedder_model):
    x = fill.make_input((2, 3, 50, 75), seed=7)
    p = Embedder.prepare(x)
    assert p.shape == (2, 3, 224, 224)
    assert p.min() >= 0 and p.max() <= 1
    # no crop: a left/right split image keeps its split in the middle column
    half = torch.zeros(1, 3, 300, 500)
    half[..., 250:] = 1
    q = Embedder.prepare(half)
    assert q[..., :100].max() < 1e-6 and q[..., 124:].min() > 1 - 1e-6
    # antialiased bilinear: a fine checkerboard averages out instead of aliasing
    checker = ((torch.arange(896)[:, None] + torch.arange(896)[None, :]) % 2).float().expand(1, 3, 896, 896)
    assert (Embedder.prepare(checker) - 0.5).abs().max() < 0.05
    # a 224×224 batch is already the input
    y = fill.make_input((1, 3, 224, 224), seed=8)
    assert Embedder.prepare(y) is y


def test_embedder_is_a_classifier(embedder_model, case):
    assert isinstance(embedder_model, DegradationClassifier)
    assert embedder_model.labels == ALL_TYPES
    x = case["x224"]
    s = embedder_model.scores(x)
    assert s.shape == (1, 12)
    assert embedder_model.classify(x) == [ALL_TYPES[int(case["type_index_visual"][0])]]
    with pytest.raises(ValueError, match="unknown CDD-11 type"):
        embedder_model.text_embedding(["fog"])


# ---------------------------------------------------------------------------------------------- loaders


@pytest.fixture(scope="module")
def small_restorer():
    return _filled(OneRestore(channel=8), salt=1)


@pytest.mark.parametrize("wrap", ["plain", "module", "state_dict", "model+module"])
def test_load_onerestore_formats(tmp_path, small_restorer, wrap):
    sd = small_restorer.state_dict()
    if "module" in wrap:
        sd = {f"module.{k}": v for k, v in sd.items()}
    obj = {"state_dict": sd, "epoch": 3} if wrap == "state_dict" else {"model": sd} if "model" in wrap else sd
    path = tmp_path / "onerestore_cdd-11.tar"
    torch.save(obj, path)
    loaded = load_onerestore(path)
    assert loaded.channel == 8 and not loaded.training
    assert_same_weights(loaded, small_restorer)


def test_load_embedder_prefixed(tmp_path, embedder_model):
    path = tmp_path / "embedder_model.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in embedder_model.state_dict().items()}}, path)
    assert_same_weights(load_embedder(path), embedder_model)


def test_wrong_file_lists_keys(tmp_path, small_restorer):
    path = tmp_path / "embedder_model.tar"
    torch.save(small_restorer.state_dict(), path)
    with pytest.raises(WeightsError) as e:
        load_embedder(path)
    msg = str(e.value)
    assert "embedder_model.tar" in msg and "missing key" in msg and "embedder.weight" in msg
    assert "unexpected key" in msg and "in_conv.weight" in msg
    # a restorer state_dict with a wrong shape names the key and both shapes
    sd = small_restorer.state_dict()
    sd["out_conv.weight"] = torch.zeros(4, 8, 1, 1)
    torch.save(sd, tmp_path / "bad.tar")
    with pytest.raises(WeightsError, match=r"out_conv.weight expected \(3, 8, 1, 1\) got \(4, 8, 1, 1\)"):
        load_onerestore(tmp_path / "bad.tar")


def test_missing_file_names_file_and_url(tmp_path):
    for loader, name in [(load_onerestore, "onerestore_cdd-11.tar"), (load_embedder, "embedder_model.tar")]:
        with pytest.raises(MissingWeightsError) as e:
            loader(tmp_path / name)
        assert name in str(e.value) and "https://github.com/gy65896/OneRestore" in str(e.value)


# ---------------------------------------------------------------------------------------------- registered method


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory, restorer_model, embedder_model):
    d = tmp_path_factory.mktemp("onerestore_official")
    torch.save(restorer_model.state_dict(), d / "onerestore_cdd-11.tar")
    torch.save({f"module.{k}": v for k, v in embedder_model.state_dict().items()}, d / "embedder_model.tar")
    return d


def test_registered_method_official_dir(official_dir, case):
    r = create_restorer("onerestore", MethodOptions(mode="text", weights_dir=official_dir))
    assert isinstance(r, Restorer) and isinstance(r, AutoRestorer)
    assert r.weights_label == "official"
    assert r.weights_files == [official_dir / "onerestore_cdd-11.tar", official_dir / "embedder_model.tar"]
    out = r.restore(case["x"], list(case["type_names"]))
    _close(out, case["out_text"])
    x = fill.make_input((2, 3, 24, 20), seed=9)
    out_auto, pred = r.restore_auto(x)
    assert out_auto.shape == x.shape and len(pred) == 2 and set(pred) <= set(ALL_TYPES)
    assert torch.allclose(r.restore(x, None), out_auto)
    assert torch.allclose(r.restore(x, pred), out_auto, atol=1e-5)
    assert r.classifier.classify(x) == pred
    with pytest.raises(ValueError):
        r.restore(x, ["haze"])


def test_registered_method_missing_official_file(tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        create_restorer("onerestore", MethodOptions(weights_dir=tmp_path))
    assert "onerestore_cdd-11.tar" in str(e.value) and "gy65896/OneRestore" in str(e.value)


def test_single_official_file_uses_sibling_embedder(official_dir):
    r = create_restorer("onerestore", MethodOptions(weights=official_dir / "onerestore_cdd-11.tar"))
    assert r.weights_label == "official" and len(r.weights_files) == 2


def test_self_describing_checkpoint(tmp_path, small_restorer, embedder_model):
    path = orx.save_checkpoint(tmp_path / "demo.pt", small_restorer, embedder_model, meta={"epochs": 1})
    obj = torch.load(path, weights_only=True)  # plain types + tensors only
    assert obj["config"] == {"channel": 8, "antialias": False} and obj["meta"] == {"epochs": 1}
    r = create_restorer("onerestore", MethodOptions(mode="auto", weights=path))
    assert r.weights_label == "demo" and r.weights_files == [path]
    assert r.model.channel == 8
    assert_same_weights(r.model, small_restorer)
    out, pred = r.restore_auto(fill.make_input((1, 3, 17, 19), seed=10))
    assert out.shape == (1, 3, 17, 19) and pred[0] in ALL_TYPES
    # a checkpoint without its embedder falls back to embedder_model.tar next to it, else says so
    path2 = orx.save_checkpoint(tmp_path / "sub" / "demo2.pt", small_restorer)
    with pytest.raises(MissingWeightsError, match="embedder_model.tar"):
        create_restorer("onerestore", MethodOptions(weights=path2))


def test_registered_method_random_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(orx, "DEMO_WEIGHTS", tmp_path / "missing.pt")  # no file is read
    before = torch.random.get_rng_state()
    r = create_restorer("onerestore", MethodOptions(random_weights=True))
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is untouched
    assert r.weights_label == "random" and r.weights_files == [] and r.model.channel == 32
    torch.manual_seed(0)
    model, embedder = OneRestore(), Embedder()
    for got, want in ((r.model, model), (r.embedder, embedder)):
        reference = want.state_dict()
        assert all(torch.equal(v, reference[k]) for k, v in got.state_dict().items())
    x = fill.make_input((1, 3, 8, 8), seed=11)
    assert r.restore(x, ["rain"]).shape == (1, 3, 8, 8)
    out, types = r.restore_auto(x)
    assert out.shape == (1, 3, 8, 8) and types[0] in ALL_TYPES


def test_missing_demo_weights_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(orx, "DEMO_WEIGHTS", tmp_path / "weights" / "onerestore_demo.pt")
    with pytest.raises(MissingWeightsError) as e:
        create_restorer("onerestore", MethodOptions())
    msg = str(e.value)
    assert "onerestore_demo.pt" in msg and "--weights-dir" in msg and "gy65896/OneRestore" in msg


def test_demo_weights_load_when_present(tmp_path, monkeypatch, small_restorer, embedder_model):
    demo = orx.save_checkpoint(tmp_path / "onerestore_demo.pt", small_restorer, embedder_model)
    monkeypatch.setattr(orx, "DEMO_WEIGHTS", demo)
    r = create_restorer("onerestore", MethodOptions(mode="text"))
    assert r.weights_label == "demo" and r.weights_files == [demo]
    assert r.restore(fill.make_input((1, 3, 8, 8), seed=11), ["rain"]).shape == (1, 3, 8, 8)

"""Checks shared by the tests of the baseline re-implementations (tests/test_<method>.py): the deterministic test
weights (tests/data/fill.py), a one-thread module fixture, the manifest / reference-vector / checkpoint-format /
adapter / registered-method checks that every re-implementation passes. Imported by those files, not collected."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.protocol import Restorer
from harness.registry import MethodArgError, MethodOptions, create_restorer
from harness.weights import MissingWeightsError, WeightsError

DATA = Path(__file__).parent / "data"


def _load_fill():
    spec = importlib.util.spec_from_file_location("_vlur_fill", DATA / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fill = _load_fill()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The test machine's cores are shared: one intra-op thread is several times faster than oversubscribing.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def case_meta(name: str) -> dict:
    """The entry `name` (e.g. "fourmer_case0") of tests/data/cases.json: salt, fill_scale, shapes."""
    return json.loads((DATA / "cases.json").read_text())[name]


def filled(net: torch.nn.Module, salt: int = 0, scale: dict | None = None) -> torch.nn.Module:
    """`net` with the deterministic test weights of `salt` / `scale` loaded in place."""
    sd = net.state_dict()
    fill.fill_state_dict(sd, salt=salt, scale=scale)
    net.load_state_dict(sd)
    return net


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def assert_weights_equal_seeded_init(model: torch.nn.Module, build: Callable[[], torch.nn.Module]) -> None:
    """Every tensor of `model` equals the one `build()` makes after torch.manual_seed(0)."""
    torch.manual_seed(0)
    reference = build().state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())


def assert_matches_manifest(model: torch.nn.Module, manifest_name: str, n_keys: int, n_params: int) -> None:
    """Keys (in order), shapes and dtypes of `model`'s state_dict equal tests/data/`manifest_name`."""
    manifest = json.loads((DATA / manifest_name).read_text())
    ours = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    }
    assert len(manifest) == n_keys
    assert list(ours) == list(manifest)  # same keys, same order
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == n_params


def assert_tensors_match_manifest(sd: dict[str, torch.Tensor], manifest_name: str) -> None:
    """Per key: the same keys in the same order, each shape and dtype as tests/data/`manifest_name` says."""
    expected = json.loads((DATA / manifest_name).read_text())
    assert list(sd) == list(expected)  # same keys, same order
    for k, t in sd.items():
        assert list(t.shape) == expected[k]["shape"], k
        assert str(t.dtype).removeprefix("torch.") == expected[k]["dtype"], k


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out - ref).abs().max().item() / max(1.0, ref.abs().max().item())


def assert_close_to_reference(out: torch.Tensor, ref: torch.Tensor, label: str | None = None) -> float:
    """The reference criterion: max |out - ref| ≤ 1e-4 · max(1, max |ref|); returns the error."""
    err = (out - ref).abs().max().item()
    assert err <= 1e-4 * max(1.0, ref.abs().max().item()), (label, err)
    return err


def batch_and_single_runs(restore: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """`restore` on the batch of two and on each image alone (concatenated), both shaped as `x`."""
    both = restore(x)
    one = torch.cat([restore(x[:1]), restore(x[1:])])
    assert both.shape == x.shape
    return both, one


def assert_odd_size_adapter(
    restorer: Restorer, forward: Callable[[torch.Tensor], torch.Tensor], pad: int, atol: float, clamp: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adapter on 37×53 equals `forward` on the input reflect-padded by `pad` at the bottom / right (as the
    official test scripts do), cropped back (and clamped to [0, 1] where `clamp`). Returns (out, expected)."""
    x = fill.make_input((1, 3, 37, 53), seed=3)
    out = restorer.restore(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if clamp:
        assert out.min() >= 0 and out.max() <= 1
    with torch.inference_mode():
        expected = forward(F.pad(x, (0, pad, 0, pad), mode="reflect"))[..., :37, :53]
        if clamp:
            expected = expected.clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=atol)
    return out, expected


def assert_pads_to_multiple(pad_to_multiple: Callable[..., torch.Tensor], multiple: int, rows: int, cols: int) -> None:
    """A rows×cols input (cols too narrow to reflect) padded to `multiple`: reflected rows, replicated columns."""
    x = torch.arange(2 * 3 * rows * cols, dtype=torch.float32).reshape(2, 3, rows, cols)
    y = pad_to_multiple(x, multiple)
    width = -(-cols // multiple) * multiple
    assert y.shape == (2, 3, -(-rows // multiple) * multiple, width)
    torch.testing.assert_close(y[..., :rows, :cols], x)
    torch.testing.assert_close(y[..., rows, :cols], x[..., rows - 2, :])  # reflected row
    torch.testing.assert_close(y[..., :rows, width - 1], x[..., :, cols - 1])  # replicated column (too narrow)
    assert pad_to_multiple(torch.zeros(1, 3, 16, 8)).shape == (1, 3, 16, 8)


def module_prefixed(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """`sd` with every key under `prefix` (nn.DataParallel's `module.`, Lightning's `net.`)."""
    return {f"{prefix}{k}": v for k, v in sd.items()}


def assert_reads_state_dict(read, path: Path, saved: object, sd: dict[str, torch.Tensor]) -> None:
    """`read` (a *_state_dict function) gives back `sd`, keys in order, from `saved` written to `path`."""
    torch.save(saved, path)
    got = read(path)
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def lightning_checkpoint(sd: dict[str, torch.Tensor], epochs: int, global_step: int, version: str) -> dict:
    """`sd` as a PyTorch Lightning checkpoint with the network under `net.` (as PromptIR / MoCE-IR release them)."""
    return {
        "epoch": epochs - 1,
        "global_step": global_step,
        "pytorch-lightning_version": version,
        "state_dict": module_prefixed(sd, "net."),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": epochs}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": "", "dirpath": "ckpt"}},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 2e-4}]}],
        "lr_schedulers": [{"last_epoch": epochs, "base_lrs": [2e-4]}],
    }


class _TrainingOnlyObject:
    """Stands for the non-tensor objects a Lightning checkpoint may carry (not importable at load time)."""

    def __init__(self):
        self.value = 3


def assert_reads_checkpoint_with_objects(read, path: Path, sd: dict[str, torch.Tensor], epochs: int) -> None:
    """A Lightning checkpoint that also pickles plain objects (torch.load(weights_only=True) refuses it) still
    gives `sd` through `read`."""
    torch.save(
        {
            "state_dict": module_prefixed(sd, "net."),
            "hyper_parameters": argparse.Namespace(lr=2e-4, epochs=epochs),
            "callbacks": {"cb": _TrainingOnlyObject(), "dir": pathlib.PurePosixPath("/ckpt")},
        },
        path,
    )
    with pytest.raises(Exception):  # noqa: B017 - what the loaders' stand-ins work around
        torch.load(path, weights_only=True)
    got = read(path)
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def wrong_file_message(load, path: Path, saved: object) -> str:
    """`saved` written to `path` is refused by `load` with a WeightsError (not a missing-file one) naming the file."""
    torch.save(saved, path)
    with pytest.raises(WeightsError) as info:
        load(path)
    msg = str(info.value)
    assert not isinstance(info.value, MissingWeightsError)
    assert path.name in msg
    return msg


def assert_refuses_garbage(load, path: Path, match: str | None = None) -> None:
    """A file that is not a checkpoint is refused with a WeightsError that names it (or matches `match`)."""
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match=match or path.name):
        load(path)


def missing_file_message(load, path: Path) -> str:
    with pytest.raises(MissingWeightsError) as info:
        load(path)
    return str(info.value)


def assert_official_restorer(method: str, cls: type, model: torch.nn.Module, path: Path, **option_kwargs):
    """create_restorer(method) from the folder holding the official file `path`: the class, name, label, files
    and weights; a second one from the file itself lists it too. Returns the first."""
    restorer = create_restorer(method, MethodOptions(weights_dir=path.parent, **option_kwargs))
    assert isinstance(restorer, Restorer) and isinstance(restorer, cls)
    assert restorer.name == method and restorer.weights_label == "official"
    assert restorer.weights_files == [path]
    assert_same_weights(restorer.model, model)
    assert restorer.to("cpu") is restorer
    assert create_restorer(method, MethodOptions(weights=path)).weights_files == [path]
    return restorer


def assert_type_is_ignored(restorer: Restorer, x: torch.Tensor, types: list[str]) -> torch.Tensor:
    """The output is the same, to the bit, with and without degradation types. Returns it."""
    blind = restorer.restore(x)
    typed = restorer.restore(x, types)  # the type is ignored
    torch.testing.assert_close(typed, blind, rtol=0, atol=0)
    return blind


def random_restorer(method: str, method_args: dict | None = None, seeded: bool = True) -> Restorer:
    """create_restorer(method, random_weights=True): labelled random, no files, (where `seeded`) the same weights
    each time."""
    opts = MethodOptions(random_weights=True, method_args=method_args or {})
    restorer = create_restorer(method, opts)
    assert isinstance(restorer, Restorer) and restorer.name == method
    assert restorer.weights_label == "random" and restorer.weights_files == []
    if seeded:
        assert_same_weights(restorer.model, create_restorer(method, opts).model)  # seeded
    return restorer


def assert_restores_finite(restorer: Restorer, shape: tuple[int, ...], seed: int) -> None:
    out = restorer.restore(fill.make_input(shape, seed=seed))
    assert out.shape == shape and torch.isfinite(out).all()


def assert_unknown_method_arg(method: str, args: dict[str, str], match: str):
    """A --method-arg the method does not take is refused. Returns the pytest.raises info."""
    with pytest.raises(MethodArgError, match=match) as info:
        create_restorer(method, MethodOptions(random_weights=True, method_args=args))
    return info


def assert_needs_weights(method: str, url: str, weights_dir: Path, weights: Path, name: str | None = None) -> None:
    """Without weights (none given, an empty folder, a missing file) the method names where they are published
    (and, for the folder, the file `name` it looked for)."""
    for opts in (MethodOptions(), MethodOptions(weights_dir=weights_dir), MethodOptions(weights=weights)):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer(method, opts)
        assert url in str(info.value)
    if name is not None:
        with pytest.raises(MissingWeightsError, match=name):
            create_restorer(method, MethodOptions(weights_dir=weights_dir))

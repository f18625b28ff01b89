"""harness.tiling: grid, exact stitching for local models, OOM fallback (the PSNR-cost study: test_experiments)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.tiling import (
    is_oom_error,
    oom_reason,
    restore_with_fallback,
    tile_count,
    tile_starts,
    tiled_fn,
    tiled_restore,
)


def conv_stack(depth: int = 3, channels: int = 6, seed: int = 0) -> nn.Module:
    """`depth` zero-padded 3×3 convolutions: receptive radius = depth."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    cin = 3
    for i in range(depth):
        cout = 3 if i == depth - 1 else channels
        layers += [nn.Conv2d(cin, cout, 3, padding=1)]
        if i < depth - 1:
            layers.append(nn.Tanh())
        cin = cout
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize(
    "length,tile,overlap",
    [(100, 32, 8), (97, 32, 16), (32, 32, 8), (10, 32, 8), (33, 32, 0), (1000, 512, 32), (1080, 512, 32)],
)
def test_tile_starts_cover_the_axis_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert starts == sorted(set(starts))
    for a, b in zip(starts, starts[1:]):
        assert a + size - b >= overlap  # adjacent windows overlap by at least `overlap`
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        covered[s : s + size] = True
    assert covered.all()


def test_tile_starts_rejects_bad_arguments():
    with pytest.raises(ValueError):
        tile_starts(100, 32, 32)
    with pytest.raises(ValueError):
        tile_starts(100, 0, 0)


@pytest.mark.parametrize("blend,overlap", [("crop", 6), ("crop", 9), ("linear", 12), ("linear", 16)])
@pytest.mark.parametrize("hw", [(70, 97), (20, 97), (64, 64), (33, 47)])
def test_tiled_equals_whole_for_a_small_receptive_field(blend, overlap, hw):
    model = conv_stack(depth=3)  # radius 3: exact for crop (overlap // 2 >= 3) and linear (overlap // 4 >= 3)
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(x)
        tiled = tiled_restore(model, x, tile=24, overlap=overlap, blend=blend)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_too_small_overlap_is_not_exact():
    """Sanity check of the test above: without enough overlap the window borders show."""
    model = conv_stack(depth=3)
    x = torch.rand(1, 3, 70, 97, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (tiled_restore(model, x, tile=24, overlap=2, blend="crop") - model(x)).abs().max()
    assert diff > 1e-3


def test_tiled_restore_channel_change_and_size_check():
    x = torch.rand(1, 3, 40, 50)
    out = tiled_restore(lambda t: t.repeat(1, 2, 1, 1), x, tile=16, overlap=4)
    torch.testing.assert_close(out, x.repeat(1, 2, 1, 1))
    with pytest.raises(ValueError, match="spatial size"):
        tiled_restore(lambda t: t[..., :-1, :], x, tile=16, overlap=4)
    with pytest.raises(ValueError, match="blend"):
        tiled_restore(lambda t: t, x, tile=16, overlap=4, blend="nope")


def test_tile_count():
    assert tile_count(1080, 1920, 512, 32) == len(tile_starts(1080, 512, 32)) * len(tile_starts(1920, 512, 32))
    assert tile_count(100, 100, 512, 32) == 1


class FakeOOMModel:
    """Doubles its input; raises the CUDA allocator's message above `max_pixels` pixels per image."""

    def __init__(self, max_pixels: int, exc=RuntimeError):
        self.max_pixels = max_pixels
        self.exc = exc
        self.calls: list[tuple[int, int]] = []

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(t.shape[-2:]))
        if t.shape[-2] * t.shape[-1] > self.max_pixels:
            raise self.exc("CUDA out of memory. Tried to allocate 2.00 GiB")
        return t * 2


def test_oom_fallback_tiles_and_halves_the_tile():
    x = torch.rand(1, 3, 100, 90)
    fn = FakeOOMModel(max_pixels=40 * 40)
    out, info = restore_with_fallback(fn, x, tile=128, overlap=8, min_tile=16)
    torch.testing.assert_close(out, x * 2)
    assert info.tiled and info.tile == 32 and info.overlap == 8
    assert info.tiles == tile_count(100, 90, 32, 8)
    assert "out of memory" in info.reason
    assert fn.calls[0] == (100, 90)  # tried whole first


def test_oom_fallback_whole_when_it_fits_and_other_errors_propagate():
    x = torch.rand(1, 3, 20, 20)
    out, info = restore_with_fallback(FakeOOMModel(10**6), x)
    assert not info.tiled and torch.equal(out, x * 2)

    def broken(t):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        restore_with_fallback(broken, x)


def test_oom_fallback_gives_up_below_min_tile():
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(RuntimeError, match="even with"):
        restore_with_fallback(FakeOOMModel(4), x, tile=64, overlap=4, min_tile=16)


def test_force_tiled_and_tiled_fn():
    x = torch.rand(1, 3, 50, 50)
    out, info = restore_with_fallback(lambda t: t + 1, x, tile=16, overlap=4, force_tiled=True)
    assert info.tiled and info.reason == "forced"
    torch.testing.assert_close(out, x + 1)
    torch.testing.assert_close(tiled_fn(lambda t: t + 1, 16, 4)(x), x + 1)


def test_is_oom_error():
    assert is_oom_error(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert is_oom_error(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: not enough memory"))
    assert is_oom_error(MemoryError())
    assert is_oom_error(torch.cuda.OutOfMemoryError("boom"))
    assert not is_oom_error(RuntimeError("size mismatch"))
    assert not is_oom_error(ValueError("out of memory"))  # only runtime/memory errors count


def test_oom_reason_is_one_short_line():
    assert oom_reason(RuntimeError("CUDA out of memory.\nmore")) == "RuntimeError: CUDA out of memory."
    assert oom_reason(MemoryError()) == "MemoryError: "
    assert len(oom_reason(RuntimeError("x" * 500))) == len("RuntimeError: ") + 200

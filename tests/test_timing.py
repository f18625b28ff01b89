"""harness.timing on the CPU: statistics, warm-up exclusion, classifier split, FLOPs, tiling, tables, CLI."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from harness import timing as T
from harness.timing import TimingConfig

# ----------------------------------------------------------------------------------------------- helpers


class FakeClock:
    """A clock that only moves when told to (seconds)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance_ms(self, ms: float) -> None:
        self.t += ms / 1e3


class FakeClassifier:
    name = "fake-cls"
    labels = ("haze", "rain")

    def __init__(self, clock: FakeClock, ms: float):
        self.clock, self.ms = clock, ms
        self.net = nn.Linear(4, 2)  # 10 parameters
        self.calls = 0

    def scores(self, images):
        return torch.zeros(images.shape[0], 2)

    def classify(self, images):
        self.calls += 1
        self.clock.advance_ms(500 if self.calls == 1 else self.ms)  # slow first call: must be excluded
        return ["rain"] * images.shape[0]


class FakeRestorer:
    """Restorer on a fake clock: `restore` costs `ms`, its first call 1000 ms (a warm-up outlier)."""

    name = "fake"

    def __init__(self, clock: FakeClock, ms: float = 30.0, cls_ms: float | None = 10.0):
        self.clock, self.ms = clock, ms
        self.model = nn.Conv2d(3, 3, 3, padding=1)  # 84 parameters
        self.classifier = FakeClassifier(clock, cls_ms) if cls_ms is not None else None
        self.calls = 0
        self.types_seen: list = []

    def restore(self, images, degradation=None):
        self.calls += 1
        self.types_seen.append(None if degradation is None else tuple(degradation))
        self.clock.advance_ms(1000 if self.calls == 1 else self.ms)
        return self.model(images)

    def restore_auto(self, images):
        types = self.classifier.classify(images)
        return self.restore(images, types), types

    def to(self, device):
        self.model.to(device)
        return self


def quick(**kw) -> TimingConfig:
    base = dict(device="cpu", warmup=2, min_iters=5, min_seconds=0.0, max_iters=5, e2e=False)
    base.update(kw)
    return TimingConfig(**base)


# -------------------------------------------------------------------------------------------- statistics


def test_summarize_median_iqr():
    s = T.summarize([1, 2, 3, 4, 100], warmup=3)
    assert s["n"] == 5 and s["warmup"] == 3
    assert s["median_ms"] == 3 and s["q1_ms"] == 2 and s["q3_ms"] == 4 and s["iqr_ms"] == 2
    assert s["min_ms"] == 1 and s["max_ms"] == 100 and s["mean_ms"] == 22
    with pytest.raises(ValueError):
        T.summarize([])


def test_measure_excludes_warmup_on_a_fake_clock():
    clock = FakeClock()
    durations = iter([1000, 1000, 10, 20, 30, 40, 50, 60, 70])

    def fn():
        clock.advance_ms(next(durations))

    s = T.measure(fn, warmup=2, min_iters=5, min_seconds=0.0, clock=clock)
    assert s["n"] == 5 and s["median_ms"] == pytest.approx(30)
    assert s["max_ms"] == pytest.approx(50)  # the 1000 ms warm-up calls are not in the statistics
    assert s["timer"] == "perf_counter"


def test_measure_runs_until_min_seconds_and_respects_max_iters():
    clock = FakeClock()
    s = T.measure(lambda: clock.advance_ms(10), warmup=0, min_iters=3, min_seconds=0.095, clock=clock)
    assert s["n"] == 10  # 3 calls would be only 30 ms; runs until 100 ms have passed
    s = T.measure(lambda: clock.advance_ms(10), warmup=0, min_iters=3, min_seconds=100.0, max_iters=7, clock=clock)
    assert s["n"] == 7
    s = T.measure(lambda: clock.advance_ms(1000), warmup=0, min_iters=50, max_seconds=2.5, clock=clock)
    assert s["n"] == 3  # the optional cap relaxes min_iters, never below 3 calls


def test_measure_caps_the_warmup_at_max_seconds():
    clock = FakeClock()
    calls = []

    def fn():
        calls.append(1)
        clock.advance_ms(1000)

    s = T.measure(fn, warmup=10, min_iters=50, max_seconds=2.5, clock=clock)
    assert s["warmup"] == 3  # 3 s of warm-up passed the 2.5 s cap: the other 7 warm-up calls are skipped
    assert s["n"] == 3 and len(calls) == 6
    s = T.measure(lambda: clock.advance_ms(1000), warmup=4, min_iters=3, clock=clock)
    assert s["warmup"] == 4  # no cap without max_seconds


def test_measure_with_the_real_clock():
    s = T.measure(lambda: time.sleep(0.01), warmup=1, min_iters=3, min_seconds=0.0)
    assert s["n"] == 3 and 9.0 <= s["median_ms"] < 200.0


# ------------------------------------------------------------------------------------------------ FLOPs


def test_flops_of_hand_countable_layers():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    flops, out = T.count_flops(conv, torch.rand(1, 3, 10, 12))
    assert out.shape == (1, 8, 10, 12)
    assert flops == 2 * (8 * 10 * 12) * (3 * 3 * 3)  # 2 per MAC; bias not counted
    lin = nn.Linear(16, 4)
    flops, _ = T.count_flops(lin, torch.rand(5, 16))
    assert flops == 2 * 5 * 16 * 4


def test_deformable_convolution_is_counted_like_a_convolution():
    from torchvision.ops import deform_conv2d

    x = torch.rand(1, 4, 9, 11)
    w = torch.rand(6, 4, 3, 3)
    offset = torch.zeros(1, 2 * 9, 9, 11)
    flops, _ = T.count_flops(lambda: deform_conv2d(x, offset, w, padding=1))
    assert flops == 2 * (6 * 9 * 11) * (4 * 3 * 3)


def test_count_parameters_dedupes_and_finds_nested_modules():
    clock = FakeClock()
    r = FakeRestorer(clock)
    assert T.count_parameters(r) == 84 + 10
    assert T.count_parameters(r.classifier) == 10
    r.alias = r.model  # the same module twice counts once
    assert T.count_parameters(r) == 94


# ------------------------------------------------------------------------------------------ the protocol


def test_time_restorer_separates_classifier_and_restorer():
    clock = FakeClock()
    r = FakeRestorer(clock, ms=30.0, cls_ms=10.0)
    rec = T.time_restorer(r, ["64x48"], quick(mode="auto", fixed_type="haze"), modes=("auto", "text"),
                          clock=clock)
    s = rec["sizes"]["64x48"]
    t = s["timing"]
    assert t["restorer"]["median_ms"] == pytest.approx(30)
    assert t["classifier"]["median_ms"] == pytest.approx(10)
    assert t["total"]["median_ms"] == pytest.approx(40)  # restore_auto, measured as one call
    assert t["classifier_plus_restorer_ms"] == pytest.approx(40)
    assert t["restorer"]["n"] == 5 and t["restorer"]["iqr_ms"] == pytest.approx(0)
    assert s["headline"] == "total" and s["ms"] == pytest.approx(40)
    assert ("haze",) in r.types_seen  # text mode with the fixed type
    assert t["e2e"]["method"] == "sum"
    assert t["e2e"]["median_ms"] == pytest.approx(40 + t["transfer"]["median_ms"])
    # FLOPs of the 3x3 conv at 64x48, classifier has none
    assert s["flops"]["restorer"] == 2 * 3 * 64 * 48 * 27
    assert s["flops"]["total"] == s["flops"]["restorer"]
    assert rec["params"] == 94 and rec["params_classifier"] == 10
    assert not s["tiled"]


class WidthTrap(FakeRestorer):
    """Interrupted (as by Ctrl-C or a kill) when it sees an image of width `trap_width`."""

    def __init__(self, clock, trap_width: int):
        super().__init__(clock, ms=30.0, cls_ms=None)
        self.trap_width = trap_width

    def restore(self, images, degradation=None):
        if images.shape[-1] == self.trap_width:
            raise KeyboardInterrupt
        return super().restore(images, degradation)


def test_finished_sizes_are_written_before_an_interruption_and_resumed(tmp_path):
    clock = FakeClock()
    cfg = quick(mode="text", fixed_type="haze")
    written = []

    def save(record):
        written.append(json.loads(json.dumps(record, default=str)))
        T.write_timing([record], tmp_path)

    with pytest.raises(KeyboardInterrupt):
        T.time_restorer(WidthTrap(clock, trap_width=40), ["32x24", "40x24"], cfg, name="fake",
                        modes=("text",), clock=clock, on_size=save)
    partial = T.read_timing(tmp_path / "timing.json")
    assert list(partial[0]["sizes"]) == ["32x24"] and len(written) == 1
    assert partial[0]["sizes"]["32x24"]["ms"] == pytest.approx(30)

    # resume: the finished size is kept (not re-timed), the missing one is timed
    fresh = FakeRestorer(FakeClock(), ms=50.0, cls_ms=None)
    rec = T.time_restorer(fresh, ["32x24", "40x24"], cfg, name="fake", modes=("text",), clock=fresh.clock,
                          previous=partial[0])
    assert rec["sizes"]["32x24"] == partial[0]["sizes"]["32x24"]
    assert rec["sizes"]["40x24"]["ms"] == pytest.approx(50)
    assert all(t == ("haze",) for t in fresh.types_seen)
    calls_for_one_size = fresh.calls

    # measured differently (another dtype): nothing is reused
    other = FakeRestorer(FakeClock(), ms=50.0, cls_ms=None)
    rec2 = T.time_restorer(other, ["32x24", "40x24"], quick(mode="text", fixed_type="haze", dtype="bf16"),
                           name="fake", modes=("text",), clock=other.clock, previous=partial[0])
    assert rec2["sizes"]["32x24"]["ms"] == pytest.approx(50)
    assert other.calls == 2 * calls_for_one_size


def test_same_protocol_compares_device_dtype_and_settings():
    a = {"method": "m", "device": "cpu", "dtype": "fp32", "mode": "auto", "weights": "w", "threads": 2,
         "device_type": "cpu", "settings": {"batch": 1, "max_seconds": None, "compile": {"enabled": False}}}
    assert T.same_protocol(a, json.loads(json.dumps(a)))
    for key, value in (("device", "NVIDIA H100"), ("weights", "random"), ("method", "n"), ("threads", 1)):
        assert not T.same_protocol(a, {**a, key: value})
    assert not T.same_protocol(a, {**a, "settings": {**a["settings"], "batch": 2}})
    assert not T.same_protocol(a, {**a, "settings": {**a["settings"], "compile": {"enabled": True}}})


def test_time_restorer_text_mode_times_only_the_restorer():
    clock = FakeClock()
    r = FakeRestorer(clock, ms=25.0, cls_ms=10.0)
    rec = T.time_restorer(r, "64x48", quick(mode="text"), clock=clock)
    t = rec["sizes"]["64x48"]["timing"]
    assert t["total"]["median_ms"] == pytest.approx(25) and t["total"]["source"] == "restorer"
    assert t["classifier"]["median_ms"] == pytest.approx(10)  # still reported separately


def test_settings_and_flags_recorded():
    clock = FakeClock()
    cfg = quick(dtype="bf16", channels_last=True, threads=None, batch=2)
    rec = T.time_restorer(FakeRestorer(clock, cls_ms=None), "32x32", cfg, clock=clock)
    st = rec["settings"]
    assert st["dtype"] == "bf16" and st["autocast_dtype"] == "bfloat16"
    assert st["channels_last"] is True and st["compile"] == {"enabled": False}
    assert st["threads"] == torch.get_num_threads() and st["timer"] == "perf_counter"
    assert st["batch"] == 2 and st["warmup"] == 2 and st["min_iters"] == 5
    assert st["allow_tf32_matmul"] is False and st["cudnn_benchmark"] is False  # CPU: no cudnn
    assert rec["device_type"] == "cpu" and rec["device"].startswith("CPU")
    assert rec["threads"] == torch.get_num_threads()
    json.dumps(rec)  # JSON-able


def test_backend_settings_are_restored():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    with T.backend_settings(TimingConfig(dtype="tf32")):
        assert torch.backends.cudnn.allow_tf32 is True
    with T.backend_settings(TimingConfig(dtype="fp32")):
        assert torch.backends.cudnn.allow_tf32 is False
    after = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    assert before == after


def test_floor_and_below_floor_flag():
    clock = FakeClock()
    r = FakeRestorer(clock, ms=1.0, cls_ms=None)
    flops = 2 * 3 * 64 * 48 * 27
    peak = flops / 2e-3 / 1e12  # the conv would need 2 ms at this peak: 1 ms measured is impossible
    rec = T.time_restorer(r, "64x48", quick(peak_tflops=peak), clock=clock)
    s = rec["sizes"]["64x48"]
    assert s["floor_ms"] == pytest.approx(2.0) and s["below_floor"] is True
    assert s["achieved_tflops"] == pytest.approx(flops / 1e-3 / 1e12)
    assert "(!)" in T.render_timing_table([rec])
    rec2 = T.time_restorer(FakeRestorer(clock, ms=5.0, cls_ms=None), "64x48", quick(peak_tflops=peak), clock=clock)
    assert rec2["sizes"]["64x48"]["below_floor"] is False


class OOMRestorer:
    """Identity-like restorer that "runs out of memory" above 40×40 pixels."""

    name = "oom"

    def __init__(self):
        self.conv = nn.Conv2d(3, 3, 1)

    def restore(self, images, degradation=None):
        if images.shape[-2] * images.shape[-1] > 40 * 40:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.conv(images)

    def to(self, device):
        return self


def test_oom_size_is_timed_tiled_and_marked():
    cfg = quick(tile=32, overlap=8, min_iters=2, max_iters=2)
    rec = T.time_restorer(OOMRestorer(), ["32x32", "100x70"], cfg)
    small, big = rec["sizes"]["32x32"], rec["sizes"]["100x70"]
    assert not small["tiled"]
    assert big["tiled"] and big["tiling"]["tile"] == 32 and "out of memory" in big["tiling"]["reason"]
    assert big["flops"]["restorer"] > 2 * 3 * 3 * 100 * 70  # overlaps are counted
    table = T.render_timing_table([rec])
    assert "†" in table and "tiled" in table


def test_time_methods_through_the_registry_and_errors(monkeypatch):
    recs = T.time_methods("identity", ["32x24"], quick(min_iters=2, max_iters=2))
    assert recs[0]["method"] == "identity" and recs[0]["sizes"]["32x24"]["gflops"] == 0.0
    assert recs[0]["params"] == 0

    def bad(opts):
        raise FileNotFoundError("weights missing")

    from harness import registry

    # registered only for this test (monkeypatch removes it again), so no other test sees it
    monkeypatch.setitem(registry._REGISTRY, "timing-test-broken",
                        registry.MethodSpec("timing-test-broken", bad, "broken", ("text",)))
    recs = T.time_methods(["timing-test-broken"], ["32x24"], quick())
    assert recs[0]["error"].startswith("FileNotFoundError")
    assert "not timed" in T.render_timing_table(recs)


def test_every_method_is_built_by_its_factory_with_the_options(monkeypatch):
    """No model class is known to the timing code: `random_weights` (and the rest) reach the factory."""
    from harness import registry

    seen = []

    def factory(opts):
        seen.append(opts)
        r = FakeRestorer(FakeClock(), cls_ms=None)
        r.weights_label = "random" if opts.random_weights else "released"
        return r

    monkeypatch.setitem(registry._REGISTRY, "timing-test-opts",
                        registry.MethodSpec("timing-test-opts", factory, "options", ("text",)))
    recs = T.time_methods(["timing-test-opts"], ["16x8"], TimingConfig(device="meta", mode="text"),
                          random_weights=True, method_args={"k": "v"})
    assert seen[0].random_weights and seen[0].device == "meta" and seen[0].mode == "text"
    assert dict(seen[0].method_args) == {"k": "v"} and recs[0]["weights"] == "random"
    assert not hasattr(T, "RANDOM_BUILDERS")


def test_sampler_steps_give_flops_per_step():
    class Sampler(FakeRestorer):
        sampler_steps = 4
        meta_flops_note = "counted on shapes only."

        def restore(self, images, degradation=None):
            out = images
            for _ in range(self.sampler_steps):
                out = self.model(out)
            return out

    rec = T.time_restorer(Sampler(FakeClock(), cls_ms=None), ["64x48"], TimingConfig(device="meta"), name="sampler")
    s = rec["sizes"]["64x48"]
    assert s["sampler_steps"] == 4 and s["gflops_per_step"] * 1e9 == pytest.approx(2 * 3 * 64 * 48 * 27)
    assert s["gflops"] == pytest.approx(4 * s["gflops_per_step"])
    table = T.render_timing_table([rec])
    assert "sampler: GFLOPs (and ms) are per restored image with its 4-step sampler" in table
    assert rec["flops_note"] == "counted on shapes only." and "- sampler: counted on shapes only." in table
    plain = T.time_restorer(FakeRestorer(FakeClock(), cls_ms=None), ["64x48"], TimingConfig(device="meta"))
    assert "sampler_steps" not in plain["sizes"]["64x48"]


# ----------------------------------------------------------------------------------------------- peaks


@pytest.mark.parametrize(
    "name,expected,fp32",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 67.0),
        ("NVIDIA H100 PCIe", "H100 PCIe", 51.2),
        ("NVIDIA H200", "H200 SXM", 67.0),
        ("NVIDIA A100-SXM4-80GB", "A100", 19.5),
        ("NVIDIA TITAN RTX", "Titan RTX", 16.3),
        ("NVIDIA GeForce RTX 3090", "RTX 3090", 35.6),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 82.6),
    ],
)
def test_gpu_peak_table(name, expected, fp32):
    p = T.find_gpu_peak(name)
    assert p is not None and p.name == expected and p.tflops("fp32")[0] == fp32


def test_titan_rtx_peaks_by_dtype():
    p = T.find_gpu_peak("TITAN RTX")
    assert p.tflops("fp16")[0] == 130.0
    assert p.tflops("tf32")[0] == 16.3  # no TF32 on Turing
    assert p.tflops("bf16")[0] == 130.0  # not native: upper bound
    assert T.find_gpu_peak("Some Unknown GPU") is None


def test_cpu_peak_estimate_and_override():
    v, src = T.cpu_peak_tflops("fp32", 2)
    assert v > 0 and "estimate" in src
    assert T.device_peak("cpu", "fp32", override=1.5) == (1.5, "--peak-tflops")


@pytest.mark.parametrize(
    "spec,expected",
    [("1080p", ("1080p", 1920, 1080)), ("2K", ("2k", 2560, 1440)), ("640x480", ("640x480", 640, 480))],
)
def test_parse_size(spec, expected):
    assert T.parse_size(spec) == expected


def test_parse_size_rejects_garbage():
    with pytest.raises(ValueError):
        T.parse_size("huge")


# ----------------------------------------------------------------------------------------------- tables


def synthetic_record(device_type="cpu", method="vlur", gflops_1080=300.0, tiled_2k=False):
    def size(w, h, gfl, ms, tiled=False):
        fl = gfl * 1e9
        return {
            "width": w, "height": h, "tiled": tiled,
            "tiling": {"tiled": tiled, "tile": 512 if tiled else None, "overlap": 32 if tiled else None},
            "flops": {"restorer": fl, "classifier": None, "total": fl}, "gflops": gfl,
            "timing": {"restorer": {"median_ms": ms, "iqr_ms": 0.5}, "total": {"median_ms": ms, "iqr_ms": 0.5},
                       "transfer": {"median_ms": 1.0, "iqr_ms": 0.1},
                       "e2e": {"median_ms": ms + 1.0, "iqr_ms": None, "method": "sum"}},
            "ms": ms, "iqr_ms": 0.5, "floor_ms": fl / 1e12 * 1e3, "below_floor": False,
            "achieved_tflops": fl / (ms / 1e3) / 1e12, "utilization": 0.5,
            "titan_rtx_floor_ms": {"fp32": fl / 16.3e12 * 1e3, "fp16": fl / 130e12 * 1e3},
            "peak_mem_mib": 1234.0,
        }

    return {
        "method": method, "params": 12_340_000, "device_type": device_type,
        "device": "CPU (AMD EPYC)" if device_type == "cpu" else "NVIDIA TITAN RTX",
        "dtype": "fp32", "threads": 2, "peak_tflops": 1.0, "peak_source": "test",
        "settings": {"channels_last": False, "compile": {"enabled": False}, "min_iters": 3, "min_seconds": 10,
                     "warmup": 1, "batch": 1, "mode": "auto"},
        "sizes": {"1080p": size(1920, 1080, gflops_1080, 120.0),
                  "2k": size(2560, 1440, gflops_1080 * 16 / 9, 220.0, tiled_2k)},
        "error": None,
    }


def test_markdown_table_columns_and_cpu_label():
    md = T.render_timing_table([synthetic_record()], "md")
    header = md.splitlines()[0]
    for col in ("Method", "Params (M)", "GFLOPs@1080p", "ms@1080p", "floor ms@1080p", "ms@2K", "Peak mem (MiB)",
                "Device", "Dtype"):
        assert col in header
    assert "CPU, 2 thr" in md and "Timed on the CPU" in md
    assert "12.34" in md and "120.00 ± 0.50" in md and "+1234" in md
    detail = T.render_timing_table([synthetic_record()], "md", detail=True)
    assert "restorer ms" in detail and "e2e ms" in detail and "121.00*" in detail


def test_latex_table_escapes_and_marks_tiling():
    tex = T.render_timing_table([synthetic_record(method="one_restore", tiled_2k=True)], "tex")
    assert "\\toprule" in tex and "one\\_restore" in tex and "$\\pm$" in tex and "$^\\dagger$" in tex
    assert "ms@1080p" in tex and "±" not in tex and "†" not in tex


def test_titan_rtx_claim_notes():
    # 300 GFLOPs: FP32 floor 18.4 ms > 10 ms claimed, FP16 floor 2.3 ms < 10 ms
    notes = T.titan_rtx_claim_notes([synthetic_record(gflops_1080=300.0)])
    assert len(notes) == 1 and "only on FP16 tensor cores" in notes[0]
    notes = T.titan_rtx_claim_notes([synthetic_record(gflops_1080=100.0)])
    assert "above the FP32 floor" in notes[0]
    notes = T.titan_rtx_claim_notes([synthetic_record(gflops_1080=2000.0)])
    assert "impossible on a Titan RTX" in notes[0]


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_writes_json_md_tex(tmp_path, capsys):
    rc = T.main(["--methods", "identity", "--sizes", "32x24", "--device", "cpu", "--iters", "2",
                 "--max-iters", "2", "--min-seconds", "0", "--warmup", "0", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "timing.json").read_text())
    assert data["timing"][0]["method"] == "identity"
    assert (tmp_path / "timing.md").read_text().startswith("| Method")
    assert "\\toprule" in (tmp_path / "timing.tex").read_text()
    assert "ms@32x24" in capsys.readouterr().out


def test_cli_resume_keeps_finished_sizes_and_other_methods(tmp_path, capsys, monkeypatch):
    import methods_for_tests  # noqa: F401 - registers test-slow

    monkeypatch.setenv("TEST_SLOW_SECONDS", "0")
    quick_args = ["--device", "cpu", "--iters", "2", "--max-iters", "2", "--min-seconds", "0", "--warmup", "0",
                  "--out", str(tmp_path)]
    assert T.main(["--methods", "identity,test-slow", "--sizes", "32x24", *quick_args]) == 0
    first = {r["method"]: r for r in T.read_timing(tmp_path / "timing.json")}
    capsys.readouterr()
    assert T.main(["--methods", "identity", "--sizes", "32x24,16x16", "--resume", *quick_args]) == 0
    assert "kept from the earlier run" in capsys.readouterr().err
    recs = {r["method"]: r for r in T.read_timing(tmp_path / "timing.json")}
    assert recs["identity"]["sizes"]["32x24"] == first["identity"]["sizes"]["32x24"]
    assert "16x16" in recs["identity"]["sizes"]
    assert recs["test-slow"] == first["test-slow"]  # a method not named again keeps its record
    # without --resume the folder is measured afresh
    assert T.main(["--methods", "identity", "--sizes", "16x16", *quick_args]) == 0
    fresh = T.read_timing(tmp_path / "timing.json")
    assert len(fresh) == 1 and list(fresh[0]["sizes"]) == ["16x16"]
    (tmp_path / "timing.json").write_text("{not json")
    assert T.main(["--methods", "identity", "--sizes", "16x16", "--resume", *quick_args]) == 2
    assert "timing.json" in capsys.readouterr().err


def test_cli_rejects_unknown_size_and_method(capsys):
    assert T.main(["--methods", "identity", "--sizes", "huge"]) == 2
    assert T.main(["--methods", "nosuchmethod"]) == 2
    assert "error" in capsys.readouterr().err


def test_run_for_harness_merges_into_summary(tmp_path):
    from argparse import Namespace

    (tmp_path / "summary.json").write_text(json.dumps({"methods": ["identity"]}))
    args = Namespace(device="cpu", mode="auto,text", threads=None, weights_dir=None, weights=None)
    recs = T.run_for_harness(["identity"], tmp_path, args, sizes=["32x24"], log=None, min_iters=2, max_iters=2,
                             min_seconds=0.0, warmup=0)
    assert recs[0]["mode"] == "auto"
    from harness.evaluation import EvalConfig

    cfg = EvalConfig(methods=["identity"], modes=("text",), device="cpu", random_weights=True)
    recs = T.run_for_harness(["identity"], tmp_path, cfg, sizes=["32x24"], log=None, min_iters=2, max_iters=2,
                             min_seconds=0.0, warmup=0)
    assert recs[0]["mode"] == "text"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["methods"] == ["identity"] and summary["timing"][0]["method"] == "identity"
    assert (tmp_path / "timing.md").is_file() and (tmp_path / "timing.tex").is_file()


def test_flops_under_inference_mode_with_a_parameter_as_module_input():
    """FlopCounterMode's module tracker fails here (a parameter fed to a module under inference mode)."""
    emb = nn.Embedding(12, 30)
    mlp = nn.Linear(30, 8)

    def fn():
        with torch.inference_mode():
            return mlp(emb.weight)

    flops, out = T.count_flops(fn)
    assert flops == 2 * 12 * 30 * 8 and out.shape == (12, 8)


def test_flops_only_on_the_meta_device():
    r = FakeRestorer(FakeClock(), cls_ms=10.0)
    rec = T.time_restorer(r, ["64x48"], TimingConfig(device="meta"))
    s = rec["sizes"]["64x48"]
    assert s["flops"]["restorer"] == 2 * 3 * 64 * 48 * 27 and s["flops"]["total"] == s["flops"]["restorer"]
    assert s["ms"] is None and s["timing"] == {} and s["flops_device"] == "meta"
    assert rec["params"] == 94 and rec["device_type"] == "meta"
    md = T.render_timing_table([rec])
    assert "FLOPs only" in md and "ms: median" not in md

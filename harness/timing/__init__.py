"""Inference timing at 1080p and 2K: latency, FLOPs, memory, and the distance to the hardware's limit.

    python -m harness.timing --methods vlur,onerestore --sizes 1080p,2k --device cuda --dtype fp32 \
        --weights-dir weights/ --out results/timing
    python -m harness.timing --methods onerestore,promptir,airnet,vlur --flops-only --random-weights

Every method is built by its own factory through `harness.registry.create_restorer`; `--random-weights` passes
`MethodOptions(random_weights=True)`, i.e. each method's seeded random initialisation (timm's `pretrained=False`;
the speed does not depend on the values; recorded as weights "random"). `--flops-only` counts parameters and
FLOPs on the meta device (nothing runs, seconds to minutes on any machine) and fills the FLOPs / Titan RTX floor
columns only. API: `time_methods(...)` / `time_restorer(...)` → JSON-able records;
`render_timing_table(records, "md"|"tex")`; `run_for_harness(...)` for `harness.run --timing`;
`write_timing(records, out)`.

Package layout, one concern per module (everything public is re-exported here):
`config` sizes, dtypes, `TimingConfig`; `peaks` device peak FLOP/s, CPU estimate, Titan RTX floors;
`measure` the timing loop and its statistics; `memory` peak memory; `flops` FLOP counting (parameter counting
and the device name: `harness.provenance`); `backend` TF32 / autocast / channels_last / torch.compile set-up and
the recorded settings; `restorer` one built restorer at each size (`time_restorer`, meta-device counting,
`same_protocol`); `methods` methods from the registry (`time_methods`, `run_for_harness`); `io`
timing.json/md/tex; `render` tables and notes; `cli` the command line (`__main__`).

What is measured, for every method and size (W×H; 1080p = 1920×1080, 2k = 2560×1440, or any "WxH"):

* **restorer** — `restore(x, [fixed_type] * B)`: the restoration network with the degradation type given
  (text mode), input already on the device. Methods that do not accept a type get `restore(x, None)`.
* **classifier** — `restorer.classifier.classify(x)`, when the method has a classifier (AutoRestorer).
* **total** — what the method costs in the chosen `--mode`: in `auto` mode with a classifier,
  `restore_auto(x)` (classifier + restorer, measured together, not summed); otherwise the restorer time.
* **transfer** — copying a CPU uint8 B×3×H×W batch to the device, converting it to float in [0, 1], and
  the reverse for the output (clamp, ×255, round, uint8, back to the CPU); pageable host memory.
* **e2e** — end-to-end: transfer + total in one call. Measured directly on CUDA (default); on the CPU, where
  there is no copy, it is reported as total + transfer (`"e2e_method": "sum"`) unless `--e2e` is given.

The compute times ("restorer", "classifier", "total") exclude host↔device copies; "e2e" includes them.

Protocol. GPU: `cudnn.benchmark` on (switch off with `--no-cudnn-benchmark`), warm-up calls at each size
(10 by default), then timed calls, each between two CUDA events recorded on the current stream and
synchronised after every call (so a call's time is its full latency, launch gaps included), until at least
50 calls *and* at least 2 s have been timed (capped at 10 000 calls). CPU: the same statistics with
`time.perf_counter`, 1 warm-up call, at least 3 calls and 10 s by default (a mid-size model at 1080p takes
a few minutes per size, not hours), the torch thread count recorded. Reported: median and interquartile
range (numpy's linear percentiles), mean, std, min, max, number of calls; warm-up calls are never in the
statistics. Every call runs under `torch.inference_mode()`.

Precision (`--dtype`): `fp32` disables TF32 for both matmul and cuDNN (true FP32; note that PyTorch's own
default lets cuDNN convolutions use TF32); `tf32` enables both; `bf16` / `fp16` run under
`torch.autocast` with that dtype (TF32 off for what stays in FP32). `--channels-last` converts the
method's modules and the input to channels_last; `--compile` wraps `restore`, `restore_auto` and
`classifier.classify` in `torch.compile` (the warm-up calls include the compilation). All of these
settings, the torch/CUDA/cuDNN versions and the thread counts are recorded in each record's "settings".

FLOPs. `torch.utils.flop_counter.FlopCounterMode` around one eager call at the real size, on the device being
timed (that call is the first warm-up call; with `--compile` it is an extra eager call). FLOPs = 2 per
multiply-accumulate, counted for the operations that counter knows (convolutions, matrix products, attention) plus
torchvision's deformable convolution (registered here: its convolution MACs, not the bilinear sampling);
element-wise operations, normalisations and activations are not counted. OneRestore at 720×1080 counts 275.1
GFLOPs this way. An iterative sampler (WeatherDiffusion's DDIM) is counted per restored image, all its steps
included; a restorer that declares `sampler_steps` (network passes over the whole image per restored image) also
gets `sampler_steps` and `gflops_per_step` (and, when timed, `ms_per_step` = restorer ms / steps) in each size's
record, and a table note; a restorer's `meta_flops_note` (how its meta-device count differs from a real run's) is
recorded as `flops_note` and printed under the table. Because uncounted work only adds time, the *floor* below
remains a valid lower bound. Tiled runs count the FLOPs actually executed (overlaps included).

Distance to the limit. `floor ms` = counted FLOPs / the device's peak FLOP/s for the dtype: the time the
device would need at 100 % utilisation. A measured time below it is impossible and is flagged ("(!)",
`below_floor`). Peaks are the vendors' dense (no sparsity) figures in `GPU_PEAKS`: FP32 = the CUDA-core
rate, TF32 and FP16/BF16 = tensor-core rates with FP32 accumulation (what cuBLAS/cuDNN use under
PyTorch; GeForce cards are twice as fast with FP16 accumulation). Where a dtype has no tensor-core path
(TF32 on Turing) the next slower path is used; where it is not supported natively (BF16 on Turing) the FP16
tensor rate is used, an upper bound on the device's speed, so the floor stays a lower bound. On the CPU the
peak is an estimate (threads × max clock × FLOP/cycle from the SIMD flags: 32 with AVX2+FMA, 64 with
AVX-512, ×2 for BF16 with AVX512_BF16, 2048 per cycle with AMX) unless `--peak-tflops` gives it.
Each record also carries the Titan RTX floors (16.3 TFLOP/s FP32, 130 TFLOP/s FP16 tensor) at 1080p and
2K, which the rendered table checks against the VL-UR paper's claims (10 ms @1080p, 20 ms @2K on a Titan
RTX).

Memory. CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, over the warm-up and
timed calls of each measurement (weights, input and activations; `increase_mib` = peak − allocated before).
CPU: the rise of the process's peak resident set size over those calls — freed heap memory is first returned to the
OS (glibc `malloc_trim(0)`), the peak (VmHWM) is reset through `/proc/self/clear_refs` ("5") and
`VmHWM after − VmRSS before` is reported, i.e. the activations' working set (weights and input are
already resident); the absolute peak RSS is kept as `peak_rss_mib`; "n/a" where /proc is not available.

Out of memory. If a size does not fit, the restorer (and `restore_auto`'s restorer part) runs through
`harness.tiling.tiled_restore` (tile 512, overlap 32, linear blending; halved while it still does not
fit); the record says `tiled: true` with the tile, and the tables mark it with †.
"""

from harness.provenance import count_parameters, device_name, modules_in
from harness.timing.backend import Prepared, autocast_for, backend_settings, prepare, recorded_settings
from harness.timing.cli import build_parser, main
from harness.timing.config import (
    AUTOCAST,
    DTYPES,
    SIZE_LABELS,
    SIZES,
    TimingConfig,
    parse_size,
    parse_sizes,
    size_label,
)
from harness.timing.flops import count_flops, flop_counter, sampler_steps
from harness.timing.io import read_timing, write_timing
from harness.timing.measure import measure, summarize
from harness.timing.memory import PeakMemory
from harness.timing.methods import run_for_harness, time_methods
from harness.timing.peaks import (
    CLAIM_DEVICE,
    GPU_PEAKS,
    PAPER_CLAIMS_MS,
    TITAN_RTX,
    DevicePeak,
    cpu_peak_tflops,
    device_peak,
    find_gpu_peak,
    titan_floors,
)
from harness.timing.render import render_timing_table, sampler_step_notes, timing_notes, titan_rtx_claim_notes
from harness.timing.restorer import PROTOCOL_FIELDS, PROTOCOL_SETTINGS, same_protocol, time_restorer

__all__ = [
    "AUTOCAST",
    "CLAIM_DEVICE",
    "DTYPES",
    "GPU_PEAKS",
    "PAPER_CLAIMS_MS",
    "PROTOCOL_FIELDS",
    "PROTOCOL_SETTINGS",
    "SIZES",
    "SIZE_LABELS",
    "TITAN_RTX",
    "DevicePeak",
    "PeakMemory",
    "Prepared",
    "TimingConfig",
    "autocast_for",
    "backend_settings",
    "build_parser",
    "count_flops",
    "count_parameters",
    "cpu_peak_tflops",
    "device_name",
    "device_peak",
    "find_gpu_peak",
    "flop_counter",
    "main",
    "measure",
    "modules_in",
    "parse_size",
    "parse_sizes",
    "prepare",
    "read_timing",
    "recorded_settings",
    "render_timing_table",
    "run_for_harness",
    "same_protocol",
    "sampler_step_notes",
    "sampler_steps",
    "size_label",
    "summarize",
    "time_methods",
    "time_restorer",
    "timing_notes",
    "titan_floors",
    "titan_rtx_claim_notes",
    "write_timing",
]

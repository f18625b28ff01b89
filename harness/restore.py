"""`python -m harness.restore --method vlur IN OUT`: restore one image or a folder of images, no ground truth.

The method is built exactly as for an evaluation (`harness.registry.create_restorer`, the same weights
options); IN is an image file or a folder (its images, not recursive); OUT is the output file (for one
image) or folder. Restored images are written as 8-bit PNG with the same clamp and rounding the scores use.
``--type haze`` gives the degradation type as text (text mode); otherwise the method's own classifier picks
it (auto mode) and the predicted type is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from harness import cli, metrics, registry
from harness.cli import log
from harness.data.cdd11 import IMAGE_EXTENSIONS, ImageReadError, read_rgb8
from harness.degradations import TYPES
from harness.evaluation import ConfigError, check_device
from harness.producers import model_producer
from harness.records import error_text


def restore_paths(method: str, inputs: Sequence[Path], outputs: Sequence[Path], *, type_name: str | None = None,
                  device: str = "cpu", weights_dir: Path | None = None, weights: Path | None = None,
                  method_args: dict | None = None) -> list[tuple[Path, str | None, str | None]]:
    """Restore each input into its output path; returns (output, predicted type or None, error or None)."""
    if type_name is not None and type_name not in TYPES:
        raise ConfigError(f"unknown type {type_name!r}; valid: {', '.join(TYPES)}")
    dev = check_device(device)
    mode = "text" if type_name else "auto"
    opts = registry.MethodOptions(device=str(dev), mode=mode, weights_dir=weights_dir, weights=weights,
                                  method_args=method_args or {})
    torch.manual_seed(0)
    restorer = registry.create_restorer(method, opts)
    restorer = restorer.to(dev) or restorer
    produce = model_producer(restorer, mode, dev)
    from PIL import Image

    from harness.data.cdd11 import LoadedPair, Pair

    done = []
    for src, dst in zip(inputs, outputs):
        try:
            img, _ = read_rgb8(src)
            lp = LoadedPair(Pair(type_name or "unknown", src.name, src, None), degraded=img)
            out, pred, _ = produce(lp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(metrics.to_uint8(out)[0]).save(dst, format="PNG")
            done.append((dst, pred, None))
        except (ImageReadError, OSError, RuntimeError, ValueError) as e:
            done.append((dst, None, error_text(e, src)))
    return done


def plan(inp: Path, out: Path) -> tuple[list[Path], list[Path]]:
    if inp.is_file():
        dst = out if out.suffix.lower() == ".png" else out / (inp.stem + ".png")
        return [inp], [dst]
    if inp.is_dir():
        files = sorted(p for p in inp.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ConfigError(f"{inp} holds no image file ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file; for a folder of inputs name an output folder")
        stems = [p.stem for p in files]
        return files, [out / ((p.name if stems.count(p.stem) > 1 else p.stem) + ".png") for p in files]
    raise ConfigError(f"input {inp} does not exist")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.restore", formatter_class=cli.Formatter,
                                description="Restore an image or a folder of images with a registered method.")
    p.add_argument("input", type=Path, help="an image file or a folder of images")
    p.add_argument("output", type=Path, help="output .png file (one input) or folder")
    p.add_argument("--method", required=True, help="registered method name (python -m harness.run --list)")
    p.add_argument("--type", dest="type_name", default=None, choices=TYPES,
                   help="give the degradation type as text (default: the method's classifier picks it)")
    p.add_argument("--weights-dir", type=Path, default=None, help="folder with the authors' released weights")
    p.add_argument("--weights", type=Path, default=None, help="one checkpoint file")
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE", help="method setting")
    cli.add_common(p, mode=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.quiet)

    def go() -> int:
        if args.threads:
            torch.set_num_threads(args.threads)
        inputs, outputs = plan(args.input, args.output)
        done = restore_paths(args.method, inputs, outputs, type_name=args.type_name, device=args.device,
                             weights_dir=args.weights_dir, weights=args.weights,
                             method_args=cli.method_args(args.method_arg))
        failed = 0
        for dst, pred, err in done:
            if err:
                failed += 1
                log.error(f"failed: {err}")
            else:
                print(f"{dst}" + (f"  (predicted type: {pred})" if pred else ""))
        return cli.EXIT_FAILURES if failed else cli.EXIT_OK

    return cli.run_command(go, None, args.imports, what="restored image")


if __name__ == "__main__":
    sys.exit(main())

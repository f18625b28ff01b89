"""Method registry: `@register("name")` on a factory, lazy import of the built-in method modules.

A factory is called as `factory(opts)` with a `MethodOptions` and returns a `Restorer`. Built-in
methods live one per module under `baselines/` and `vlur/`; they are imported only when asked for, so
`--list` and a run of `identity` never import a model. Third-party packages add methods through the
`vlur_harness.methods` entry-point group (value: the module to import).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from harness.protocol import Restorer

#: method name -> module that registers it (imported on first use).
BUILTIN_MODULES: dict[str, str] = {
    "identity": "baselines.identity",
    "onerestore": "baselines.onerestore",
    "promptir": "baselines.promptir",
    "airnet": "baselines.airnet",
    "mirnetv2": "baselines.mirnetv2",
    "oknet": "baselines.oknet",
    "fourmer": "baselines.fourmer",
    "weatherdiff": "baselines.weatherdiff",
    "transweather": "baselines.transweather",
    "wgws-net": "baselines.wgws",
    "moce-ir": "baselines.moce_ir",
    "vlur": "vlur.method",
    "vlur-zeroshot": "vlur.method",
}


@dataclass(frozen=True)
class MethodOptions:
    """What the command line says about how to build a method."""

    device: str = "cpu"
    mode: str = "auto"  # "auto": the method's classifier picks the type; "text": the true type is given
    weights_dir: Path | None = None  # folder holding the authors' released files
    weights: Path | None = None  # one explicit checkpoint file
    # Build the network with its own seeded random initialisation instead of loading any file (timm's
    # `pretrained=False`): for timing, FLOP counting and contract tests. The restorer's `weights_label` is "random".
    random_weights: bool = False
    # Method-specific settings from `--method-arg KEY=VALUE` (e.g. WGWS-Net's weather flag); each method
    # documents the keys it reads and refuses unknown ones.
    method_args: Mapping[str, str] = field(default_factory=dict)


class MethodArgError(ValueError):
    """A `--method-arg` the method does not know, or a value it does not accept."""


def check_method_args(method: str, opts: MethodOptions, accepted: Mapping[str, str]) -> dict[str, str]:
    """Refuse `opts.method_args` keys that `method` does not read; `accepted` maps each key it reads to a
    one-line description used in the message. Returns the given arguments as a plain dict."""
    unknown = sorted(set(opts.method_args) - set(accepted))
    if unknown:
        known = "; ".join(f"{k}: {d}" for k, d in accepted.items()) or "none"
        raise MethodArgError(f"{method}: unknown --method-arg {', '.join(unknown)} (accepted: {known})")
    return dict(opts.method_args)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    factory: Callable[[MethodOptions], Restorer]
    description: str
    modes: tuple[str, ...]  # "auto" and/or "text"; ("text",) means the method ignores the type


_REGISTRY: dict[str, MethodSpec] = {}


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


def register(name: str, *, description: str = "", modes: tuple[str, ...] = ("auto",)):
    """Decorator registering `factory(opts: MethodOptions) -> Restorer` under `name`."""

    def deco(factory):
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = MethodSpec(name, factory, description or (factory.__doc__ or "").strip(), modes)
        return factory

    return deco


def _plugin_modules() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="vlur_harness.methods")}


def available() -> list[str]:
    """All method names that can be created (built-in, plugins, and anything registered so far)."""
    return sorted(set(BUILTIN_MODULES) | set(_plugin_modules()) | set(_REGISTRY))


def get_spec(name: str) -> MethodSpec:
    if name not in _REGISTRY:
        module = BUILTIN_MODULES.get(name) or _plugin_modules().get(name)
        if module is None:
            close = difflib.get_close_matches(name, available(), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownMethodError(
                f"unknown method {name!r}.{hint} Known methods: {', '.join(available())} "
                "(python -m harness.run --list)"
            )
        importlib.import_module(module)
        if name not in _REGISTRY:
            raise UnknownMethodError(f"module {module} was imported but did not register method {name!r}")
    return _REGISTRY[name]


def create_restorer(name: str, opts: MethodOptions | None = None) -> Restorer:
    """Build the named method (timm's `create_model` for restorers)."""
    return get_spec(name).factory(opts or MethodOptions())


def parse_methods(spec: str) -> list[str]:
    """Split a comma-separated `--methods` value and check every name before any work starts."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UnknownMethodError("no method given; try --methods identity")
    for n in names:
        if n not in available():
            get_spec(n)  # raises with a suggestion
    return names

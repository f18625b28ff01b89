"""Method registry: `@register("name")` on a factory, lazy import of the built-in method modules.

A factory is called as `factory(opts)` with a `MethodOptions` and returns a `Restorer`. Built-in
methods live one per module under `baselines/` and `vlur/`; they are imported only when asked for, so
`--list` and a run of `identity` never import a model. Third-party packages add methods through the
`vlur_harness.methods` entry-point group (value: the module to import). Every built-in method also carries a
`MethodInfo` (paper, code, licence, released files, modes, adapter conventions; `method_info(name)`), from which
README's method tables are generated (`harness.methods_doc`).
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
class Paper:
    title: str
    venue: str  # e.g. "ECCV", "TPAMI", "arXiv"
    year: int
    url: str = ""  # where it can be read, when the venue alone does not find it (an arXiv preprint)

    def __str__(self) -> str:
        return f"{self.title} ({self.venue} {self.year}{', ' + self.url if self.url else ''})"


@dataclass(frozen=True)
class MethodInfo:
    """Everything about a method that is not code (timm's `default_cfgs`): one record per method, declared
    as `INFO` in its module (`PUBLISHED_AT`, `CHECKPOINT_NAME`, ... are read from it) and passed to
    `@register(..., info=INFO)`. README's method tables are rendered from these (`python -m harness.methods_doc`).

    Every field is required; say "none"/"not stated" in words rather than leaving one empty.
    """

    display: str  # human name, e.g. "OneRestore"
    paper: Paper | None  # None only for a method that is no publication (identity)
    code: str  # the official code repository (URL), or why there is none
    licence: str  # as stated by the official repository (its LICENSE file); "not stated" when it has none
    files: tuple[str, ...]  # released file name(s) looked for in --weights-dir, in load order; () = none
    checkpoint_format: str  # what those files hold (state_dict layout, wrapper keys)
    published_at: str  # where the authors publish the files (used by MissingWeightsError)
    modes: tuple[str, ...]  # "auto" and/or "text"; () = classifier only
    blind: bool  # True: the method infers the degradation itself and ignores a given type
    adapter: str  # one line: what the adapter does around the official network (input range, padding, ...)
    demo_weights: tuple[str, ...] = ()  # files shipped with this package (repository paths); () = none
    without_weights: str = "error naming the file"  # what a run without --weights-dir / --weights does
    weights_note: str = ""  # extra words for the README's file column (other releases, --weights use)

    def missing(self) -> list[str]:
        """Names of fields left empty (an empty `files` is fine when `checkpoint_format` says why)."""
        out = [f for f in ("display", "code", "licence", "checkpoint_format", "published_at", "adapter",
                           "without_weights") if not str(getattr(self, f)).strip()]
        if self.paper is not None and not (self.paper.title and self.paper.venue and self.paper.year):
            out.append("paper")
        return out


@dataclass(frozen=True)
class MethodSpec:
    name: str
    factory: Callable[[MethodOptions], Restorer]
    description: str
    modes: tuple[str, ...]  # "auto" and/or "text"; ("text",) means the method ignores the type
    info: MethodInfo | None = None


_REGISTRY: dict[str, MethodSpec] = {}


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


def register(name: str, *, description: str = "", modes: tuple[str, ...] | None = None,
             info: MethodInfo | None = None):
    """Decorator registering `factory(opts: MethodOptions) -> Restorer` under `name`. `modes` defaults to
    `info.modes` (else ("auto",)); given both, they must agree."""
    if info is not None and modes is not None and tuple(modes) != tuple(info.modes):
        raise ValueError(f"method {name!r}: modes {modes} differ from its info's {info.modes}")
    modes = tuple(modes if modes is not None else info.modes if info is not None else ("auto",))

    def deco(factory):
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = MethodSpec(name, factory, description or (factory.__doc__ or "").strip(), modes, info)
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


def method_info(name: str) -> MethodInfo:
    """The metadata record of a registered method (`UnknownMethodError` if it has none)."""
    info = get_spec(name).info
    if info is None:
        raise UnknownMethodError(f"method {name!r} was registered without info=MethodInfo(...)")
    return info


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

"""The OneRestore ablation of VL-UR's training (`python -m vlur.train --arch onerestore`): rebuilding a
`OneRestoreRestorer` from its checkpoint.

Such a checkpoint (`harness.checkpoints` format, arch "onerestore") holds OneRestore(channel) and the 12×324
type table it was trained with, but no embedder: auto mode asks a VL-UR scene classifier for the type — `sc.pt`
beside the file, else the shipped demo scene classifier. `harness.checkpoints.LOADERS` names
`onerestore_from_checkpoint`, so the `onerestore` method (baselines/) loads these files without importing vlur/.
"""

from __future__ import annotations

from pathlib import Path

from baselines.onerestore import DEMO_SC, DEMO_WEIGHTS, OneRestore, OneRestoreRestorer, TableEmbedder
from harness.checkpoints import check_checkpoint
from harness.weights import WeightsError, load_strict, strip_prefix
from vlur.classifier import load_classifier


def onerestore_from_checkpoint(obj: dict, path: Path, mode: str = "auto") -> OneRestoreRestorer:
    """A `vlur.train --arch onerestore` checkpoint: OneRestore(channel) + its type table + a scene classifier
    (`sc.pt` beside the file, else the shipped demo scene classifier)."""
    path = Path(path)
    check_checkpoint(obj, str(path), arch="onerestore")
    model = OneRestore(int(obj["config"].get("channel", 32)), bool(obj["config"].get("antialias", False)))
    load_strict(model, strip_prefix(obj["state_dict"], "module."), path)
    if "type_table" not in obj:
        raise WeightsError(f"{path}: a vlur.train onerestore checkpoint without its 'type_table'")
    sc_path = path.parent / "sc.pt"
    if not sc_path.is_file():
        sc_path = DEMO_SC
    if not sc_path.is_file():
        raise WeightsError(f"{path}: auto mode needs a scene classifier: neither {path.parent / 'sc.pt'} nor {DEMO_SC}")
    # text mode reads the type table of the checkpoint itself: the classifier does not change its outputs
    sc_files = [] if mode == "text" else [sc_path]
    shared = "shared" if sc_path.resolve() == DEMO_SC.resolve() else str(sc_path)
    embedder = TableEmbedder(obj["type_table"], load_classifier(sc_path),
                             name=f"VL-UR scene classifier ({shared})", weights_files=sc_files)
    label = "demo" if path.resolve() == DEMO_WEIGHTS else "custom"
    files = [path, *sc_files]
    return OneRestoreRestorer(model.eval(), embedder, weights_label=label, weights_files=files,
                              meta=dict(obj.get("meta") or {}))

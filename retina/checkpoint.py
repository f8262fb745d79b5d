"""Checkpoints: our format (weights + config + provenance), imports of other layouts, all loaded safely.

Our format is a dict ``{"format": "retina", "version": 1, "config": to_dict(DetectorCfg), "state_dict":
..., "provenance": {...}, "extra": {...}}`` saved with ``torch.save`` and read with ``weights_only=True``.

Imports (strict: every tensor lands somewhere, every parameter is filled, shapes match, else a
:class:`CheckpointError` names the mismatch):
- biubug6/Pytorch_Retinaface state dicts (``mobilenet0.25`` and ``resnet50``, with or without ``module.``);
- ImageNet backbones: the biubug6 ``mobilenetV1X0.25_pretrain.tar`` layout and torchvision ResNet state dicts.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from retina.config import DetectorCfg, from_dict, preset, to_dict
from retina.errors import CheckpointError
from retina.results import write_bytes

FORMAT = "retina"
VERSION = 1

# biubug6 layout -> ours. Applied in order to each key (after stripping "module."); first match wins.
_MOBILENET_BLOCK = [
    (r"^stage1\.0\.0\.(.*)$", r"stages.0.0.conv.\1"),  # stem conv
    (r"^stage1\.0\.1\.(.*)$", r"stages.0.0.bn.\1"),
    (r"^stage(\d)\.(\d+)\.0\.(.*)$", r"stages.{s}.\2.dw.conv.\3"),
    (r"^stage(\d)\.(\d+)\.1\.(.*)$", r"stages.{s}.\2.dw.bn.\3"),
    (r"^stage(\d)\.(\d+)\.3\.(.*)$", r"stages.{s}.\2.pw.conv.\3"),
    (r"^stage(\d)\.(\d+)\.4\.(.*)$", r"stages.{s}.\2.pw.bn.\3"),
]
_RESNET_BLOCK = [
    (r"^conv1\.(.*)$", r"stem.0.\1"),
    (r"^bn1\.(.*)$", r"stem.1.\1"),
    (r"^layer(\d)\.(.*)$", r"layers.{l}.\2"),
]
_SSH = {
    "conv3X3": "branch3",
    "conv5X5_1": "branch5_1",
    "conv5X5_2": "branch5_2",
    "conv7X7_2": "branch7_2",
    "conv7x7_3": "branch7_3",
}
_HEADS = {"ClassHead": "cls_head", "BboxHead": "box_head", "LandmarkHead": "landmark_head"}


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            out = m.expand(repl)
            if "{s}" in out:
                out = out.replace("{s}", str(int(m.group(1)) - 1))
            if "{l}" in out:
                out = out.replace("{l}", str(int(m.group(1)) - 1))
            return out
    return None


def _biubug6_key(key: str) -> str | None:
    """A biubug6 RetinaFace key -> our key (None when it has no counterpart)."""
    if key.startswith("body."):
        inner = key[len("body.") :]
        new = _rename(inner, _MOBILENET_BLOCK) or _rename(inner, _RESNET_BLOCK)
        return f"backbone.{new}" if new else None
    m = re.match(r"^fpn\.(output|merge)(\d)\.([01])\.(.*)$", key)
    if m:
        kind = "lateral" if m.group(1) == "output" else "merge"
        part = "conv" if m.group(3) == "0" else "bn"
        return f"fpn.{kind}.{int(m.group(2)) - 1}.{part}.{m.group(4)}"
    m = re.match(r"^ssh(\d)\.(\w+)\.([01])\.(.*)$", key)
    if m and m.group(2) in _SSH:
        part = "conv" if m.group(3) == "0" else "bn"
        return f"contexts.{int(m.group(1)) - 1}.{_SSH[m.group(2)]}.{part}.{m.group(4)}"
    m = re.match(r"^(ClassHead|BboxHead|LandmarkHead)\.(\d+)\.conv1x1\.(.*)$", key)
    if m:
        return f"{_HEADS[m.group(1)]}.convs.{m.group(2)}.{m.group(3)}"
    return None


def strip_module_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that DataParallel/DDP add."""
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def safe_load(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True``; any failure is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with warnings.catch_warnings():  # a plain pickle: torch warns before failing; our error says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, unsafe content; torch's text spans many lines
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if unsafe:
            raise CheckpointError(
                f"cannot load {path}: it refers to the Python object {unsafe.group(1)}, which is never loaded "
                "from a weights file (only tensors and plain data are)"
            ) from None
        raise CheckpointError(f"cannot load {path}: not a PyTorch weights file ({type(exc).__name__})") from None


def _is_named(payload: Any) -> bool:
    """A mapping with string keys (a state dict or a checkpoint dict)."""
    return isinstance(payload, Mapping) and all(isinstance(k, str) for k in payload)


def _mapping(payload: Any, path: str | os.PathLike) -> Mapping[str, Any]:
    if not _is_named(payload):
        raise CheckpointError(f"{path}: neither a retina checkpoint nor a state dict ({type(payload).__name__})")
    return payload


def _load_strict(model: nn.Module, state: Mapping[str, Tensor], source: str, prefix: str = "") -> None:
    """Copy ``state`` into ``model`` (keys relative to ``prefix``); no missing, unused or mis-shaped tensors."""
    target = {k[len(prefix) :]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    missing = sorted(set(target) - set(state))
    unused = sorted(set(state) - set(target))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sorted(set(state) & set(target))
        if state[k].shape != target[k].shape
    ]
    if missing or unused or shapes:
        lines = [f"{source} does not match the model:"]
        for title, items in (("missing", missing), ("unused", unused), ("wrong shape", shapes)):
            if items:
                lines.append(f"  {len(items)} {title}: " + ", ".join(items[:6]) + (" ..." if len(items) > 6 else ""))
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        own = model.state_dict()
        for k, v in state.items():
            own[prefix + k].copy_(v)


def _translate(state: Mapping[str, Tensor], rename, source: str) -> dict[str, Tensor]:
    """Rename every key with ``rename`` (key -> new key or None); any key without a counterpart is an error."""
    out = {k: rename(k) for k in state}
    unknown = [k for k, new in out.items() if new is None]
    if unknown:
        raise CheckpointError(f"{source}: unrecognised keys: {', '.join(unknown[:6])}")
    return {new: state[k] for k, new in out.items()}


def convert_biubug6(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A biubug6 RetinaFace state dict -> our keys. Keys without a counterpart raise CheckpointError."""
    return _translate(strip_module_prefix(state), _biubug6_key, "biubug6 state dict")


def guess_biubug6_preset(state: Mapping[str, Tensor]) -> str | None:
    """'mobilenet0.25' or 'resnet50' from a biubug6 state dict's key names (None: not biubug6)."""
    keys = set(strip_module_prefix(state))
    if "body.stage1.0.0.weight" in keys:
        return "mobilenet0.25"
    if "body.layer1.0.conv1.weight" in keys:
        return "resnet50"
    return None


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    cfg: DetectorCfg,
    provenance: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write our checkpoint format atomically (``extra``: optimizer state etc., tensors and plain data)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": to_dict(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "provenance": dict(provenance or {}),
        "extra": dict(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike, preset_name: str | None = None) -> tuple[DetectorCfg, dict, dict]:
    """(config, state dict in our keys, the whole payload) from our format or a biubug6 file.

    ``preset_name`` is required for nothing, but when given it must match the file's architecture.
    """
    payload = safe_load(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a state dict or retina checkpoint ({type(payload).__name__})")
    if payload.get("format") == FORMAT:
        cfg = _retina_config(payload, path)
        if preset_name is not None and preset(preset_name) != cfg:
            raise CheckpointError(
                f"{path} holds a {cfg.name!r} model, which is not the requested preset {preset_name!r}"
            )
        return cfg, payload["state_dict"], payload
    state = payload.get("state_dict", payload)
    guessed = guess_biubug6_preset(state) if _is_named(state) else None
    if guessed is None:
        raise CheckpointError(f"{path}: neither a retina checkpoint nor a biubug6 RetinaFace state dict")
    if preset_name is not None and preset_name != guessed:
        raise CheckpointError(f"{path} holds biubug6 {guessed!r} weights, not the requested preset {preset_name!r}")
    return preset(guessed), convert_biubug6(state), {"format": "biubug6", "source": str(path)}


def _retina_config(payload: Mapping[str, Any], path: str | os.PathLike) -> DetectorCfg:
    """The config of a retina-format payload, checked: supported version, a valid config, a state dict."""
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: retina checkpoint version {payload.get('version')} is not supported")
    try:
        cfg = from_dict(DetectorCfg, payload["config"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: a retina checkpoint without a valid config ({type(exc).__name__})") from None
    if not isinstance(payload.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: a retina checkpoint without a state dict")
    return cfg


def load_weights(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strictly load a state dict in our keys into ``model``."""
    _load_strict(model, state, source)


def load_pretrained_backbone(model: nn.Module, path: str | os.PathLike) -> None:
    """Initialise ``model.backbone`` from a local file; every other module keeps its initialisation.

    Accepted: ImageNet weights (the biubug6 MobileNet tar, torchvision ResNet; the classifier ``fc.*`` is
    dropped) or a retina checkpoint, of which only the ``backbone.*`` tensors are used (a detector trained
    on other data as the starting point of new ones). Everything taken must match the backbone exactly.
    """
    if not isinstance(getattr(model, "backbone", None), nn.Module):
        raise CheckpointError("model has no backbone attribute")
    payload = _mapping(safe_load(path), path)
    if payload.get("format") == FORMAT:
        _retina_config(payload, path)
        state = payload["state_dict"]
        out = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        if not out:
            raise CheckpointError(f"{path}: a retina checkpoint without backbone weights")
    else:
        state = strip_module_prefix(_mapping(payload.get("state_dict", payload), path))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        rules = _MOBILENET_BLOCK if "stage1.0.0.weight" in state else _RESNET_BLOCK
        out = _translate(state, lambda k: _rename(k, rules), str(path))
    backbone = model.backbone
    # ResNet layers beyond the last used stage are not built; ignore their weights.
    present = {k.split(".")[0] + "." + k.split(".")[1] for k in backbone.state_dict() if k.startswith("layers.")}
    out = {k: v for k, v in out.items() if not k.startswith("layers.") or ".".join(k.split(".")[:2]) in present}
    _load_strict(backbone, out, str(path))

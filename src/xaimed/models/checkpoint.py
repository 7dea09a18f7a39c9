"""The stored model: `model.pt` written and read back weights-only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaimed.io.integrity import quarantine
from xaimed.io.runtime import atomic_write
from xaimed.models.build import build_model
from xaimed.models.inputs import to_device
from xaimed.train.resume import state_sha256

__all__ = ["load_checkpoint", "save_checkpoint"]


# --------------------------------------------------------------------------- checkpoints

_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"checkpoint meta key {where}[{key!r}] is not a str")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"checkpoint meta {where} is a {type(value).__name__}; only str/int/float/bool/None and "
        "lists/dicts of them load with weights_only=True (convert numpy values with .item())"
    )


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """``torch.save({"state_dict", "meta"})`` atomically (temp file + os.replace).

    meta must hold plain types only and at least ``model`` (name) and ``num_classes``; the
    usual keys are class_names, image_size, dataset, fold, mean, std, best_epoch.
    """
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    _check_plain(meta, "meta")
    missing = [k for k in ("model", "num_classes") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}; load_checkpoint needs them")
    # saved in the standard layout whatever memory format the model ran in
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # torch.load checks the zip layout, not the data: a checksum catches a flipped bit
    meta = {**meta, "state_sha256": state_sha256(state)}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save({"state_dict": state, "meta": meta}, fh)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Inverse of :func:`save_checkpoint`: (model in eval mode on ``device``, meta)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except RuntimeError as exc:
        if "PytorchStreamReader" in str(exc):  # a broken zip: truncated or overwritten
            raise quarantine(path, str(exc).splitlines()[0]) from None
        raise ValueError(
            f"{path} is not an xaimed checkpoint readable with weights_only=True: {exc}"
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"{path} is not an xaimed checkpoint readable with weights_only=True: {exc}"
        ) from exc
    if (
        not isinstance(obj, dict)
        or set(obj) != {"state_dict", "meta"}
        or not isinstance(obj["state_dict"], Mapping)
        or not all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values())
        or not isinstance(obj["meta"], dict)
        or not {"model", "num_classes"} <= set(obj["meta"])
    ):
        raise ValueError(
            f"{path} is not an xaimed checkpoint: expected {{'state_dict': mapping of tensors, "
            "'meta': dict with 'model' and 'num_classes'}"
        )
    meta = dict(obj["meta"])
    expected = meta.pop("state_sha256", None)  # integrity detail, not part of the meta
    if expected is not None and state_sha256(dict(obj["state_dict"])) != expected:
        raise quarantine(path, "the checksum of its weights does not match")
    with torch.random.fork_rng(devices=[]):  # random init is overwritten; keep caller's RNG
        size = meta.get("image_size")  # a ViT is built for the size it was trained at
        model = build_model(
            meta["model"], int(meta["num_classes"]), "none", int(size) if size else None
        )
    model.load_state_dict(obj["state_dict"])
    return to_device(model.eval(), device), meta

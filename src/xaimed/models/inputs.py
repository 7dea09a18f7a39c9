"""What a model is fed: ImageNet normalisation and moving batches to a device."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize", "to_device"]


IMAGENET_MEAN = (0.485, 0.456, 0.406)

IMAGENET_STD = (0.229, 0.224, 0.225)

# --------------------------------------------------------------------------- inputs


def to_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    """``model`` on ``device`` in channels-last memory format, where xaimed runs every model.

    Channels-last is what GPU tensor cores want, and on a CPU it avoids a trap: with one
    thread, PyTorch sends 1x1 convolutions of fewer than 16 images to its reference kernel,
    about 10x slower than oneDNN on small feature maps (a partial batch, 8 explained images,
    4 sanity images), while channels-last takes oneDNN at every batch size. The arithmetic is
    the same fp32; only the order of summation may differ (``bench/memory_format.py``).
    """
    return model.to(device=device, memory_format=torch.channels_last)


def normalize(
    images: torch.Tensor,
    mean: tuple[float, float, float] | list[float] = IMAGENET_MEAN,
    std: tuple[float, float, float] | list[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 (N, 3, H, W) in [0, 255] -> float32 ``(x / 255 - mean) / std``, same device."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.to(torch.float32) / 255.0 - m) / s

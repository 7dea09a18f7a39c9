"""Which precision a model trains in on this device."""

from __future__ import annotations

import torch

__all__ = ["CPU_FLOAT32_FAMILIES", "cpu_has_bfloat16", "trains_in_bfloat16"]


# --------------------------------------------------------------------------- precision

#: Families whose training step is slower under bfloat16 autocast on a CPU, where oneDNN's
#: bfloat16 backward pass of their many depthwise convolutions is slow: 0.5-0.9x against fp32
#: at 48 px (EfficientNet, MobileNetV2/V3, MNASNet, ShuffleNetV2), where ResNet, ResNeXt,
#: DenseNet, VGG, SqueezeNet, RegNet and ConvNeXt train 1.1-1.7x faster (bench/cpu_amp.py).
CPU_FLOAT32_FAMILIES = ("efficientnet", "mobilenet", "mnasnet", "shufflenet")


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX) that oneDNN uses;
    without it bfloat16 is emulated and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def trains_in_bfloat16(name: str, device: str | torch.device) -> bool:
    """Whether training model ``name`` on ``device`` runs under bfloat16 autocast when mixed
    precision is on (config ``training.amp``): always on CUDA; on a CPU only where it is
    faster, i.e. with native bfloat16 and outside :data:`CPU_FLOAT32_FAMILIES`."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_bfloat16() and not name.startswith(CPU_FLOAT32_FAMILIES)

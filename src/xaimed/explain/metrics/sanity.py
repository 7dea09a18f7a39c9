"""Does a map depend on what the model learned? The model-parameter randomisation test of
Adebayo et al. (2018, "Sanity checks for saliency maps"), cascading from the top.

The trained model's blocks are re-initialised one after another from the output down
(:func:`cascade_blocks`); at each requested depth the method's maps of the same images and
classes are compared with the trained model's by Spearman rank correlation and SSIM. A method
whose maps barely change under randomisation explains the input, not the model: it fails.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage, stats
from torch import nn

from xaimed.explain.cams import compute_cams

__all__ = [
    "SANITY_COLUMNS",
    "cascade_blocks",
    "randomised_cascade",
    "sanity_check",
    "spearman",
    "ssim",
]

log = logging.getLogger("xaimed.explain.metrics.sanity")

SANITY_COLUMNS = ["image_id", "stage", "randomised", "spearman", "ssim"]
#: SSIM constants of Wang et al. (2004) for maps in [0, 1]
SSIM_SIGMA, SSIM_K1, SSIM_K2 = 1.5, 0.01, 0.03


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (N, H, W) -> (N,); NaN where either map
    is constant (no ranking to correlate). Equals scipy.stats.spearmanr per pair."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"maps {a.shape} and {b.shape} differ in shape")
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(axis=1) / denominator, np.nan)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Mean structural similarity of each pair of maps (N, H, W) -> (N,) (Wang et al. 2004):
    Gaussian window sigma 1.5 (truncated at 3.5 sigma, reflected at the borders), population
    statistics, K1 = 0.01, K2 = 0.03, averaged over every pixel."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"maps {a.shape} and {b.shape} must both be (N, H, W)")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    def local_mean(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, (0, SSIM_SIGMA, SSIM_SIGMA), truncate=3.5, mode="reflect")

    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return index.mean(axis=(1, 2))


def cascade_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's blocks that hold parameters, from the output down: its top-level children
    in registration order (torchvision registers them in forward order), with nn.Sequential
    children (ResNet's layers, VGG's/DenseNet's/EfficientNet's features and classifiers)
    split into their own children, then reversed. E.g. ResNet50: fc, layer4.2, layer4.1, ...
    """
    blocks: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            blocks += [(f"{name}.{sub}", module) for sub, module in child.named_children()]
        else:
            blocks.append((name, child))
    return [
        (name, block)
        for name, block in reversed(blocks)
        if next(block.parameters(), None) is not None
    ]


def _reinitialise(block: nn.Module, seed: int) -> None:
    """Every submodule back to its own initialisation (BatchNorm: unit scale, zero shift,
    running statistics reset), drawn from torch's generator seeded with ``seed``. Parameters
    that no reset method covers (a ViT's position embeddings, Swin's relative position bias,
    ConvNeXt's layer scale) are drawn as torchvision draws the transformers' (normal, sd 0.02,
    truncated at +-2): no trained value survives."""
    device = next(block.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in block.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            elif isinstance(module, nn.MultiheadAttention):  # ViT's attention
                module._reset_parameters()
            else:
                for parameter in module.parameters(recurse=False):
                    nn.init.trunc_normal_(parameter, std=0.02)
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()


def randomised_cascade(model: nn.Module, depths: Sequence[int | str], seed: int = 0):
    """Yield (depth, name of the deepest randomised block, model) for each depth (sorted,
    capped at the number of blocks, ``"all"``: every block; repeats dropped): a copy of
    ``model`` whose ``depth`` top blocks are re-initialised. One copy is randomised further
    at each depth, so block k gets the same random weights at every depth that includes it."""
    blocks = cascade_blocks(model)
    wanted = sorted({len(blocks) if d == "all" else min(int(d), len(blocks)) for d in depths})
    if not wanted or wanted[0] < 1:
        raise ValueError(f"cascade depths must be >= 1 or 'all', got {list(depths)}")
    randomised = copy.deepcopy(model).eval()
    names = [name for name, _ in cascade_blocks(randomised)]
    modules = [module for _, module in cascade_blocks(randomised)]
    done = 0
    for depth in wanted:
        for k in range(done, depth):
            _reinitialise(modules[k], seed + k)
        done = depth
        yield depth, names[depth - 1], randomised


def sanity_check(
    model: nn.Module,
    model_name: str,
    method: str,
    inputs: torch.Tensor,
    targets: Sequence[int],
    trained_cams: np.ndarray,
    image_ids: Sequence[str],
    *,
    depths: Sequence[int | str] = (1, "all"),
    seed: int = 0,
    batch_size: int = 16,
    layer_path: str | None = None,
) -> pd.DataFrame:
    """Per image and cascade depth (:data:`SANITY_COLUMNS`): ``stage`` (how many top blocks
    are randomised), ``randomised`` (the deepest of them), and the Spearman correlation and
    SSIM between ``trained_cams`` (``method``'s maps of ``model``) and the maps of the
    randomised model for the same classes ``targets``, taken at the same target layer
    (``layer_path``, as in :func:`xaimed.explain.cams.compute_cams`)."""
    trained_cams = np.asarray(trained_cams, dtype=np.float32)
    if trained_cams.shape != (inputs.shape[0], *inputs.shape[-2:]) or len(image_ids) != len(
        trained_cams
    ):
        raise ValueError(
            f"{len(image_ids)} image ids, maps {trained_cams.shape} and inputs "
            f"{tuple(inputs.shape)} do not match"
        )
    frames = []
    for depth, name, randomised in randomised_cascade(model, depths, seed):
        maps = compute_cams(randomised, model_name, method, inputs, targets, batch_size, layer_path)
        frames.append(
            pd.DataFrame(
                {
                    "image_id": [str(i) for i in image_ids],
                    "stage": depth,
                    "randomised": name,
                    "spearman": spearman(trained_cams, maps),
                    "ssim": ssim(trained_cams, maps),
                }
            )
        )
        log.info("sanity check of %s: top %d blocks randomised (down to %s)", method, depth, name)
    if not frames:
        return pd.DataFrame(columns=SANITY_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SANITY_COLUMNS]

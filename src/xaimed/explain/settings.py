"""The settings of the two explanation stages, built from the validated config.

:class:`ExplainSettings` decides the maps (rule ``cams``), :class:`QualitySettings` how they are
scored (rule ``scores``): a change to the second reruns the scores, never the CAMs. Every field
comes from the config, whose schema (workflow/schemas/config.schema.yaml) is the only home of
the defaults, so no field has one here. This module imports no torch: the workflow builds the
jobs' params with it while it builds the DAG.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ExplainSettings", "QualitySettings"]


@dataclass(frozen=True)
class ExplainSettings:
    """How one model's CAMs are computed: config ``explain`` (``batch_size``, ``max_images``,
    ``target_layers``), ``seed`` and ``device``."""

    batch_size: int
    max_images: int | None
    seed: int
    device: str
    #: the target layer, a dotted module path (``explain.target_layers``); None: the default
    #: of :data:`xaimed.models.layers.CAM_FAMILIES` for a model the config lists no layer for
    layer_path: str | None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_config(cls, config: dict[str, Any], model: str) -> ExplainSettings:
        explain = config["explain"]
        return cls(
            batch_size=explain["batch_size"],
            max_images=explain["max_images"],
            seed=config["seed"],
            device=config["device"],
            layer_path=explain["target_layers"].get(model),
        )

    def params(self) -> dict[str, Any]:
        """A plain dict, as a job's params (Snakemake compares params by their repr)."""
        return asdict(self)


@dataclass(frozen=True)
class QualitySettings:
    """How the maps are scored: config ``explain.road_percentiles`` and ``quality`` (the
    pointing game's ``tolerance``, the IoU's ``top_k`` %, the deletion and insertion curves'
    ``faithfulness_steps``, and the randomisation check's images and cascade depths)."""

    road_percentiles: list[float]
    tolerance: float
    top_k: float
    faithfulness_steps: int
    sanity_images: int
    sanity_depths: list[int | str]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QualitySettings:
        quality = config["quality"]
        return cls(
            road_percentiles=list(config["explain"]["road_percentiles"]),
            tolerance=quality["tolerance"],
            top_k=quality["top_k"],
            faithfulness_steps=quality["faithfulness_steps"],
            sanity_images=quality["sanity"]["images"],
            sanity_depths=list(quality["sanity"]["stages"]),
        )

    def params(self) -> dict[str, Any]:
        """A plain dict, as a job's params (Snakemake compares params by their repr)."""
        return asdict(self)

"""The CAM stage against plain pytorch-grad-cam usage (issue 7, benchmark 1).

For each method: xaimed's stage (`compute_cams`, then confidence increase and ROAD from
`xaimed.explain.metrics.confidence`) against the documented library calls on batches of the same
images (one CAM object per method, `CamMultImageConfidenceChange` and `ROADCombined` with softmax
targets). Both are timed side by side in one process; maps must agree within 1e-4 (printed). The
plain AblationCAM re-runs the whole network once per channel, so it is timed on fewer images and
compared per image.

    python bench/cam_stage.py                   # ResNet50, 128 px, CPU, one thread
    python bench/cam_stage.py --device cuda --images 64 --ablation-images 8

``--quality`` also times, per method, each part of xaimed's explain jobs on the same images
(CAMs, confidence increase, ROAD and its imputation alone, the deletion and insertion curves,
and the randomisation sanity check of the schema's ``quality.sanity.images`` images at its
cascade depths), with the schema's quality settings: where an explain job's time goes.

    python bench/cam_stage.py --size 224 --images 2 --quality --methods gradcampp scorecam
"""

from __future__ import annotations

import argparse
import os
import time

# The library's AblationCAM and ScoreCAM draw progress bars; tqdm reads this when imported.
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

from xaimed.config.schema import SCHEMA_PATH, fill_defaults, load_schema
from xaimed.explain.cams import CAM_METHODS, compute_cams
from xaimed.explain.metrics.confidence import _road_perturbations, confidence_increase, road
from xaimed.explain.metrics.faithfulness import faithfulness_scores
from xaimed.explain.metrics.sanity import sanity_check
from xaimed.explain.settings import QualitySettings
from xaimed.io.runtime import select_device, set_threads
from xaimed.models.build import build_model
from xaimed.models.layers import target_layer

STUDY_METHODS = ("gradcampp", "xgradcam", "eigengradcam", "layercam", "ablationcam", "gradcam")
PERCENTILES = (20, 40, 60, 80)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def xaimed_stage(model, name, method, x, targets, batch_size):
    maps = compute_cams(model, name, method, x, targets, batch_size=batch_size)
    confidence_increase(model, x, maps, targets, batch_size=batch_size)
    road(model, x, maps, targets, PERCENTILES, batch_size=batch_size)
    return maps


def plain_stage(model, name, method, x, targets, batch_size):
    layer = target_layer(model, name)
    library_class = CAM_METHODS[method].library_class
    maps = []
    with library_class(model=model, target_layers=[layer]) as cam:
        for start in range(0, len(x), batch_size):
            chunk = [ClassifierOutputTarget(c) for c in targets[start : start + batch_size]]
            maps.append(cam(input_tensor=x[start : start + batch_size], targets=chunk))
    maps = np.concatenate(maps)
    softmax = [ClassifierOutputSoftmaxTarget(c) for c in targets]
    CamMultImageConfidenceChange()(x, maps, softmax, model)
    ROADCombined(percentiles=list(PERCENTILES))(x, maps, softmax, model)
    return maps


def timed(function, device, *args, **kwargs):
    synchronize(device)
    started = time.perf_counter()
    out = function(*args, **kwargs)
    synchronize(device)
    return out, time.perf_counter() - started


def quality_parts(model, name, method, x, targets, batch_size, device) -> dict[str, float]:
    """Seconds per image of each part of xaimed's explain jobs (rules cams and scores) for
    ``method`` on ``x``; the sanity check per checked image."""
    quality = QualitySettings.from_config(
        fill_defaults({"explain": {}, "quality": {}}, load_schema(SCHEMA_PATH))
    )
    n, parts = len(x), {}
    maps, parts["cams"] = timed(compute_cams, device, model, name, method, x, targets, batch_size)
    _, parts["confidence"] = timed(confidence_increase, device, model, x, maps, targets, batch_size)
    percentiles = quality.road_percentiles
    _, parts["road"] = timed(road, device, model, x, maps, targets, percentiles, 0, batch_size)
    started = time.perf_counter()
    for image, cam in zip(x, maps, strict=True):  # ROAD's imputation alone, as road runs it
        _road_perturbations(image, cam, percentiles, 0)
    parts["road_imputation"] = time.perf_counter() - started
    _, parts["deletion_insertion"] = timed(
        faithfulness_scores,
        device,
        model,
        x,
        maps,
        targets,
        steps=quality.faithfulness_steps,
        seeds=list(range(n)),
        batch_size=batch_size,
    )
    per_image = {part: seconds / n for part, seconds in parts.items()}
    checked = min(quality.sanity_images, n)
    if checked:
        _, seconds = timed(
            sanity_check,
            device,
            model,
            name,
            method,
            x[:checked],
            targets[:checked],
            maps[:checked],
            [str(i) for i in range(checked)],
            depths=quality.sanity_depths,
            batch_size=batch_size,
        )
        per_image["sanity_per_checked_image"] = seconds / checked
    return per_image


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--ablation-images", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=list(STUDY_METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quality", action="store_true", help="time each part of the job")
    args = parser.parse_args(argv)

    set_threads(args.threads)
    device = select_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model, 4).to(device).eval()
    # Smooth random images: a trained-looking spread of classes is not needed for timing, but
    # maps must not be flat, or the comparison of maps would be vacuous.
    x = torch.nn.functional.avg_pool2d(
        torch.randn(args.images, 3, args.size, args.size), 5, 1, 2
    ).to(device)
    with torch.no_grad():
        targets = model(x).argmax(1).tolist()

    rows, totals = {}, {"xaimed": 0.0, "plain": 0.0}
    for method in args.methods:
        n_plain = args.ablation_images if method in ("ablationcam", "scorecam") else args.images
        ours, ours_s = timed(
            xaimed_stage, device, model, args.model, method, x, targets, args.batch_size
        )
        theirs, theirs_s = timed(
            plain_stage,
            device,
            model,
            args.model,
            method,
            x[:n_plain],
            targets[:n_plain],
            args.batch_size,
        )
        per_image = {"xaimed": ours_s / args.images, "plain": theirs_s / n_plain}
        rows[method] = {
            "xaimed_img_per_s": 1 / per_image["xaimed"],
            "plain_img_per_s": 1 / per_image["plain"],
            "speedup": per_image["plain"] / per_image["xaimed"],
            "max_abs_map_diff": float(np.abs(ours[:n_plain] - theirs).max()),
        }
        for key in totals:
            totals[key] += per_image[key]
    rows["all"] = {
        "xaimed_img_per_s": 1 / totals["xaimed"],
        "plain_img_per_s": 1 / totals["plain"],
        "speedup": totals["plain"] / totals["xaimed"],
        "max_abs_map_diff": max(r["max_abs_map_diff"] for r in rows.values()),
    }
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {args.threads} thread(s)"
    )
    print(
        f"CAM stage (maps + confidence increase + ROAD), {args.model} at {args.size} px on {where}"
    )
    print(
        f"{'method':>14} {'xaimed img/s':>13} {'plain img/s':>12} {'speed-up':>9} {'max|dmap|':>10}"
    )
    for method, row in rows.items():
        print(
            f"{method:>14} {row['xaimed_img_per_s']:13.3f} {row['plain_img_per_s']:12.4f}"
            f" {row['speedup']:8.1f}x {row['max_abs_map_diff']:10.2e}"
        )
    if args.quality:
        print(f"xaimed's explain jobs, seconds per image ({args.images} images)")
        for method in args.methods:
            parts = quality_parts(model, args.model, method, x, targets, args.batch_size, device)
            rows[method]["parts_s_per_image"] = parts
            print(f"{method:>14} " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    return rows


if __name__ == "__main__":
    main()

"""ROAD's imputation at the study's size: the 2 x P sparse solves of one image, one after
another and shared among threads, side by side in one run, and the perturbed images of
both ways compared bit for bit.

On a GPU the model runs of ROAD cost milliseconds per image and the imputation (a sparse
solve of up to 0.8 x H x W unknowns per percentile and order, on the CPU) is what remains;
this measures it alone, on phantom scans with maps as smooth as a 7x7 CAM.

    python bench/road_imputation.py                       # 224 px, 4 images, 1 and 2 threads
    python bench/road_imputation.py --size 128 --images 8 --threads 1 2 4
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from xaimed.data.images import to_rgb
from xaimed.data.phantoms.generate import PHANTOM_CLASSES, phantom_rng, render
from xaimed.explain.metrics.confidence import _road_perturbations
from xaimed.explain.metrics.localisation import smooth_random_map
from xaimed.models.inputs import normalize


def phantom_images(n: int, size: int, seed: int) -> torch.Tensor:
    """n brain phantoms, normalised as the models' inputs are."""
    classes = PHANTOM_CLASSES["brain_mri"]
    images = []
    for i in range(n):
        name = classes[i % len(classes)]
        image = render("brain_mri", name, phantom_rng("brain_mri", name, i, seed), size)[0]
        images.append(torch.from_numpy(to_rgb(np.asarray(image))).permute(2, 0, 1))
    return normalize(torch.stack(images))


def main(argv: list[str] | None = None) -> dict[int, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--percentiles", type=float, nargs="+", default=[20, 40, 60, 80])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    images = phantom_images(args.images, args.size, 0)
    # as smooth as a layer4 CAM at 224 px: the project's smooth_random baseline on a 7x7 grid
    maps = [smooth_random_map((args.size, args.size), (7, 7), seed=i) for i in range(args.images)]
    print(f"{os.cpu_count()} CPUs; {args.images} images at {args.size} px; ", end="")
    print(f"{2 * len(args.percentiles)} solves per image")
    before = torch.get_num_threads()
    best: dict[int, float] = {}
    perturbed: dict[int, list[torch.Tensor]] = {}
    for _ in range(args.rounds):  # alternating, best of each
        for threads in args.threads:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            perturbed[threads] = [
                _road_perturbations(image, cam, args.percentiles, seed=i)
                for i, (image, cam) in enumerate(zip(images, maps, strict=True))
            ]
            seconds = (time.perf_counter() - start) / args.images
            best[threads] = min(best.get(threads, np.inf), seconds)
    torch.set_num_threads(before)
    first = args.threads[0]
    result = {}
    print("| threads | s per image | speed-up | perturbed images equal |")
    print("| ---: | ---: | ---: | --- |")
    for threads in args.threads:
        equal = all(
            torch.equal(a, b) for a, b in zip(perturbed[first], perturbed[threads], strict=True)
        )
        result[threads] = {"s_per_image": best[threads], "equal": equal}
        print(
            f"| {threads} | {best[threads]:.3f} | {best[first] / best[threads]:.2f}x |"
            f" {'yes' if equal else 'NO'} |"
        )
    return result


if __name__ == "__main__":
    main()

"""Deletion and insertion curves (xaimed.explain.metrics.faithfulness) against the plain way, side
by side in one run, and how far their areas end apart.

The plain way, as RISE's reference evaluation does it: each image's two curves on their own,
2 x (steps + 1) perturbed images in batches of ``batch_size`` (at 10 steps, a batch of 16 and
a part-filled one of 6 per image), the unperturbed image twice (deletion's start, insertion's
end). xaimed feeds the model the distinct images of all curves in full batches.

    python bench/faithfulness.py                   # ResNet50, 48 px, 16 images, one thread
    python bench/faithfulness.py --size 128 --images 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xaimed.explain.metrics.faithfulness import (
    _perturbed,
    _steps,
    blurred,
    faithfulness_scores,
    mean_colour,
)
from xaimed.explain.metrics.localisation import pixel_order
from xaimed.models.build import build_model
from xaimed.models.inputs import to_device


def plain_scores(model, inputs, cams, targets, *, steps, batch_size):
    """Each image's curves alone, every perturbed image through the model."""
    counts = _steps(cams[0].size, steps)
    fractions = counts / counts[-1]
    deletion, insertion = [], []
    with torch.no_grad():
        for image, cam, target in zip(inputs, cams, targets, strict=True):
            order = pixel_order(cam, 0)
            batch = torch.cat(
                [
                    _perturbed(image, image, mean_colour(image), order, counts),
                    _perturbed(image, blurred(image), image, order, counts),
                ]
            )
            probs = torch.cat(
                [
                    torch.softmax(model(batch[s : s + batch_size]).float(), 1)[:, target]
                    for s in range(0, len(batch), batch_size)
                ]
            ).double()
            probs = probs.cpu().numpy()
            deletion.append(probs[: len(counts)])
            insertion.append(probs[len(counts) :])
    return {
        "deletion_auc": np.trapezoid(np.stack(deletion), fractions, axis=1),
        "insertion_auc": np.trapezoid(np.stack(insertion), fractions, axis=1),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds; best kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = to_device(build_model(args.model, 4, "none"), device).eval()  # as explain runs it
    inputs = torch.randn(args.images, 3, args.size, args.size, device=device)
    cams = np.random.default_rng(0).random((args.images, args.size, args.size))
    targets = [i % 4 for i in range(args.images)]
    seeds = [0] * args.images  # the plain way breaks ties with seed 0
    runs = {
        "plain": lambda: plain_scores(
            model, inputs, cams, targets, steps=args.steps, batch_size=args.batch_size
        ),
        "xaimed": lambda: faithfulness_scores(
            model, inputs, cams, targets, steps=args.steps, seeds=seeds, batch_size=args.batch_size
        ),
    }
    runs["xaimed"]()  # untimed warm-up of both paths' kernels
    seconds, scores = dict.fromkeys(runs, float("inf")), {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            scores[name] = run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name] = min(seconds[name], time.perf_counter() - started)
    diff = max(
        float(np.abs(scores["xaimed"][key] - scores["plain"][key]).max()) for key in scores["plain"]
    )
    ratio = seconds["plain"] / seconds["xaimed"]
    print(
        f"{args.model} at {args.size} px, {args.images} images, {args.steps} steps, batch "
        f"{args.batch_size}, on {args.device} ({args.threads} CPU thread(s)); best of "
        f"{args.repeats}"
    )
    for name in runs:
        print(f"  {name:7s} {args.images / seconds[name]:8.2f} img/s")
    print(f"  speed-up {ratio:.2f}x; largest AUC difference {diff:.1e}")
    return {**seconds, "ratio": ratio, "max_auc_diff": diff}


if __name__ == "__main__":
    main()

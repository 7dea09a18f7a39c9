"""VGG16 training steps with the replicated head collapsed (xaimed.models.pooled_head) against the
model as torchvision builds it, side by side in one run, and how far their weights end apart.

At 48 px VGG16's last feature map is 1x1 and its 7x7 pool copies it 49 times into a
25,088-wide linear layer; collapsed, that layer takes the 512 distinct values.

    python bench/pooled_head.py                 # 48 px, batch 16, 5 steps, one thread
    python bench/pooled_head.py --size 64 --steps 3
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from xaimed.train.trainer import Trainer, TrainSettings


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bfloat16 autocast where the trainer takes it (config training.amp); --no-amp for "
        "float32, where the two end at the same weights up to rounding",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    settings = TrainSettings.with_defaults(
        model=args.model,
        lr=1.5e-4,
        batch_size=args.batch_size,
        epochs=1,
        augment={},
        device=args.device,
        amp=args.amp,
    )
    n = args.batch_size * (args.steps + 1)  # the first step is an untimed warm-up
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, args.size, args.size), dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=generator)
    results, states = {}, {}
    for name, image_size in (("whole", None), ("collapsed", args.size)):
        torch.manual_seed(0)
        trainer = Trainer(settings, num_classes=4, steps=args.steps + 1, image_size=image_size)
        trainer.generator.manual_seed(0)
        warm = args.batch_size
        trainer.train_epoch(images[:warm], labels[:warm])
        started = time.perf_counter()
        trainer.train_epoch(images[warm:], labels[warm:])
        results[name] = (time.perf_counter() - started) / args.steps
        model = trainer.finish(copy.deepcopy(trainer.model.state_dict()))
        states[name] = model.state_dict()
    diff = max((states["collapsed"][k] - v).abs().max().item() for k, v in states["whole"].items())
    ratio = results["whole"] / results["collapsed"]
    print(
        f"{args.model} at {args.size} px, batch {args.batch_size}, {args.steps} steps on "
        f"{args.device} ({args.threads} CPU thread(s)), {trainer.precision}"
    )
    print(f"  whole model:     {results['whole']:.3f} s per step")
    print(f"  collapsed head:  {results['collapsed']:.3f} s per step ({ratio:.2f}x faster)")
    print(f"  largest weight difference after {args.steps + 1} steps: {diff:.1e}")
    return {**results, "ratio": ratio, "max_weight_diff": diff}


if __name__ == "__main__":
    main()

"""Training on the CPU in float32 against bfloat16 autocast (config `training.amp`), side by
side in one run: an epoch of `Trainer.train_epoch` (forward, backward, optimiser step, as the
demo trains) and `Trainer.predict`, per image, for each model.

bfloat16 is only fast on a CPU with native bfloat16 instructions (AVX512-BF16 or AMX); without
them this bench says so and stops. The last column says whether xaimed takes bfloat16 for
the model on this machine (`models.trains_in_bfloat16`): not for the families whose
training step is slower in it.

    python bench/cpu_amp.py                       # the four study CNNs, 48 px, 1 thread
    python bench/cpu_amp.py --models resnet18 mobilenet_v3_small --images 32 --repeats 1
"""

from __future__ import annotations

import argparse

import torch
from memory_format import seconds_per_image  # a sibling: bench/ leads sys.path when run

from xaimed.io.runtime import set_threads
from xaimed.models.precision import cpu_has_bfloat16, trains_in_bfloat16
from xaimed.train.trainer import Trainer, TrainSettings

STUDY_MODELS = ["resnet50", "densenet121", "vgg16", "efficientnet_b0"]


def compare(name: str, images: int, size: int, batch_size: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    store = torch.randint(0, 256, (images, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(images) % 4
    row: dict = {"xaimed_uses_bfloat16": trains_in_bfloat16(name, "cpu")}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        settings = TrainSettings.with_defaults(
            model=name, batch_size=batch_size, epochs=1, augment={}, device="cpu", lr=1e-4
        )
        trainer = Trainer(settings, num_classes=4, steps=10**6, image_size=size)
        trainer.bfloat16 = precision == "bfloat16"  # forced, to time the models xaimed skips
        row[f"train_{precision}"] = seconds_per_image(
            lambda t=trainer: t.train_epoch(store, labels), images, repeats
        )
        row[f"eval_{precision}"] = seconds_per_image(
            lambda t=trainer: t.predict(store), images, repeats
        )
    row["train_speedup"] = row["train_float32"] / row["train_bfloat16"]
    row["eval_speedup"] = row["eval_float32"] / row["eval_bfloat16"]
    return row


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=STUDY_MODELS)
    parser.add_argument("--images", type=int, default=112, help="per epoch (the demo: 109)")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)  # as the jobs: this also flushes denormals
    if not cpu_has_bfloat16():
        print("this CPU has no native bfloat16 (AVX512-BF16 or AMX): xaimed trains in float32")
        return {}

    print(
        f"ms per image, {args.images} images of {args.size} px in batches of {args.batch_size}, "
        f"{args.threads} thread(s); speed-up = float32 / bfloat16"
    )
    print(
        f"{'model':<20}{'train fp32':>11}{'train bf16':>11}{'x':>6}"
        f"{'eval fp32':>11}{'eval bf16':>11}{'x':>6}  xaimed uses bf16"
    )
    results = {}
    for name in args.models:
        r = results[name] = compare(name, args.images, args.size, args.batch_size, args.repeats)
        print(
            f"{name:<20}{r['train_float32'] * 1e3:>11.1f}{r['train_bfloat16'] * 1e3:>11.1f}"
            f"{r['train_speedup']:>6.2f}{r['eval_float32'] * 1e3:>11.1f}"
            f"{r['eval_bfloat16'] * 1e3:>11.1f}{r['eval_speedup']:>6.2f}  "
            f"{'yes' if r['xaimed_uses_bfloat16'] else 'no'}",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()

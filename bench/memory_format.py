"""Each CNN in channels-last memory format (how xaimed runs models, `models.to_device`) against
the default contiguous format, side by side in one run: a training step (forward, backward,
AdamW) and an evaluation forward pass, per image, at the batch sizes the demo uses.

With one thread PyTorch sends 1x1 convolutions of fewer than 16 images to its reference kernel
(about 10x slower than oneDNN on 3x3 and 2x2 feature maps); channels-last takes oneDNN at
every batch size. The largest relative difference between the two formats' logits shows the
arithmetic is the same up to summation order.

    python bench/memory_format.py                      # the four study CNNs, 48 px, 1 thread
    python bench/memory_format.py --models resnet50 --batch-sizes 7 16 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from xaimed.models.build import build_model
from xaimed.models.inputs import to_device


def seconds_per_image(step, batch_size: int, repeats: int) -> float:
    step()  # warm-up: oneDNN builds its kernels on the first call
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats / batch_size


def compare(name: str, batch_size: int, size: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    contiguous = build_model(name, 4)
    channels_last = to_device(copy.deepcopy(contiguous), "cpu")
    images = torch.randn(batch_size, 3, size, size)
    labels = torch.randint(0, 4, (batch_size,))
    row: dict[str, float] = {}
    for layout, model in (("contiguous", contiguous), ("channels_last", channels_last)):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step(model=model, optimizer=optimizer):
            model.train()
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def evaluate(model=model):
            model.eval()
            with torch.no_grad():
                model(images)

        row[f"train_{layout}"] = seconds_per_image(train_step, batch_size, repeats)
        row[f"eval_{layout}"] = seconds_per_image(evaluate, batch_size, repeats)
    # Same weights again (the steps above moved them apart) and the same dropout masks (same
    # seed); batch statistics keep the logits of an untrained network in a sane range.
    channels_last.load_state_dict(contiguous.state_dict())
    with torch.no_grad():
        torch.manual_seed(1)
        reference = contiguous.train()(images)
        torch.manual_seed(1)
        other = channels_last.train()(images)
    row["max_rel_logit_diff"] = float((other - reference).abs().max() / reference.abs().max())
    row["train_speedup"] = row["train_contiguous"] / row["train_channels_last"]
    row["eval_speedup"] = row["eval_contiguous"] / row["eval_channels_last"]
    return row


def main(argv: list[str] | None = None) -> dict[tuple[str, int], dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["resnet50", "densenet121", "vgg16", "efficientnet_b0"]
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(
        f"ms per image, {args.size} px, {args.threads} thread(s); speed-up = contiguous / "
        "channels-last"
    )
    header = (
        f"{'model':<16}{'batch':>6}{'train cont.':>12}{'train c-l':>10}{'x':>6}"
        f"{'eval cont.':>12}{'eval c-l':>10}{'x':>6}{'rel. diff':>11}"
    )
    print(header)
    results = {}
    for name in args.models:
        for batch_size in args.batch_sizes:
            r = compare(name, batch_size, args.size, args.repeats)
            results[(name, batch_size)] = r
            print(
                f"{name:<16}{batch_size:>6}{r['train_contiguous'] * 1e3:>12.1f}"
                f"{r['train_channels_last'] * 1e3:>10.1f}{r['train_speedup']:>6.2f}"
                f"{r['eval_contiguous'] * 1e3:>12.1f}{r['eval_channels_last'] * 1e3:>10.1f}"
                f"{r['eval_speedup']:>6.2f}{r['max_rel_logit_diff']:>11.1e}",
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()

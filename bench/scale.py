"""The data stages at the study's image sizes, 1k to 16k images (issue 22, BENCHMARKS.md 12).

Writes N images in an imagefolder layout at the real datasets' sizes and formats, a third
each: chest X-rays (grayscale JPEG, 1,000-2,000 px, Kermany), brain MRI (grayscale, 512 px,
JPEG and PNG alternately) and skin lesions (RGB JPEG, 600x450, HAM10000). Each is a phantom
(`xaimed.data.phantoms`) rendered at 256 px and upscaled with fine grain, so images of one
anatomy share their low frequencies and the duplicate search's hash buckets are as crowded as
on real scans. About 1 % of the images are planted copies of others (every other one resized
to 3/4, the rest recompressed as JPEG at quality 75), known by name.

Then each stage runs in a subprocess of its own, as the workflow's jobs do, through the library
calls of its rule's script: ingest (decode, sha256, perceptual hash, thumbnail; its duplicate
search timed apart), folds (5, grouped by the duplicate clusters), preprocess at 224 px (the
memory-mappable store), and the plain baseline: PIL decoding, converting to RGB and resizing
the same files in one loop (before and after the stages; their mean is the baseline). Each
stage's seconds are its work without Python's start-up; its peak RSS is the subprocess's
(``os.wait4``), start-up included.

    python bench/scale.py --n 1000 4000 16000
    python bench/scale.py --n 60 --small        # a smoke run (tests): sizes divided by 8

Generated images are kept under ``--workdir`` (default: a folder in the temp directory) and
reused by larger N: the first N images are the same at every N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from xaimed.data.phantoms.generate import PHANTOM_CLASSES, phantom_rng, render

KINDS = ("chest_xray", "brain_mri", "skin_lesion")
RENDER_SIZE = 256
IMAGE_SIZE = 224
COPY_FRACTION = 0.01
STAGES = ("baseline", "ingest", "folds", "preprocess", "baseline")


# ----------------------------------------------------------------------------- images


def image_plan(i: int) -> dict:
    """What image i is: its kind, class, phantom index, file size (width, height) and format;
    depends on i alone, so the first N images are the same for every N."""
    kind = KINDS[i % len(KINDS)]
    classes = PHANTOM_CLASSES[kind]
    j = i // len(KINDS)
    rng = np.random.default_rng([7, i])
    if kind == "chest_xray":  # Kermany: 1,000-2,000 px, landscape and portrait
        height = int(rng.integers(1000, 2001))
        size, suffix = (int(height * rng.uniform(0.75, 1.35)), height), ".jpeg"
    elif kind == "brain_mri":  # mostly 512x512
        size, suffix = (512, 512), (".jpg" if j % 2 else ".png")
    else:  # HAM10000
        size, suffix = (600, 450), ".jpg"
    return {
        "kind": kind,
        "class_name": classes[j % len(classes)],
        "index": j // len(classes),
        "size": size,
        "suffix": suffix,
    }


def image_name(plan: dict) -> str:
    return f"{plan['kind']}_{plan['class_name']}_{plan['index']:05d}{plan['suffix']}"


def _save(image: Image.Image, path: Path, quality: int = 90) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # a killed run leaves no half-written image
    if path.suffix == ".png":
        image.save(tmp, format="PNG", compress_level=1)
    else:
        image.save(tmp, format="JPEG", quality=quality)
    os.replace(tmp, path)


def write_image(i: int, folder: Path, shrink: int, grain: np.ndarray) -> Path:
    """Image i under folder/<kind>_<class>/, unless it is there already."""
    plan = image_plan(i)
    path = folder / f"{plan['kind']}_{plan['class_name']}" / image_name(plan)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = phantom_rng(plan["kind"], plan["class_name"], plan["index"])
    pixels, _ = render(plan["kind"], plan["class_name"], rng, RENDER_SIZE // min(shrink, 4))
    width, height = (max(32, side // shrink) for side in plan["size"])
    big = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC))
    # Film/sensor grain: a real scan's detail, which upscaling alone would not give its file.
    top, left = (int(v) for v in np.random.default_rng(i).integers(0, 64, size=2))
    noise = grain[top : top + height, left : left + width]
    big = np.clip(big.astype(np.int16) + (noise[..., None] if big.ndim == 3 else noise), 0, 255)
    _save(Image.fromarray(big.astype(np.uint8)), path)
    return path


def write_copy(source: Path, folder: Path, k: int) -> Path:
    """Planted copy k of ``source`` in the same class folder: resized to 3/4 (k even) or
    recompressed as JPEG at quality 75 (k odd)."""
    with Image.open(source) as opened:
        image = opened.copy()
    how = "recompressed" if k % 2 else "resized"
    suffix = ".jpg" if how == "recompressed" else source.suffix
    path = folder / source.parent.name / f"copy{k:04d}_{how}_{source.stem}{suffix}"
    if how == "resized":
        image = image.resize(
            (image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS
        )
    _save(image, path, quality=75)
    return path


def build_dataset(n: int, workdir: Path, shrink: int) -> tuple[Path, set[tuple[str, str]]]:
    """The N-image dataset folder (hard links to the cached originals plus the planted copies)
    and the expected duplicate pairs as image_id pairs."""
    cache, dataset = workdir / f"images_{shrink}", workdir / f"n{n}_{shrink}"
    n_copies = max(3, round(n * COPY_FRACTION))
    n_originals = n - n_copies
    grain = np.random.default_rng(0).normal(0, 3, (2800 // shrink + 64,) * 2).astype(np.int16)
    started, originals = time.perf_counter(), []
    for i in range(n_originals):
        originals.append(write_image(i, cache, shrink, grain))
    if dataset.exists():
        import shutil

        shutil.rmtree(dataset)
    for path in originals:
        target = dataset / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    expected = set()
    step = n_originals // n_copies
    for k in range(n_copies):
        # spread over the dataset, and over the three kinds in turn
        index = min(k * step - (k * step) % len(KINDS) + k % len(KINDS), n_originals - 1)
        source = dataset / originals[index].relative_to(cache)
        copy = write_copy(source, dataset, k)
        ids = sorted(str(p.relative_to(dataset).with_suffix("")) for p in (source, copy))
        expected.add((ids[0], ids[1]))
    print(
        f"  {n} images ({n_copies} planted copies) ready in {time.perf_counter() - started:.0f} s"
    )
    return dataset, expected


# ----------------------------------------------------------------------------- stages


def run_stage(stage: str, dataset: Path, out: Path, n_folds: int) -> dict:
    """One stage's work in this process (the subprocess's side); returns its figures."""
    import pandas as pd

    from xaimed.data import ingest as ingest_module
    from xaimed.data.checks import check_images
    from xaimed.data.folds import assign_folds
    from xaimed.data.preprocess import preprocess
    from xaimed.io.integrity import read_parquet, write_parquet

    figures: dict = {}
    started = time.perf_counter()
    if stage == "baseline":
        paths = sorted(p for p in dataset.rglob("*") if p.is_file())
        total = 0
        for path in paths:
            with Image.open(path) as image:
                small = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
            total += int(np.asarray(small)[0, 0, 0])
        figures["images"] = len(paths)
    elif stage == "ingest":
        search = ingest_module.find_duplicates
        spent = []

        def timed_search(manifest, hashes, thumbnails, max_distance):
            begin = time.perf_counter()  # the duplicate search, timed apart from reading
            result = search(manifest, hashes, thumbnails, max_distance)
            spent.append(time.perf_counter() - begin)
            # how crowded the pigeonhole buckets are: the largest of any hash block
            edges = np.linspace(0, 64, max_distance + 2).astype(int)
            figures["largest_bucket"] = max(
                int(np.unique((hashes >> np.uint64(a)) & np.uint64((1 << (b - a)) - 1),
                              return_counts=True)[1].max())
                for a, b in zip(edges[:-1], edges[1:], strict=True)
            )  # fmt: skip
            np.savez(out / "fingerprints.npz", hashes=hashes, thumbnails=thumbnails)
            return result

        ingest_module.find_duplicates = timed_search
        options = ingest_module.IngestOptions.with_defaults(format="imagefolder")
        ingested = ingest_module.ingest_dataset(dataset, dataset="scale", options=options)
        write_parquet(ingested.manifest, out / "manifest.parquet")
        write_parquet(ingested.duplicates, out / "duplicates.parquet")
        figures["duplicates_s"] = spent[0]
        figures["pairs"] = ingested.duplicates[["image_id_a", "image_id_b"]].values.tolist()
    elif stage == "folds":
        folds = assign_folds(
            read_parquet(out / "manifest.parquet"),
            n_folds,
            0,
            duplicates=read_parquet(out / "duplicates.parquet"),
        )
        write_parquet(folds, out / "folds.parquet")
        figures["fold_sizes"] = pd.Series(folds["fold"]).value_counts().sort_index().tolist()
    elif stage == "preprocess":
        manifest = read_parquet(out / "manifest.parquet")
        check_images(manifest, IMAGE_SIZE, "scale")
        preprocess(manifest, IMAGE_SIZE, out / "images.npy", out / "masks.npy")
    else:
        raise ValueError(f"unknown stage {stage!r}; known: {sorted(set(STAGES))}")
    figures["seconds"] = time.perf_counter() - started
    return figures


def time_stage(stage: str, dataset: Path, out: Path, n_folds: int) -> dict:
    """Run one stage in a subprocess (one thread, as a workflow job); its figures, wall seconds
    with start-up and peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--folds", str(n_folds), "--stage", stage]
    command += [str(dataset), str(out)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"stage {stage} failed (exit {child.returncode}) on {dataset}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["wall_s"] = time.perf_counter() - started
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return figures


def measure(n: int, workdir: Path, shrink: int, n_folds: int) -> dict:
    dataset, expected = build_dataset(n, workdir, shrink)
    out = workdir / f"results_n{n}_{shrink}"
    out.mkdir(exist_ok=True)
    runs = {}
    for stage in STAGES:
        figures = time_stage(stage, dataset, out, n_folds)
        runs.setdefault(stage, []).append(figures)
    found = {tuple(sorted(pair)) for pair in runs["ingest"][0]["pairs"]}
    store = out / "images.npy"
    row = {
        "n": n,
        "baseline_s": float(np.mean([r["seconds"] for r in runs["baseline"]])),
        "ingest_s": runs["ingest"][0]["seconds"] - runs["ingest"][0]["duplicates_s"],
        "duplicates_s": runs["ingest"][0]["duplicates_s"],
        "largest_bucket": runs["ingest"][0]["largest_bucket"],
        "folds_s": runs["folds"][0]["seconds"],
        "preprocess_s": runs["preprocess"][0]["seconds"],
        "peak_rss_mb": {stage: max(r["peak_rss_mb"] for r in runs[stage]) for stage in runs},
        "store_mb": store.stat().st_size / 2**20,
        "copies_planted": len(expected),
        "copies_found": len(expected & found),
        "false_pairs": sorted(found - expected),
    }
    row["data_s"] = row["ingest_s"] + row["duplicates_s"] + row["preprocess_s"]
    row["ratio_to_baseline"] = row["data_s"] / row["baseline_s"]
    assert runs["baseline"][0]["images"] == n, "the dataset holds other files than its images"
    return row


def report(rows: list[dict]) -> dict:
    header = (
        f"{'images':>7} {'baseline s':>10} {'ingest s':>9} {'dupl. s':>8} {'folds s':>8} "
        f"{'preproc s':>9} {'x base':>7} {'peak RSS MB':>11} {'store MB':>9} {'copies':>7} "
        f"{'false':>6}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['n']:>7} {r['baseline_s']:>10.1f} {r['ingest_s']:>9.1f} "
            f"{r['duplicates_s']:>8.2f} {r['folds_s']:>8.2f} {r['preprocess_s']:>9.1f} "
            f"{r['ratio_to_baseline']:>6.2f}x {max(r['peak_rss_mb'].values()):>11.0f} "
            f"{r['store_mb']:>9.0f} {r['copies_found']:>3}/{r['copies_planted']:<3} "
            f"{len(r['false_pairs']):>6}"
        )
    for r in rows:
        rss = ", ".join(f"{stage} {mb:.0f}" for stage, mb in r["peak_rss_mb"].items())
        print(f"  peak RSS MB at {r['n']}: {rss}; largest hash bucket {r['largest_bucket']} images")
        if r["false_pairs"]:
            print(f"  pairs of distinct phantoms at {r['n']}: {r['false_pairs'][:5]}")
    summary = {"rows": rows}
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        stages = ("ingest_s", "duplicates_s", "folds_s", "preprocess_s", "data_s", "baseline_s")
        growth = {s: last[s] / first[s] for s in stages}
        summary["growth"] = growth
        scale = last["n"] / first["n"]
        print(
            f"growth {first['n']} -> {last['n']} images ({scale:.0f}x; target <= "
            f"{20 * scale / 16:.0f}x, as 20x for 16x): "
            + ", ".join(f"{s[:-2]} {g:.1f}x" for s, g in growth.items())
        )
    print(
        "ingest + duplicates + preprocess / baseline (target <= 3x): "
        + ", ".join(f"{r['n']}: {r['ratio_to_baseline']:.2f}x" for r in rows)
    )
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--folds", type=int, default=5, help="folds, grouped by duplicates")
    parser.add_argument("--small", action="store_true", help="sizes divided by 8 (smoke test)")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "xaimed_scale"
    )
    parser.add_argument(
        "--stage", nargs=3, metavar=("STAGE", "DATASET", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.stage:  # the subprocess of one stage
        stage, dataset, out = args.stage
        print(json.dumps(run_stage(stage, Path(dataset), Path(out), args.folds)))
        return {}
    shrink = 8 if args.small else 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sorted(args.n):
        print(f"N = {n}", flush=True)
        rows.append(measure(n, args.workdir, shrink, args.folds))
        print(f"  {json.dumps(rows[-1])}", flush=True)  # kept if a larger N is stopped
    return report(rows)


if __name__ == "__main__":
    main()

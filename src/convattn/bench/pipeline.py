"""Input-pipeline throughput: images/s through the full training transform, the project's reader vs MindSpore's.

Three pipelines read the same ImageFolder tree and apply the same training transform (RandomResizedCrop to
``image_size``, flip, RandAugment, normalise, CHW, random erasing: the DeiT-style recipes' setting) and batch:

* ``convattn`` -- :func:`convattn.data.create_loader` as training uses it: Pillow decodes each image inside the
  ``GeneratorDataset`` source (an undecodable file, truncated JPEGs included, stops the run with its path);
* ``convattn-cpp`` -- the same reader with ``decode='cpp'``: the source reads and checks each file's bytes (same
  policy) and MindSpore's C++ ``vision.Decode`` runs in the map workers;
* ``native`` -- ``mindspore.dataset.ImageFolderDataset`` + the C++ ``vision.Decode``, then the same transforms.
  (Its decoder fills a truncated JPEG with grey instead of failing, and it has no repeated-augmentation order;
  it is the yardstick, not used for training.)

Each (pipeline, workers) cell is measured ``repeats`` times, the pipelines alternating (their order reversing
every repeat), so on a shared machine they see the same load; each pipeline's ratio to ``native`` is taken
within each repeat and reported as median with its range, beside the CPU time per image (all threads of the
process), which load on a shared machine disturbs much less than wall-clock time. Nothing here is asserted
as a timing.
"""
import json
import os
import statistics
import time
from typing import Dict, List, Sequence

import numpy as np

from ..utils.fsio import atomic_directory

__all__ = ["write_fake_imagenet", "build_pipeline", "time_pipeline", "run_pipeline_bench", "summarize",
           "pipeline_markdown", "write_pipeline_reports", "PIPELINES"]

PIPELINES = ("convattn", "convattn-cpp", "native")
_MARKER = ".convattn_fake_imagenet"
# (width, height) of typical ImageNet photos (most are 500 px on the long side)
_SIZES = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (400, 300), (500, 400)]
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_fake_imagenet(root: str, classes: int = 10, per_class: int = 32, seed: int = 0, quality: int = 90,
                        sizes: Sequence = tuple(_SIZES)) -> dict:
    """Write ``root/<nXXXXXXXX>/<i>.JPEG``: smooth random colour fields with grain, ImageNet-like sizes and JPEG
    sizes (~100 KB at 500x375). Written to a temporary sibling and renamed into place; an existing complete tree
    with the same settings is reused. Returns ``{'images': n, 'bytes': total, 'root': root}``."""
    from PIL import Image

    stamp = f"classes={classes} per_class={per_class} seed={seed} quality={quality} sizes={list(sizes)}\n"
    marker = os.path.join(root, _MARKER)
    if os.path.isfile(marker) and open(marker).read() == stamp:
        return _tree_stats(root)
    if os.path.exists(root) and os.listdir(root) and not os.path.isfile(marker):
        raise FileExistsError(f"{root} exists and is not a generated tree; choose an empty or missing folder")
    rng = np.random.RandomState(seed)
    with atomic_directory(root) as tmp:
        for c in range(classes):
            folder = os.path.join(tmp, f"n{c:08d}")
            os.makedirs(folder)
            for i in range(per_class):
                w, h = sizes[rng.randint(len(sizes))]
                low = rng.randint(0, 256, (rng.randint(3, 9), rng.randint(3, 9), 3)).astype(np.uint8)
                img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
                img += rng.normal(0, 18, img.shape)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                    os.path.join(folder, f"{c:04d}_{i:05d}.JPEG"), quality=quality)
        with open(os.path.join(tmp, _MARKER), "w") as f:
            f.write(stamp)
    return _tree_stats(root)


def _tree_stats(root: str) -> dict:
    n = size = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".JPEG"):
                n += 1
                size += os.path.getsize(os.path.join(dirpath, f))
    return {"images": n, "bytes": size, "root": root}


def _train_ops(image_size: int, auto_augment, re_prob: float) -> list:
    from ..data import train_transforms

    return train_transforms(image_size, _MEAN, _STD, "bicubic", auto_augment=auto_augment, re_prob=re_prob)


def build_pipeline(name: str, root: str, workers: int, batch_size: int, image_size: int = 224, seed: int = 0,
                   auto_augment="rand-m9-mstd0.5-inc1", re_prob: float = 0.25):
    """A shuffled, batched training pipeline over ``root``: ``convattn`` (the default reader), ``convattn-cpp``
    or ``native``."""
    import mindspore.dataset as ds
    from mindspore.dataset import vision

    ops = _train_ops(image_size, auto_augment, re_prob)
    if name in ("convattn", "convattn-cpp"):
        from ..data import create_loader

        dataset, _, _ = create_loader(root, ops, batch_size, True, True, workers, seed=seed,
                                      decode="cpp" if name == "convattn-cpp" else "pil")
        return dataset
    if name == "native":
        ds.config.set_seed(seed)
        dataset = ds.ImageFolderDataset(root, shuffle=True, decode=False, num_parallel_workers=workers,
                                        extensions=[".JPEG", ".jpg", ".jpeg", ".png"])
        dataset = dataset.map(operations=[vision.Decode()] + ops, input_columns="image", num_parallel_workers=workers)
        return dataset.batch(batch_size, drop_remainder=True)
    raise ValueError(f"unknown pipeline '{name}'; choose one of {PIPELINES}")


def time_pipeline(dataset, warmup: int = 1, max_batches: int = 0) -> dict:
    """Images/s over the batches after ``warmup`` (pipeline start-up excluded); ``max_batches`` 0 = one epoch."""
    it = dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)
    n = batches = 0
    t0 = time.perf_counter() if warmup == 0 else None
    c0 = _cpu_seconds()
    for i, (images, _) in enumerate(it):
        if i < warmup:
            if i == warmup - 1:
                t0, c0 = time.perf_counter(), _cpu_seconds()  # the clocks start once the warm-up batches are out
            continue
        n += images.shape[0]
        batches += 1
        if max_batches and batches >= max_batches:
            break
    elapsed = time.perf_counter() - t0 if t0 is not None else 0.0
    cpu = _cpu_seconds() - c0
    if batches == 0 or elapsed <= 0:
        raise ValueError("the tree gives too few batches to time: generate more images or lower the batch size")
    return {"images": n, "batches": batches, "seconds": elapsed, "imgs_per_s": n / elapsed,
            "cpu_ms_per_image": 1000.0 * cpu / n}


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads (the pipelines' workers are threads)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_pipeline_bench(root: str, workers: Sequence[int] = (1, 2), repeats: int = 3, batch_size: int = 32,
                       image_size: int = 224, warmup: int = 1, max_batches: int = 0,
                       pipelines: Sequence[str] = PIPELINES, log=print) -> dict:
    """Measure every (pipeline, workers) ``repeats`` times, alternating pipelines; returns rows and a summary."""
    for p in pipelines:
        if p not in PIPELINES:
            raise ValueError(f"unknown pipeline '{p}'; choose from {PIPELINES}")
    rows: List[dict] = []
    for rep in range(repeats):
        for w in workers:
            order = list(pipelines) if rep % 2 == 0 else list(reversed(pipelines))
            for p in order:
                res = time_pipeline(build_pipeline(p, root, int(w), batch_size, image_size, seed=rep),
                                    warmup, max_batches)
                rows.append({"pipeline": p, "workers": int(w), "repeat": rep, **res})
                log(f"[pipeline] repeat {rep} workers {w} {p}: {res['imgs_per_s']:.1f} img/s "
                    f"({res['images']} images in {res['seconds']:.2f} s)")
    return {"rows": rows, "summary": summarize(rows, pipelines)}


def summarize(rows: List[dict], pipelines: Sequence[str] = PIPELINES) -> List[dict]:
    out = []
    for w in sorted({r["workers"] for r in rows}):
        entry: Dict = {"workers": w}
        for p in pipelines:
            v = [r["imgs_per_s"] for r in rows if r["workers"] == w and r["pipeline"] == p]
            cpu = [r["cpu_ms_per_image"] for r in rows if r["workers"] == w and r["pipeline"] == p
                   and "cpu_ms_per_image" in r]
            entry[p] = {"median": statistics.median(v), "min": min(v), "max": max(v),
                        "cpu_ms_per_image": statistics.median(cpu) if cpu else None}
        if "native" in pipelines:
            by_rep: Dict = {}
            for r in rows:
                if r["workers"] == w:
                    by_rep.setdefault(r["repeat"], {})[r["pipeline"]] = r["imgs_per_s"]
            for p in pipelines:
                ratios = [d[p] / d["native"] for d in by_rep.values() if p in d and "native" in d]
                if p != "native" and ratios:
                    entry[f"{p}/native"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        out.append(entry)
    return out


def pipeline_markdown(result: dict, env: dict) -> str:
    head = (f"{env.get('images')} generated JPEGs ({env.get('mean_kb', 0):.0f} KB mean), training transform at "
            f"{env.get('image_size')}², batch {env.get('batch_size')}, {env.get('repeats')} alternating repeats, "
            f"MindSpore {env.get('mindspore')}, {env.get('cpu_count')} CPUs"
            f"{', load average %.1f at the end' % env['load_avg'][0] if env.get('load_avg') else ''}, {env.get('date')}\n\n")
    lines = ["| workers | pipeline | img/s median (min–max) | CPU ms / image | ÷ native, same repeat: median (min–max) |",
             "|---:|---|---|---:|---|"]
    for e in result["summary"]:
        for p in [k for k in PIPELINES if k in e]:
            r = e.get(f"{p}/native")
            ratio = f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})" if r else "–"
            cpu = e[p].get("cpu_ms_per_image")
            lines.append(f"| {e['workers']} | {p} | {_cell(e[p])} | {f'{cpu:.1f}' if cpu is not None else '–'} | "
                         f"{ratio} |")
    return head + "\n".join(lines) + "\n"


def _cell(d) -> str:
    return f"{d['median']:.1f} ({d['min']:.1f}–{d['max']:.1f})" if d else "–"


def write_pipeline_reports(result: dict, env: dict, out_dir: str, stem: str = "pipeline") -> Dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, stem + ".json"), "md": os.path.join(out_dir, stem + ".md")}
    with open(paths["json"], "w") as f:
        json.dump({"environment": env, **result}, f, indent=2)
    with open(paths["md"], "w") as f:
        f.write(pipeline_markdown(result, env))
    return paths

"""Progress lines, the per-epoch CSV log, and a PNG of the training curves drawn with Pillow."""
import csv
import os
import time
from typing import Dict, List, Optional

__all__ = ["CSV_FIELDS", "EpochLog", "format_eta", "plot_curves"]

CSV_FIELDS = ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "epoch_time_s", "images_per_s")


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class EpochLog:
    """Rows of ``CSV_FIELDS`` in ``<dir>/train_log.csv`` (rewritten atomically after each epoch). On
    resume the rows of epochs after the resumed one are dropped, so the file matches the weights."""

    def __init__(self, path: str, resume_epoch: Optional[int] = None) -> None:
        self.path = path
        self.rows: List[Dict] = []
        if resume_epoch is not None and os.path.isfile(path):
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= resume_epoch]

    def append(self, row: Dict) -> None:
        self.rows.append({k: row.get(k, "") for k in CSV_FIELDS})
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)


def _floats(rows, key):
    out = []
    for r in rows:
        try:
            out.append((int(r["epoch"]), float(r[key])))
        except (TypeError, ValueError):
            pass
    return out


def plot_curves(rows: List[Dict], path: str, title: str = "") -> str:
    """Two panels (loss; top-1/top-5 accuracy) against epoch, drawn with Pillow; written atomically."""
    from PIL import Image, ImageDraw
    W, H, pad = 900, 420, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 10), title or "training curves", fill="black")
    panels = [
        ("loss", [("train_loss", (31, 119, 180)), ("val_loss", (255, 127, 14))]),
        ("accuracy %", [("val_top1", (44, 160, 44)), ("val_top5", (214, 39, 40))]),
    ]
    pw = (W - 3 * pad) // 2
    for i, (label, series) in enumerate(panels):
        x0, y0, x1, y1 = pad + i * (pw + pad), pad, pad + i * (pw + pad) + pw, H - pad
        d.rectangle([x0, y0, x1, y1], outline="black")
        d.text((x0, y1 + 8), f"epoch  ({label})", fill="black")
        data = {k: _floats(rows, k) for k, _ in series}
        pts = [p for v in data.values() for p in v]
        if not pts:
            continue
        ex = [e for e, _ in pts]
        vy = [v for _, v in pts]
        emin, emax = min(ex), max(max(ex), min(ex) + 1)
        vmin, vmax = min(vy), max(vy)
        if vmax - vmin < 1e-12:
            vmin, vmax = vmin - 1, vmax + 1
        d.text((x0 + 2, y0 + 2), f"{vmax:.3g}", fill="gray")
        d.text((x0 + 2, y1 - 12), f"{vmin:.3g}", fill="gray")
        d.text((x1 - 30, y1 + 8), str(emax), fill="black")

        def xy(e, v):
            return (x0 + (e - emin) / (emax - emin) * (x1 - x0), y1 - (v - vmin) / (vmax - vmin) * (y1 - y0))

        for j, (key, color) in enumerate(series):
            line = [xy(e, v) for e, v in data[key]]
            if len(line) > 1:
                d.line(line, fill=color, width=2)
            for px, py in line:
                d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
            d.text((x1 - 90, y0 + 6 + 14 * j), key, fill=color)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)
    return path


class Timer:
    def __init__(self) -> None:
        self.t = time.time()

    def lap(self) -> float:
        now = time.time()
        dt, self.t = now - self.t, now
        return dt

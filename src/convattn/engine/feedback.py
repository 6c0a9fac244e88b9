"""Progress lines, the per-epoch CSV log, and a PNG of the training curves (drawn by utils.plot)."""
import csv
import os
import time
from typing import Dict, List, Optional

from ..utils.plot import Panel, line_panels

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
    """Two panels (loss; top-1/top-5 accuracy %) against epoch (utils.plot: ticks, labels, legend below the
    panels); written atomically as a 900x420 PNG."""
    def series(key, label):
        pts = _floats(rows, key)
        return (label, [e for e, _ in pts], [v for _, v in pts])

    panels = [Panel([series("train_loss", "train loss"), series("val_loss", "val loss")], "loss"),
              Panel([series("val_top1", "val top-1"), series("val_top5", "val top-5")], "accuracy (%)")]
    return line_panels(path, panels, title=title or "training curves", size=(900, 420))


class Timer:
    def __init__(self) -> None:
        self.t = time.time()

    def lap(self) -> float:
        now = time.time()
        dt, self.t = now - self.t, now
        return dt

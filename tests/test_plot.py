"""The three charts (training curves, benchmark bars, attention comparison) come from utils.plot on matplotlib's Agg
canvas: each is written as an RGB PNG of its size, with axis ticks and labels and a legend that covers no axes."""
import sys

import numpy as np
from PIL import Image

from convattn.utils.plot import Panel, bar_chart_size, bar_figure, line_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(path, size):
    assert open(path, "rb").read(8) == PNG_MAGIC
    img = Image.open(path)
    assert img.size == size and img.mode == "RGB"
    arr = np.asarray(img)
    assert (arr != 255).any(-1).sum() > 2000  # something was drawn
    return arr


def _check_layout(fig):
    """Ticks and labels on every axes; the legend lies outside (below) all of them."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert fig.legends, "one figure legend"
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert [t for t in ax.get_xticklabels() if t.get_text()] and [t for t in ax.get_yticklabels() if t.get_text()]
        assert ax.get_xlabel() or ax.get_ylabel()
        box = ax.get_window_extent(renderer)
        assert legend.y1 <= box.y0, "the legend must not cover the plotting area"


def test_training_curves_png(tmp_path):
    from convattn.engine.feedback import plot_curves

    rows = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 1.5 / e if e % 2 else "", "val_top1": 50 + 10 * e,
             "val_top5": 90} for e in range(1, 6)]
    _png(plot_curves(rows, str(tmp_path / "c.png"), "van_b0"), (900, 420))
    panels = [Panel([("train loss", [1, 2, 3], [2.0, 1.0, 0.5])], "loss"),
              Panel([("val top-1", [1, 2, 3], [50, 60, 70])], "accuracy (%)")]
    fig = line_figure(panels, "t")
    _check_layout(fig)
    assert all(t.get_text().isdigit() for t in fig.axes[0].get_xticklabels() if t.get_text())  # whole epochs
    one = line_figure([Panel([("train loss", [1], [2.0])], "loss")])
    one.canvas.draw()
    assert list(one.axes[0].get_xticks()) == [1]  # a single epoch: tick 1, not 0.995 / 1.005
    assert "matplotlib.pyplot" not in sys.modules  # no pyplot: no window, the caller's backend untouched


def test_benchmark_chart_png(tmp_path):
    from convattn.bench.harness import bar_chart

    rows = [{"model": f"acmix_m{i}", "batch_size": 8, "rel_throughput": 0.3 + 0.2 * i} for i in range(5)]
    rows.append({"model": "failed", "batch_size": 8, "rel_throughput": None})
    path = str(tmp_path / "b.png")
    bar_chart(rows, path)
    _png(path, bar_chart_size(5))
    _check_layout(bar_figure(["a", "b"], [0.4, 1.3], "t", "relative", reference=1.0, reference_label="baseline"))


def test_attention_comparison_png(tmp_path):
    from convattn.engine.compare_attention import plot

    results = {m: {"rows": [{"epoch": e, "train_loss": 2.0 / (e + i), "val_top1": 30 + 10 * e + i}
                            for e in range(1, 5)]} for i, m in enumerate(["deit_tiny", "deit_tiny_relu"])}
    _png(plot(results, str(tmp_path / "comparison.png")), (900, 420))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.png"]  # no temporary file left

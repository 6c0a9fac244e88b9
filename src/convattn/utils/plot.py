"""The project's charts, drawn with matplotlib: line panels (the training curves, the attention comparison) and a
horizontal bar chart (the benchmark's throughput relative to each baseline).

Drawn on matplotlib's Agg canvas directly (no pyplot, so no window ever opens and the caller's backend is left
alone), with axis ticks, axis labels and one legend below the panels, where it cannot cover the data. Written
atomically as an RGB PNG of the requested pixel size (a temporary file beside ``path``, then renamed).
"""
import os
from typing import List, Optional, Sequence, Tuple

__all__ = ["Series", "Panel", "line_panels", "bar_chart", "bar_chart_size", "line_figure", "bar_figure"]

# (label, x values, y values)
Series = Tuple[str, Sequence[float], Sequence[float]]


class Panel:
    """One axes of :func:`line_panels`: its series, axis labels and optional title."""

    def __init__(self, series: Sequence[Series], ylabel: str, xlabel: str = "epoch", title: str = "",
                 integer_x: bool = True) -> None:
        self.series, self.ylabel, self.xlabel, self.title, self.integer_x = list(series), ylabel, xlabel, title, integer_x


def _figure(size: Tuple[int, int], dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str, size: Tuple[int, int]) -> str:
    import numpy as np
    from PIL import Image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    if rgba.shape[:2] != (size[1], size[0]):  # rounding of inches x dpi; never expected, but the size is a contract
        raise RuntimeError(f"chart rendered at {rgba.shape[1]}x{rgba.shape[0]} px, expected {size[0]}x{size[1]}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp.png"
    try:
        Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _legend_below(fig, axes) -> None:
    """One legend for the whole figure, outside the axes (below them), each label once."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)


def line_panels(path: str, panels: Sequence[Panel], title: str = "", size: Tuple[int, int] = (900, 420),
                dpi: int = 100) -> str:
    """Panels side by side, each a line chart with markers, written to ``path`` (returned). Empty series are
    skipped (a panel with no data says so)."""
    return _save(line_figure(panels, title, size, dpi), path, size)


def line_figure(panels: Sequence[Panel], title: str = "", size: Tuple[int, int] = (900, 420), dpi: int = 100):
    """The figure :func:`line_panels` writes (for tests and callers that add to it)."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(size, dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {}  # one colour per label across the panels, so the shared legend is unambiguous
    for ax, panel in zip(axes, panels):
        drawn = 0
        for label, xs, ys in panel.series:
            colour = colours.setdefault(label, f"C{len(colours) % 10}")
            if len(xs):
                ax.plot(list(xs), list(ys), marker="o", markersize=3.5, linewidth=1.6, label=label, color=colour)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.title:
            ax.set_title(panel.title, fontsize="medium")
        if panel.integer_x:
            xs_all = [x for _, xs, _ in panel.series for x in xs]
            if xs_all and max(xs_all) - min(xs_all) < 2:  # one or two epochs: whole-number ticks, not 0.995, 1.005
                lo, hi = int(min(xs_all)), int(max(xs_all))
                ax.set_xticks(range(lo, hi + 1))
                ax.set_xlim(lo - 0.5, hi + 0.5)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    _legend_below(fig, axes)
    return fig


def bar_chart(path: str, labels: Sequence[str], values: Sequence[float], title: str = "", xlabel: str = "",
              reference: Optional[float] = None, reference_label: str = "", width: int = 900,
              dpi: int = 100) -> str:
    """Horizontal bars (first label on top) with their values written beside them, and an optional vertical
    reference line (e.g. 1.0 = as fast as the baseline) shown in the legend below; returns ``path``. The height
    grows with the number of bars (:func:`bar_chart_size`)."""
    fig = bar_figure(labels, values, title, xlabel, reference, reference_label, width, dpi)
    return _save(fig, path, bar_chart_size(len(labels), width))


def bar_chart_size(n_bars: int, width: int = 900) -> Tuple[int, int]:
    """Pixel size of a :func:`bar_chart` with ``n_bars`` bars."""
    return width, max(260, 110 + 24 * n_bars)


def bar_figure(labels: Sequence[str], values: Sequence[float], title: str = "", xlabel: str = "",
               reference: Optional[float] = None, reference_label: str = "", width: int = 900, dpi: int = 100):
    """The figure :func:`bar_chart` writes."""
    size = bar_chart_size(len(labels), width)
    fig = _figure(size, dpi)
    ax = fig.subplots()
    ys = list(range(len(labels)))
    colours: List[str] = ["tab:blue" if reference is None or v >= reference / 2 else "tab:orange" for v in values]
    bars = ax.barh(ys, list(values), color=colours, height=0.7)
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize="small")
    ax.set_yticks(ys, list(labels), fontsize="small")
    ax.invert_yaxis()
    top = max([reference or 0.0] + [float(v) for v in values] + [1e-9])
    ax.set_xlim(0, top * 1.15)
    if reference is not None:
        ax.axvline(reference, color="tab:red", linestyle="--", linewidth=1.2, label=reference_label or f"{reference:g}")
    if not labels:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    _legend_below(fig, [ax])
    return fig

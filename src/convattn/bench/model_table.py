"""The README's model table: name, params (M; every weight, the trainable ones apart where they differ), GMACs at
the default input size, paper top-1, official weights (where from, their official top-1), upstream source; models
that keep an earlier form selectable get a row for it too (``FORM_ROWS``)."""
from typing import Iterable, List, Optional
from urllib.parse import urlparse

from ..models import get_model_cfg, list_models
from ..models.registry import format_top1
from ..utils.params import format_params
from .macs import profile_model

__all__ = ["model_rows", "markdown_table"]


# non-default forms a model keeps selectable, listed in the table under the default one (name -> kwargs per row)
FORM_ROWS = {
    "xvolution_resnet34": ({"pssa_form": "dense"},),
    "xvolution_resnet50": ({"pssa_form": "dense"},),
    "acmix_pvt_tiny": ({"acmix_kv": "full"},),
    "acmix_pvt_small": ({"acmix_kv": "full"},),
    "deit_tiny_relu": ({"rel_pos_embed": False},),
    "deit_small_relu": ({"rel_pos_embed": False},),
}


# where official weights are served, by host (the first URL of a weights entry)
HOSTS = {
    "huggingface.co": "Hugging Face", "github.com": "GitHub release", "cloud.tsinghua.edu.cn": "Tsinghua cloud",
    "dl.fbaipublicfiles.com": "Meta (DeiT)", "download.pytorch.org": "torchvision", "drive.google.com": "Google Drive",
}


def weights_cell(weights: Optional[dict]) -> str:
    """The table's weights column: the host of the official file and its official top-1 ('pretrained=True' fetches
    it; 'manual': a link a script cannot follow), or that none were released."""
    if not weights or weights["status"] == "unreleased":
        return "none released"
    url = weights["manual"] if weights["status"] == "manual" else weights["urls"][0]
    host = urlparse(url).netloc
    where = HOSTS.get(host, host) + (", manual" if weights["status"] == "manual" else "")
    return f"{where}: {format_top1(weights['top1'])}"


def model_rows(names: Optional[Iterable[str]] = None, forms: bool = True) -> List[dict]:
    """One row per model at its defaults, plus (``forms``) one per selectable form in ``FORM_ROWS``."""
    rows = []
    for name in names or list_models():
        cfg = get_model_cfg(name)
        for kwargs in ({},) + (FORM_ROWS.get(name, ()) if forms else ()):
            prof = profile_model(name, **kwargs)
            label = name + "".join(f" {k}={v!r}" for k, v in kwargs.items())
            rows.append({
                "model": label,
                "params_m": prof["params_m"],
                "trainable_m": prof["trainable_m"],
                "gmacs": prof["gmacs"],
                "input": "x".join(str(s) for s in cfg["input_size"][1:]),
                "top1": cfg["top1"] if not kwargs else None,
                "weights": weights_cell(cfg.get("weights")) if not kwargs else "–",
                "paper": cfg["paper"] or "",
                "upstream": cfg["upstream"] or "",
            })
    return rows


def markdown_table(rows: List[dict]) -> str:
    lines = ["| model | params (M) | GMACs | input | top-1 (paper) | official weights: top-1 | paper | official code |",
             "|---|---:|---:|---|---:|---|---|---|"]
    for r in rows:
        top1 = f"{r['top1']:.1f}" if r["top1"] is not None else "–"
        upstream = r["upstream"] or "none released (designed from the paper)"
        params = format_params(r["params_m"], r.get("trainable_m", r["params_m"]))
        lines.append(f"| `{r['model']}` | {params} | {r['gmacs']:.2f} | {r['input']} | {top1} "
                     f"| {r.get('weights', '–')} | {r['paper']} | {upstream} |")
    return "\n".join(lines)

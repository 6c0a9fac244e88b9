"""The README's model table: name, params (M; every weight, the trainable ones apart where they differ), GMACs at
the default input size, paper top-1, upstream source."""
from typing import Iterable, List, Optional

from ..models import get_model_cfg, list_models
from ..utils.params import count_parameters, format_params
from .macs import profile_model

__all__ = ["model_rows", "markdown_table"]


def model_rows(names: Optional[Iterable[str]] = None) -> List[dict]:
    rows = []
    for name in names or list_models():
        cfg = get_model_cfg(name)
        prof = profile_model(name)
        total, trainable = count_parameters(_net(name))
        rows.append({
            "model": name,
            "params_m": total / 1e6,
            "trainable_m": trainable / 1e6,
            "gmacs": prof["gmacs"],
            "input": "x".join(str(s) for s in cfg["input_size"][1:]),
            "top1": cfg["top1"],
            "paper": cfg["paper"] or "",
            "upstream": cfg["upstream"] or "",
        })
    return rows


def _net(name: str):
    from ..models import create_model
    return create_model(name, num_classes=1000)


def markdown_table(rows: List[dict]) -> str:
    lines = ["| model | params (M) | GMACs | input | top-1 (paper) | paper | official code |",
             "|---|---:|---:|---|---:|---|---|"]
    for r in rows:
        top1 = f"{r['top1']:.1f}" if r["top1"] is not None else "–"
        upstream = r["upstream"] or "none released (designed from the paper)"
        params = format_params(r["params_m"], r.get("trainable_m", r["params_m"]))
        lines.append(f"| `{r['model']}` | {params} | {r['gmacs']:.2f} | {r['input']} | {top1} | {r['paper']} "
                     f"| {upstream} |")
    return "\n".join(lines)

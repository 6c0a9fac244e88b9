"""Compare two name -> shape tables (a network's parameters and a checkpoint's tensors).

Used by the checkpoint loader (:mod:`convattn.models.helpers`) and the weight converter
(:mod:`convattn.convert.mapping`), so both report mismatches the same way.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

Shape = Tuple[int, ...]


@dataclass
class StateReport:
    """What differs between what a network needs (target) and what a checkpoint has (source)."""

    missing: List[str] = field(default_factory=list)          # in target, not in source
    unexpected: List[str] = field(default_factory=list)       # in source, not in target
    mismatched: List[Tuple[str, Shape, Shape]] = field(default_factory=list)  # (name, source, target)
    skipped_classifier: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 12) -> str:
        def _list(title, items, fmt=str):
            if not items:
                return []
            shown = [f"    {fmt(i)}" for i in items[:limit]]
            more = [f"    ... and {len(items) - limit} more"] if len(items) > limit else []
            return [f"  {title} ({len(items)}):"] + shown + more

        lines = []
        lines += _list("missing from the checkpoint", self.missing)
        lines += _list("unexpected in the checkpoint", self.unexpected)
        lines += _list(
            "shape mismatch (checkpoint vs network)", self.mismatched,
            lambda m: f"{m[0]}: {tuple(m[1])} vs {tuple(m[2])}",
        )
        return "\n".join(lines)


def compare_shapes(
    target: Dict[str, Shape],
    source: Dict[str, Shape],
    classifier: Sequence[str] = (),
) -> StateReport:
    """Compare shape tables; entries under a ``classifier`` prefix that are absent from the target or
    differ in shape are moved to ``skipped_classifier`` instead of counting as errors (a new head)."""
    prefixes = tuple(p.rstrip(".") + "." for p in classifier if p)
    rep = StateReport()
    for name, shape in target.items():
        if name not in source:
            if prefixes and name.startswith(prefixes):
                rep.skipped_classifier.append(name)
            else:
                rep.missing.append(name)
        elif tuple(source[name]) != tuple(shape):
            if prefixes and name.startswith(prefixes):
                rep.skipped_classifier.append(name)
            else:
                rep.mismatched.append((name, tuple(source[name]), tuple(shape)))
    for name in source:
        if name not in target:
            if prefixes and name.startswith(prefixes):
                rep.skipped_classifier.append(name)
            else:
                rep.unexpected.append(name)
    return rep

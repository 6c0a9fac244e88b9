"""Command line of the Ascend operator audit (``convattn-ascend-audit``, ``scripts/ascend_audit.py``): compile each
model's Ascend form (inference graph and O2 training step) on this machine, count every primitive and check it against
what MindSpore documents for Ascend.

Usage: convattn-ascend-audit [PATTERN ...] [--summary_only] [--strict] [--readme docs/ascend.md]
       convattn-ascend-audit representatives --digits [--readme docs/ascend.md]
Exit status 1 when a primitive violates a documented constraint (with --strict: also when one is undocumented);
with --digits also when the O2 digits training of a representative does not lower its loss.
"""
import sys

from ..models import list_models
from ..utils.cli import ArgumentParser
from ..utils.readme import replace_marked_block
from .ascend_audit import (REPRESENTATIVES, SMALL_CONFIGS, audit_and_train_small, audit_model, digits_table,
                           findings, load_results, model_table, primitive_table, save_results, summary_table)
from ..utils.errors import command

__all__ = ["main"]


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    p = ArgumentParser(description="Ascend operator audit: compile each model's Ascend form (inference graph and O2 "
                                   "training step) and check every primitive against what MindSpore documents for Ascend.")
    p.add_argument("patterns", nargs="*", default=["*"],
                   help="shell-style model name patterns (default: every model); 'representatives' = one model per "
                        "code path")
    p.add_argument("--full_size", action="store_true",
                   help="audit the registered architecture at its input size (default: the small test configuration "
                        "of each model's default_cfg: the same operators, faster to compile)")
    p.add_argument("--summary_only", action="store_true", help="print only the summary and the primitive tables")
    p.add_argument("--strict", action="store_true", help="fail on undocumented (unknown) primitives too")
    p.add_argument("--digits", action="store_true",
                   help="representatives only: audit the small CI instance of each (SMALL_CONFIGS in "
                        "convattn.bench.ascend_audit), then train its compiled O2 step on digits (as "
                        "tests/test_ascend.py does); --readme then fills the ascend-o2-digits block")
    p.add_argument("--readme", help="replace the block between <!-- ascend-audit:begin/end --> (with --digits: "
                                    "<!-- ascend-o2-digits:begin/end -->) in this file")
    p.add_argument("--save", help="also write the results to this JSON file")
    p.add_argument("--load", nargs="+", help="render the tables from JSON files written by --save (no compiling)")
    args = p.parse_args(argv)
    if args.load:
        results = [r for path in args.load for r in load_results(path)]
        return report(results, args, any(findings(r)["violation"] or (args.strict and findings(r)["unknown"])
                                         for r in results))
    names = []
    for pat in args.patterns:
        found = sorted(REPRESENTATIVES.values()) if pat == "representatives" else list_models(pat)
        if not found:
            print(f"error: no registered model matches {pat!r}; see convattn.list_models()", file=sys.stderr)
            return 2
        names += [n for n in found if n not in names]
    if args.digits:
        others = [n for n in names if n not in SMALL_CONFIGS]
        if others:
            print(f"error: --digits trains the representatives only (pattern 'representatives'); not one: "
                  f"{', '.join(others)}", file=sys.stderr)
            return 2
        if args.full_size:
            print("error: --digits trains the small CI instances; drop --full_size", file=sys.stderr)
            return 2
    results, bad, seen = [], False, {}
    for name in names:
        try:
            result = (audit_and_train_small(name) if args.digits
                      else audit_model(name, full_size=args.full_size, seen=seen))
        except Exception as exc:  # noqa: BLE001  (a graph that does not compile fails the audit, the rest goes on)
            print(f"VIOLATION {name}: does not compile: {type(exc).__name__}: {str(exc).splitlines()[0]}", flush=True)
            bad = True
            continue
        results.append(result)
        found = findings(result)
        if not args.summary_only:
            print(model_table(result) + "\n", flush=True)
        for line in found["violation"]:
            print(f"VIOLATION {name}: {line}", flush=True)
        for line in found["unknown"]:
            print(f"UNKNOWN {name}: {line}", flush=True)
        bad = bad or bool(found["violation"]) or (args.strict and bool(found["unknown"]))
        if args.digits:
            d = result["digits"]
            if not d["loss_after"] < d["loss_before"]:
                print(f"FAIL {name}: O2 digits training did not lower the loss: {d['loss_before']:.4f} -> "
                      f"{d['loss_after']:.4f}", flush=True)
                bad = True
        if args.save:  # after every model: a long run keeps what it has done
            save_results(results, args.save)
    return report(results, args, bad)


def report(results, args, bad) -> int:
    summary, prims = summary_table(results), primitive_table(results)
    print(summary + "\n\n" + prims)
    digits = [r for r in results if "digits" in r]
    if digits:
        print("\n" + digits_table(digits))
    if args.readme:
        if args.digits or (digits and len(digits) == len(results)):
            replace_marked_block(args.readme, "ascend-o2-digits", digits_table(digits))
        else:
            replace_marked_block(args.readme, "ascend-audit", summary + "\n\n" + prims)
    print(f"\n{len(results)} model(s) audited: {'FAIL' if bad else 'pass'}")
    return 1 if bad else 0


#!/usr/bin/env python
"""Thin wrapper over convattn.engine.cli.prepare_digits_main (see --help)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import convattn  # noqa: E402,F401  (sets ONEDNN_MAX_CPU_ISA=AVX2 before MindSpore runs a kernel)
from convattn.engine.cli import prepare_digits_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(prepare_digits_main())

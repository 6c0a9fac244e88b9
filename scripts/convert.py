#!/usr/bin/env python
"""Thin wrapper of ``python -m convattn.convert``: official PyTorch checkpoint -> MindSpore .ckpt.

Usage: python scripts/convert.py --model NAME [--model-kwargs JSON] SRC DST
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from convattn.convert.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

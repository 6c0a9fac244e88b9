#!/usr/bin/env python
"""Top-k predictions on image files from a checkpoint or a MINDIR: thin wrapper over convattn.deploy.infer_cli."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import convattn  # noqa: E402,F401  (sets ONEDNN_MAX_CPU_ISA=AVX2 before MindSpore runs a kernel)
from convattn.deploy.infer_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""Export a registered model to MINDIR / ONNX with built-in verification (see convattn.deploy).

    python export/export.py --model van_b0 --ckpt van_b0.ckpt --format ALL --out exported/
"""
import os
import sys

try:
    import convattn  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import convattn  # noqa: F401

from convattn.deploy.cli import main

if __name__ == "__main__":
    sys.exit(main())

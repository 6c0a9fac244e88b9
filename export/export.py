"""Export a registered model to MINDIR / ONNX with built-in verification (see convattn.deploy).

    python export/export.py --model van_b0 --ckpt van_b0.ckpt --format ALL --out exported/

Thin wrapper over ``convattn.deploy.cli.main`` (console command: convattn-export); needs the package importable
(``pip install -e .``, or PYTHONPATH=src; scripts/run_export.sh sets the latter).
"""
import sys

from convattn.deploy.cli import main

if __name__ == "__main__":
    sys.exit(main())

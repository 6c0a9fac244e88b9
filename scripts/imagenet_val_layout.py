#!/usr/bin/env python
"""ImageNet's flat val folder -> class folders of links (console command: convattn-imagenet-val-layout). See --help.

Thin wrapper over ``convattn.data.val_layout_cli.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.data.val_layout_cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m tinyrwkv ...`` is the ``tinyrwkv`` command (tinyrwkv/cli.py)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

"""python -m app [serve | score FOLDER --out CSV]: the console command (app/cli.py)."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())

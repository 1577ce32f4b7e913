"""Fail early, with the fix, when the interpreter that would build .venv/ is too old."""

import sys

if sys.version_info < (3, 10):
    sys.exit(f"ringgen needs Python >= 3.10, this is {sys.version.split()[0]}; "
             "run `make PYTHON=python3.11 ...` with a newer interpreter")

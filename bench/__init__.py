"""The benchmark suite of mesh-magics: how little the magic adds on top of the network.

    .venv/bin/python -m bench            # the full run (~3 min), writes bench/results.md
    .venv/bin/python -m bench --smoke    # every benchmark once at a tiny size (the tests)

Every result is a ratio of two numbers measured in the same run on the same machine;
see `suite.py` for the list and `README.md` here for what each compares and why.
Not part of the package: it needs the repository (and `meshapi` for the SDK comparison,
`pip install -e .[bench]`).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: subprocesses run from here

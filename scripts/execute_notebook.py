"""Execute a notebook with nbclient and save it (and optionally an HTML export).

Usage: python scripts/execute_notebook.py IN.ipynb OUT.ipynb [--html OUT.html]
The kernel runs in OUT's folder, so files the notebook writes land beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--html", type=Path)
    args = parser.parse_args()

    args.target.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(args.source, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(args.target.parent.resolve())}},
    )
    client.execute()
    nbformat.write(notebook, args.target)
    print(f"executed notebook: {args.target}")
    if args.html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(notebook)
        args.html.write_text(body, encoding="utf-8")
        print(f"HTML export: {args.html}")


if __name__ == "__main__":
    main()

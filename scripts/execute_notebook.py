"""Execute a notebook with nbclient and save it (and optionally an HTML export).

Usage: python scripts/execute_notebook.py IN.ipynb OUT.ipynb [--html OUT.html]
The kernel runs in OUT's folder, so files the notebook writes land beside it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config


def kernel_config(sockets: str) -> Config:
    """The kernel talks over Unix sockets in the private folder `sockets` where it can: over
    TCP (the default) ipykernel warns at every start that anyone on the machine could
    listen, and here the cure is not to use TCP, rather than to hide the warning."""
    if os.name != "posix":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets, "kernel"))}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--html", type=Path)
    args = parser.parse_args()

    args.target.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(args.source, as_version=4)
    with tempfile.TemporaryDirectory(prefix="mesh-kernel-") as sockets:
        client = NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(args.target.parent.resolve())}},
            config=kernel_config(sockets),
        )
        client.execute()
    nbformat.write(notebook, args.target)
    written = [str(args.target)]
    if args.html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(notebook)
        args.html.write_text(body, encoding="utf-8")
        written.append(str(args.html))
    cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    print(f"ran {args.source} ({cells} code cells): {', '.join(written)}")


if __name__ == "__main__":
    main()

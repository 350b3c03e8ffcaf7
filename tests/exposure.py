"""Everything a cell shows its user, gathered into one text to search for secrets: the
error (str, repr, attributes, the rendered line, `sys.last_value`), stdout, stderr, every
rich output bundle, the value the cell returned, and every log record of mesh_magics,
httpx and httpcore at DEBUG level."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

LOGGERS = ("mesh_magics", "httpx", "httpcore")


@dataclass
class Exposure:
    error: BaseException | None
    texts: dict[str, str] = field(default_factory=dict)  # where -> what was shown there

    def where(self, secret: str) -> list[str]:
        """The places that show `secret`."""
        return [place for place, text in self.texts.items() if secret in text]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def debug_logs() -> Iterator[list[str]]:
    """The formatted DEBUG records of our loggers and httpx/httpcore, while inside."""
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def run_exposed(shell: InteractiveShell, cell: str) -> Exposure:
    """Run `cell` and gather everything it showed."""
    sys.last_value = None  # type: ignore[assignment]  # what a previous cell left is not ours
    with debug_logs() as logs, capture_output() as captured:
        outcome = shell.run_cell(cell, store_history=True)
    error = outcome.error_in_exec or outcome.error_before_exec
    texts = {
        "stdout": captured.stdout,
        "stderr": captured.stderr,
        "outputs": "\n".join(repr(output.data) for output in captured.outputs),
        "result": repr(outcome.result),
        "logs": "\n".join(logs),
    }
    if error is not None:
        texts["error str"] = str(error)
        texts["error repr"] = repr(error)
        texts["error args"] = repr(error.args)
        texts["error attributes"] = repr(vars(error))
        render = getattr(error, "_render_traceback_", None)
        texts["rendered"] = "\n".join(render()) if render else ""
    last = getattr(sys, "last_value", None)
    texts["sys.last_value"] = f"{last} {last!r}" if last is not None else ""
    result = outcome.result
    if result is not None and hasattr(result, "_repr_mimebundle_"):
        texts["result bundle"] = repr(result._repr_mimebundle_())
    return Exposure(error, texts)

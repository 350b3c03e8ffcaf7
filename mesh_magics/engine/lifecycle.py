"""The one rule every run follows once it has ended: record, bind, show; then side effects.

What the user paid for is never lost. By the time a run settles, every image that arrived
and decoded is already in the store (`generation.py` records it before it settles, also
for an incomplete result). Then every road (a blocking cell, `--bg`, a sweep, the form,
`mm.generate`, `mm.sweep`, a script, a headless nbclient run) hands what it has to
`deliver`, which does, in this order:

1. **bind**: the value goes where the user asked (`-o NAME`), also when the run failed in
   part (an incomplete result, a sweep with failed runs, an interrupted sweep);
2. **show**: the value is displayed where the user looks;
3. **side effects**: `--save`, the manifest, a callback. Each may fail; each failure is
   said in one line, and the first is raised after the others have run (the cell fails),
   but nothing bound or shown is taken back.

The run's own error (`failure`: an `IncompleteResultError`, a `SweepError`) is raised
last, after the side effects, so "Run All" stops while the images stay.

A blocking cell shows its value by returning it (so `Out[n]` and `_` hold it): it passes
`returns=True`, and `deliver` shows the value itself only when it is about to raise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import MeshError
from ..redact import one_line, redact

log = logging.getLogger("mesh_magics")


def nothing(value: Any) -> None:
    """A step that does nothing (no binding, no showing)."""


def note_on_stderr(text: str) -> None:
    print(f"meshimage: {text}", file=sys.stderr)


@dataclass
class Delivery:
    """Where one run's value goes once it has ended: how to bind it, how to show it, and
    what to do after (each step a callable of the value)."""

    bind: Callable[[Any], object] = nothing
    show: Callable[[Any], object] = nothing
    effects: Sequence[Callable[[Any], object]] = field(default_factory=list)
    note: Callable[[str], object] = note_on_stderr  # how a failed side effect is said


def deliver(
    value: Any,
    delivery: Delivery,
    *,
    failure: BaseException | None = None,
    returns: bool = False,
) -> None:
    """Bind `value`, show it, then run the side effects; raise `failure` (the run's own
    error), else the first side effect's error, once all of that is done.

    `value` is None when nothing arrived: then only `failure` is raised. `returns`: the
    caller shows the value by returning it, so it is shown here only before a raise."""
    if value is None:
        if failure is not None:
            raise failure
        return
    delivery.bind(value)
    if not returns:
        delivery.show(value)
    errors: list[BaseException] = []
    for effect in delivery.effects:
        try:
            effect(value)
        except Exception as exc:  # a side effect never takes back what is bound and shown
            errors.append(exc)
    raised = failure if failure is not None else (errors[0] if errors else None)
    for error in errors:
        if error is not raised:
            delivery.note(describe(error))
    if raised is not None:
        if returns:
            delivery.show(value)
        raise raised


def describe(error: BaseException) -> str:
    """`SaveError: could not write ...`: an error as the one line a user reads."""
    return f"{type(error).__name__}: {one_line(redact(str(error)), 300)}"


def describe_failure(error: BaseException) -> str:
    """The line a run's own view ends with: a `MeshError` by its message, a bug by its
    class and message (its traceback goes to the log)."""
    if not isinstance(error, MeshError):
        log.error("mesh_magics: a run's side effect failed", exc_info=error)
    return describe(error)

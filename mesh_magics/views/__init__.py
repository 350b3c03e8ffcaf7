"""What a running generation or sweep looks like: a widget view in notebooks, text
elsewhere; `make_view` picks a run's, `make_sweep_view` a sweep's. Views are told events
and elapsed time; they know nothing of HTTP or threads.

Which view (`progress`): `auto` picks marimo's status elements in a marimo notebook
(`views/marimo.py`), widgets in a Jupyter kernel whose frontend is interactive and where
ipywidgets imports, text otherwise (on stderr in a script);
`widget`, `text` and `none` force one. There is no reliable kernel-side test for a widget
frontend (docs/design.md): interactive frontends (JupyterLab, Notebook 7, VS Code) send
`allow_stdin: true` with each execution, while nbclient, nbconvert and papermill send
`false`, and would store the closed widgets' state in the saved file. Text in a kernel
is one output line updated in place; in a terminal or a script, printed lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..frontends import in_marimo
from ..wording import plural
from .base import NullView, ProgressView

if TYPE_CHECKING:
    from ..results.image_sweep import ImageSweep
    from .sweep_progress import SweepView


def in_kernel(shell: Any) -> bool:
    # By name, so that ipykernel is not imported; Colab's shell is a subclass of it.
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def on_colab() -> bool:
    """Whether this is a Colab kernel, as Colab users' own code tells: its module is
    loaded. Colab shows no output sent from other threads (colabtools#3373) and has no
    `set_next_input`."""
    return "google.colab" in sys.modules


def interactive_frontend(shell: Any) -> bool:
    """Whether the running cell came from a frontend that shows later updates (it allows
    stdin), read from the cell's own request, not from the kernel's latest one."""
    if not in_kernel(shell):
        return False
    try:
        parent = shell.get_parent() or {}
    except Exception:  # an older kernel without get_parent: assume the worst
        return False
    return bool(parent.get("content", {}).get("allow_stdin"))


def view_mode(mode: str, shell: Any) -> str:
    """The view `mode` (`auto`, `widget`, `text`, `none`) gives here: `auto` picks. A forced
    `widget` with no Jupyter kernel to show it (a script, terminal IPython) or no
    ipywidgets is a one-line `OptionError` saying what else works."""
    if mode == "auto" and in_marimo():
        return "marimo"
    if mode == "auto":
        return "widget" if interactive_frontend(shell) and _ipywidgets_importable() else "text"
    if mode == "widget" and not (in_kernel(shell) and _ipywidgets_importable()):
        needs = (
            "a Jupyter kernel" if not in_kernel(shell) else "ipywidgets (pip install ipywidgets)"
        )
        raise OptionError(
            f"progress 'widget' needs {needs}, and there is none here; use 'auto', 'text' or 'none'"
        )
    return mode


def make_view(
    heading: str,
    mode: str = "auto",
    shell: Any = None,
    *,
    on_cancel: Callable[[], object] | None = None,
) -> ProgressView:
    mode = view_mode(mode, shell)
    if mode == "none":
        return NullView(heading)
    if mode == "widget":
        from .widget import WidgetProgressView

        return WidgetProgressView(heading, on_cancel)
    if mode == "marimo":
        from .marimo import MarimoProgressView

        return MarimoProgressView(heading)
    from .text import DisplayTextView, StreamTextView

    if in_kernel(shell):
        return DisplayTextView(heading)
    return StreamTextView(heading, sys.stdout if shell is not None else sys.stderr)


def make_sweep_view(
    heading: str,
    labels: list[str],
    mode: str = "auto",
    shell: Any = None,
    *,
    on_cancel: Callable[[], object] | None = None,
) -> SweepView:
    """The view a sweep gets, chosen as `views.make_view` chooses a run's."""
    from .sweep_progress import NullSweepView

    mode = view_mode(mode, shell)
    if mode == "none":
        return NullSweepView(heading, labels)
    if mode == "widget":
        from .sweep_widget import WidgetSweepView

        return WidgetSweepView(heading, labels, on_cancel)
    if mode == "marimo":
        from .marimo import MarimoSweepView

        return MarimoSweepView(heading, labels)
    from .sweep_text import DisplayTextSweepView, StreamTextSweepView

    if in_kernel(shell):
        return DisplayTextSweepView(heading, labels)
    return StreamTextSweepView(heading, labels, sys.stdout if shell is not None else sys.stderr)


def sweep_view(
    sweep: ImageSweep,
    progress: str,
    shell: Any,
    images: int = 0,
    on_cancel: Callable[[], object] | None = None,
) -> SweepView:
    """The view of `sweep`: its heading counts the runs (and the `images` they make), each
    line names a run by its label and prompt."""
    heading = f"sweep · {plural(len(sweep.runs), 'run')}"
    heading += f" · {plural(images, 'image')}" if images else ""
    labels = [f"{r.label} · {r.prompt[:40]}" for r in sweep.runs]
    return make_sweep_view(heading, labels, progress, shell, on_cancel=on_cancel)


def _ipywidgets_importable() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


widgets_importable = _ipywidgets_importable  # for the history's clickable view

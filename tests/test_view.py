"""Which progress view a user gets, and what the text views say."""

from __future__ import annotations

import io
from types import SimpleNamespace

from mesh_magics.events import PartialImage, Retrying, StatusChanged
from mesh_magics.views import make_view
from mesh_magics.views.base import NullView, describe
from mesh_magics.views.text import DisplayTextView, StreamTextView
from mesh_magics.views.widget import WidgetProgressView


class ZMQInteractiveShell(SimpleNamespace):
    """Stands in for ipykernel's shell: make_view looks at the class name and at the
    running cell's request (`allow_stdin`)."""

    def get_parent(self) -> dict[str, object]:
        return {"content": {"allow_stdin": self.allow_stdin}}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_widgets_only_where_the_frontend_is_interactive() -> None:
    lab = ZMQInteractiveShell(allow_stdin=True)
    nbclient = ZMQInteractiveShell(allow_stdin=False)
    assert isinstance(make_view("h", "auto", lab), WidgetProgressView)
    assert isinstance(make_view("h", "auto", nbclient), DisplayTextView)
    assert isinstance(make_view("h", "auto", object()), StreamTextView)
    assert isinstance(make_view("h", "text", lab), DisplayTextView)
    assert isinstance(make_view("h", "widget", nbclient), WidgetProgressView)
    assert isinstance(make_view("h", "none", lab), NullView)


def test_a_script_gets_text_progress_on_stderr(capsys) -> None:  # type: ignore[no-untyped-def]
    view = make_view("h", "auto", None)
    assert isinstance(view, StreamTextView)
    view.start()
    assert "h · started" in capsys.readouterr().err


def test_events_are_described_as_a_person_would_say_them() -> None:
    assert describe(StatusChanged("queued")) == "queued"
    assert describe(Retrying(2, 1.5, "HTTP 429 rate_limit_exceeded")) == (
        "HTTP 429 rate_limit_exceeded; retrying in 1.5 s (attempt 2)"
    )
    assert describe(PartialImage(0, b"")) == "preview 1 received"


def test_terminal_progress_rewrites_one_line_then_prints_the_summary() -> None:
    terminal = Terminal()
    view = StreamTextView("openai/gpt-image-1 · 1024x1024 · 1 image", terminal)
    view.start()
    view.tick(0.5)
    view.tick(1.2)
    view.update(StatusChanged("processing"))
    view.tick(2.1)
    view.finish("✓ 1 image · openai/gpt-image-1 · 1024x1024 png · 2.2 s")
    text = terminal.getvalue()
    assert text.count("\r\x1b[K") == 5  # start, two ticks, the status, the summary
    assert text.endswith("\r\x1b[K✓ 1 image · openai/gpt-image-1 · 1024x1024 png · 2.2 s\n")
    assert "processing · 2 s" in text


def test_piped_progress_prints_plain_lines() -> None:
    pipe = io.StringIO()
    view = StreamTextView("heading", pipe)
    view.start()
    view.tick(3.0)
    view.fail("failed after 3.0 s")
    assert pipe.getvalue() == "⏳ heading · started\n✗ heading · failed after 3.0 s\n"

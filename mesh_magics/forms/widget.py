"""The interactive form: `%mesh form`, `%%mesh form` (its options and prompt
fill the form) and `mm.form(prompt, **fields)`.

Core ipywidgets only. Generate runs in the background like `--bg`: the click arrives on
the main thread while the kernel is idle, every field is checked (a bad value shows its
option's own message next to the field, and nothing is sent), the request is built by
`api.prepare` (configured defaults, the store) and its `Generation` started. The run's
watcher, on the engine's thread, only changes widget traits (routed by comm id, so no
output parent is needed), rebinds `-o NAME`, and updates the form's display, whose bundle
also holds the latest image and the code as text: what a saved notebook keeps.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import OptionError
from ..marks import WIDGET_VIEW, widget_mark
from ..schema import BY_FLAG, check
from ..wording import plural
from .code import MAGIC, normal_prompt, prompt_problem, to_cell
from .controls import field_row, shown
from .gallery import Gallery
from .state import (
    MAIN_FIELDS,
    MORE_FIELDS,
    FormState,
    field_problem,
    field_value,
)

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from ..engine.generation import Generation
    from ..events import StreamEvent
    from ..results.result import ImageResult

SHOW_EVERY = 0.5  # seconds between progress updates (comm messages are rate-limited)


class MeshForm:
    """A form that writes the `%%meshimage` cell and runs it. `.result` is the latest
    result, `.results` all of this form's (newest first), `.code` the cell."""

    def __init__(
        self,
        prompt: str = "",
        fields: Mapping[str, Any] | None = None,
        *,
        out: str | None = None,
        base_url: str | None = None,
        shell: Any = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from ..settings import configured

        self._shell = shell
        self._config = dict(configured() if config is None else config)
        self._base_url = base_url
        fields = dict(fields or {})
        self._extra = {k: v for k, v in fields.items() if k not in (*MAIN_FIELDS, *MORE_FIELDS)}
        self.results: list[ImageResult] = []
        self.run: Generation | None = None
        self._handles: list[DisplayHandle] = []
        self._shown_at = 0.0
        self._status = ""
        self._n_default = int(self._config.get("n") or 1)
        self._n_given = fields.get("n") is not None
        self._latest_code = ""

        self.prompt = widgets.Textarea(
            value=prompt, placeholder="what to draw", layout=widgets.Layout(width="100%")
        )
        self.controls: dict[str, widgets.ValueWidget] = {}
        self.problems: dict[str, widgets.HTML] = {"prompt": widgets.HTML()}
        rows = [widgets.HBox([self.prompt, self.problems["prompt"]])]
        for name in MAIN_FIELDS:
            rows.append(self._row(name, fields.get(name)))
        more = [self._row(name, fields.get(name)) for name in MORE_FIELDS]
        self.out = widgets.Text(value=out or "", description="-o NAME",
                                tooltip="bind the latest result to this variable",
                                style={"description_width": "140px"})  # fmt: skip
        self.problems["out"] = widgets.HTML()
        more.append(widgets.HBox([self.out, self.problems["out"]]))
        self.more = widgets.Accordion([widgets.VBox(more)], selected_index=None)
        self.more.set_title(0, "more")
        self.generate_button = widgets.Button(description="Generate", button_style="primary")
        self.cancel_button = widgets.Button(description="Cancel", disabled=True)
        self.generate_button.on_click(lambda _b: self.generate())
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.bar = widgets.IntProgress(value=0, min=0, max=100, layout={"width": "160px"})
        self.status = widgets.HTML()
        self.code_view = widgets.HTML()
        self.gallery = Gallery()
        self.box = widgets.VBox(
            [
                *rows,
                self.more,
                widgets.HBox([self.generate_button, self.cancel_button, self.bar, self.status]),
                self.code_view,
                self.gallery.box,
            ]
        )
        for control in (self.prompt, self.out, *self.controls.values()):
            control.observe(lambda _change: self.refresh(), names="value")
        self.refresh()
        self._fetch_models()

    # -- controls ---------------------------------------------------------------------------

    def _row(self, name: str, value: Any) -> widgets.HBox:
        control, problem, row = field_row(name, value, self._config)
        self.controls[name], self.problems[name] = control, problem
        return row

    def _fetch_models(self) -> None:
        """Fill the model list from `/v1/models` without holding the form up."""
        from ..engine.loop import engine
        from ..http.client import fetch_models
        from ..settings import client_settings

        try:
            settings = client_settings(self._config, self._base_url)
        except Exception:  # no key yet: the field stays free text
            return
        model = self.controls["model"]

        def fill(future: Any) -> None:
            if future.cancelled() or future.exception() is not None:
                return
            ids = [str(m.get("id")) for m in future.result() if m.get("id")]
            model.options = ids

        engine().submit(fetch_models(settings)).add_done_callback(fill)

    # -- the state, checked -----------------------------------------------------------------

    def _read(self) -> tuple[FormState, dict[str, str]]:
        """The form's settings (valid values only) and each field's problem."""
        fields: dict[str, Any] = dict(self._extra)
        problems: dict[str, str] = {}
        for name, control in self.controls.items():
            value = control.value
            if name == "n":
                if value == self._n_default and not self._n_given:
                    continue
            elif not str(value).strip():
                continue
            problem = field_problem(name, value)
            if problem is not None:
                problems[name] = problem
            else:
                fields[name] = field_value(name, value)
        prompt_issue = prompt_problem(self.prompt.value)
        if prompt_issue is not None:
            problems["prompt"] = prompt_issue
        out = None
        if self.out.value.strip():
            try:
                out = check(BY_FLAG["-o"], self.out.value, source="-o")
            except OptionError as exc:
                problems["out"] = str(exc)
        state = FormState(prompt=self.prompt.value, fields=fields, out=out, base_url=self._base_url)
        return state, problems

    @property
    def state(self) -> FormState:
        return self._read()[0]

    @property
    def code(self) -> str:
        """The `%%meshimage` cell of the form's current settings (an `OptionError` says
        why there is none, e.g. no prompt yet)."""
        return to_cell(self.state)

    def _code_or_problem(self, state: FormState | None = None) -> str:
        try:
            return to_cell(self.state if state is None else state)
        except OptionError as exc:
            return f"{MAGIC}\n# {exc}"

    def to_cell(self) -> str:
        """Put the cell into a new cell below; the code too. Where no cell can be
        inserted (Colab has no `set_next_input`), the code is shown to copy instead."""
        from ..views import on_colab

        code = self.code
        if self._shell is not None and on_colab():
            from IPython.display import display

            note = "# Colab can't insert a cell: copy this one into a new cell\n"
            display({"text/plain": note + code}, raw=True)
        elif self._shell is not None:
            self._shell.set_next_input(code)
        return code

    def refresh(self) -> dict[str, str]:
        """Show each field's problem and the code; the problems."""
        state, problems = self._read()
        for name, label in self.problems.items():
            message = problems.get(name, "")
            if name == "prompt" and not self.prompt.value.strip():
                message = ""  # an empty box is not a mistake until Generate
            label.value = f"<span style='color:#b00'>{html.escape(message)}</span>"
        code = html.escape(self._code_or_problem(state))
        self.code_view.value = f"<pre style='user-select:text'>{code}</pre>"
        return problems

    def load(self, state: FormState) -> None:
        """Set the form to `state` (a gallery entry's settings)."""
        self._extra = {k: v for k, v in state.fields.items() if k not in self.controls}
        self.prompt.value = state.prompt
        self._n_given = state.fields.get("n") is not None
        for name, control in self.controls.items():
            value = state.fields.get(name)
            if name == "n":
                control.value = self._n_default if value is None else int(value)
            elif isinstance(control, widgets.Dropdown):
                text = shown(value)
                if text not in [v for _label, v in control.options]:
                    control.options = [*control.options, (text, text)]
                control.value = text
            else:
                control.value = shown(value)
        self.out.value = state.out or ""

    # -- running ----------------------------------------------------------------------------

    def generate(self) -> Generation | None:
        """What Generate does: check every field, then start the run; None if a field is
        wrong or a run is going."""
        if self.run is not None and not self.run.done():
            return None
        problems = self.refresh()
        if problems:
            self.problems["prompt"].value = (
                "<span style='color:#b00'>" + html.escape(problems.get("prompt", "")) + "</span>"
            )
            self._say(f"✗ fix {plural(len(problems), 'field')} first: nothing was sent")
            return None
        from ..client.prepare import prepare

        state = self.state
        try:
            code = to_cell(state)  # the prompt is literal text, as the cell's doubled braces
            run = prepare(normal_prompt(state.prompt), state.fields, config=self._config,
                          base_url=self._base_url, cell=code)  # fmt: skip
        except Exception as exc:
            self._say(f"✗ {type(exc).__name__}: {exc}")
            return None
        run.watch(_FormWatcher(self, state))
        self.run = run
        self._status, self._shown_at = "connecting", 0.0
        self.generate_button.disabled, self.cancel_button.disabled = True, False
        self.bar.bar_style, self.bar.value = "info", 0
        self._say(f"⏳ {run.heading} · connecting")
        run.start()
        from ..engine.jobs import jobs

        jobs().add(run)
        return run

    def cancel(self) -> bool:
        run = self.run
        if run is None or run.done():
            return False
        self.cancel_button.disabled = True
        self._say("cancelling…")
        return run.cancel()

    def _say(self, text: str) -> None:
        self.status.value = html.escape(text)

    def _progress(self, elapsed: float) -> None:
        now = time.monotonic()
        if now - self._shown_at < SHOW_EVERY:
            return
        self._shown_at = now
        phase = int(elapsed * 2) % 10
        self.bar.value = (phase if phase <= 5 else 10 - phase) * 20
        self._say(f"⏳ {self._status} · {int(elapsed)} s")

    def _ended(self, run: Generation, state: FormState) -> None:
        """On the engine's thread, the run's lifecycle (`run/lifecycle.py`): bind the
        result (an incomplete one too: it was billed), show it in the gallery and the
        display; then the outcome line, and Generate is enabled again."""
        from ..engine.lifecycle import Delivery, deliver, describe_failure

        self.bar.value = 100
        error = run.exception() if run.status != "done" else None
        value = run.result() if error is None else getattr(error, "result", None)

        def bind(result: ImageResult) -> None:
            self.results.insert(0, result)
            self._latest_code = run.cell or self._code_or_problem(state)
            if state.out and self._shell is not None:
                self._shell.user_ns[state.out] = result

        def show(result: ImageResult) -> None:
            self.gallery.add(result, state, self.load)
            self._update_display()

        try:
            deliver(value, Delivery(bind=bind, show=show), failure=error)
        except BaseException as exc:
            self.bar.bar_style = "danger"
            self._say(f"✗ {describe_failure(exc)}")
        else:
            assert value is not None  # deliver raised the run's error otherwise
            self.bar.bar_style = "success"
            self._say(value.summary())
        self.generate_button.disabled, self.cancel_button.disabled = False, True

    # -- what the form is -------------------------------------------------------------------

    @property
    def result(self) -> ImageResult | None:
        return self.results[0] if self.results else None

    def _bundle(self) -> dict[str, Any]:
        """The form's display: its widget view, with the static form beside it."""
        view = {"version_major": 2, "version_minor": 0, "model_id": self.box.model_id}
        return {WIDGET_VIEW: view, **self._static()}

    def _static(self) -> dict[str, Any]:
        """What shows where the widget cannot: the code, and the latest image."""
        if self.result is None:
            return {"text/plain": self._code_or_problem()}
        preview = self.result.preview(0)
        return {"text/plain": self._latest_code, preview.mime: preview.base64()}

    def _update_display(self) -> None:
        bundle = self._bundle()
        for handle in self._handles:
            handle.update(bundle, metadata=widget_mark(), raw=True)

    def close(self) -> None:
        """Close the form (a run still going is cancelled): its widgets are closed and its
        outputs show the latest image and the code, with no widget view left to save."""
        self.cancel()
        bundle = self._static()
        from ..views.widget import close_tree

        close_tree(self.box)
        for handle in self._handles:
            handle.update(bundle, raw=True)
        self._handles.clear()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.box.comm is None:  # closed: the static form
            display(self._static(), raw=True)
            return
        handle = display(self._bundle(), metadata=widget_mark(), raw=True, display_id=True)
        if handle is not None:
            self._handles.append(handle)

    def __repr__(self) -> str:
        return self._code_or_problem()


class _FormWatcher:
    """A run of the form, shown in it; every call on the engine's thread."""

    def __init__(self, form: MeshForm, state: FormState) -> None:
        self._form, self._state = form, state

    def event(self, event: StreamEvent) -> None:
        from ..views.base import describe

        self._form._status = describe(event) or self._form._status
        self._form._progress(self._form.run.elapsed if self._form.run else 0.0)

    def tick(self, elapsed: float) -> None:
        self._form._progress(elapsed)

    def ended(self, run: Generation) -> None:
        self._form._ended(run, self._state)


def form(
    prompt: str = "",
    *,
    out: str | None = None,
    base_url: str | None = None,
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> MeshForm:
    """An interactive form prefilled with `prompt` and `fields` (checked like
    `generate()`'s); `out` is `-o NAME`. Display it (the last line of a cell). In marimo
    it is marimo's own form, whose value is its cell (`forms/marimo.py`)."""
    from ..client.prepare import request_fields, running_shell
    from ..frontends import in_marimo
    from ..schema import SETTINGS

    base_url = check(SETTINGS["base_url"], base_url, source="base_url")
    if in_marimo():
        from ..settings import configured
        from .marimo import marimo_form

        if out is not None:
            raise OptionError("out=: in marimo, name the value: fox = mm.cell(form.value)")
        return marimo_form(prompt, request_fields(fields, params), out=None,
                           base_url=base_url, config=configured())  # fmt: skip
    if out is not None:
        out = check(BY_FLAG["-o"], out, source="out")
    if not isinstance(prompt, str):
        raise OptionError(f"prompt: expected text, not {prompt!r}")
    return MeshForm(prompt, request_fields(fields, params), out=out, base_url=base_url,
                    shell=running_shell())  # fmt: skip

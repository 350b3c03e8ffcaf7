"""Tab completion in `%%meshimage`, `%meshimage` and `%mesh`.

What completes, all from `schema.OPTIONS` (and `%mesh`'s own parsers):

- an option's name: `--si<Tab>` gives `--size`, on the magic line and on a cell's option
  lines;
- the value of an option with known values: `--quality <Tab>` (its choices), `--size`
  (the common sizes), `--format`, true/false, `--base-url local`; after a comma too
  (`--model a,<Tab>`: a sweep's list);
- `--model <Tab>`: the ids of the last `/v1/models` list of that API. The list is kept
  as it passes (`%mesh models`, the form); when there is none yet, the first Tab asks
  for it in the background and waits a moment at most (`WAIT_SECONDS`), so a slow API
  never holds the keyboard up: a later Tab offers what arrived;
- `%mesh <Tab>`: the commands, and then each command's flags.

`completions()` is the logic, on plain text. `register()` puts it on `ip.Completer`'s
`custom_matchers`, as a matcher of IPython's API v2 (`context_matcher`, IPython 8.6 and
later; the package needs 8.12): that completer also answers a kernel's
`complete_request`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..schema import BY_FLAG, OPTIONS, SWEEPABLE
from .commands import COMMANDS, MOVED, PARSERS, command_flags

WAIT_SECONDS = 0.3  # what a first Tab waits for /v1/models; then the list arrives later
FETCH_SECONDS = 5.0  # the longest a background ask for /v1/models may take
RETRY_SECONDS = 30.0  # a failed ask is not repeated sooner, however often Tab is pressed

_MAGIC = re.compile(r"(?:^|[\s=(])(%{1,2})(meshimage|mesh)(?=\s|$)")
_CELL_OPTIONS = re.compile(r"\s*%%(meshimage|mesh\s+form)(?=\s|$)")

ModelIds = Callable[[str | None], Sequence[str]]  # base URL (None: configured) -> ids


@dataclass(frozen=True)
class Found:
    """What to put in place of `word`, the text before the cursor that is replaced."""

    word: str
    matches: list[str]


def completions(full_text: str, line: int, column: int, models: ModelIds) -> Found | None:
    """The completions at (`line`, `column`) of `full_text`, or None when the cursor is
    not among a mesh magic's options (other completers then have their say)."""
    lines = full_text.split("\n")
    if line >= len(lines):
        return None
    before = lines[line][:column]
    magic = _MAGIC.search(before)
    if magic is not None:
        kind = "mesh" if magic[2] == "mesh" else "meshimage"
        words_text = before[magic.end() :]
    elif line > 0 and _in_cell_options(lines, line):
        kind, words_text = "meshimage", " " + before
    else:
        return None
    words = words_text.split()
    word = "" if not words or words_text[-1].isspace() else words[-1]
    done = words[:-1] if word else words
    if kind == "mesh":
        if not done:  # the command's own name
            return Found(word, [name for name in COMMANDS if name.startswith(word)])
        command, done = done[0], done[1:]
        if command in PARSERS:
            return _flags_or_values(word, done, command_flags(command), models)
        if command != "form":
            return None
    return _flags_or_values(word, done, _request_flags(), models)


def _in_cell_options(lines: list[str], line: int) -> bool:
    """Whether line `line` is an option line of a `%%meshimage` (or `%%mesh form`) cell:
    it starts with `-`, and so does every line above it up to the magic (blank lines and
    comments aside)."""
    if not _CELL_OPTIONS.match(lines[0]) or not lines[line].lstrip().startswith("-"):
        return False
    for above in lines[1:line]:
        text = above.strip()
        if text == "--" or (text and not text.startswith(("-", "#"))):
            return False  # the options ended: the prompt has begun
    return True


def _request_flags() -> dict[str, bool]:
    """The flags of `%%meshimage` (and `%mesh form`), long ones first, and whether each
    takes a value; not the moved ones (commands of `%mesh` now)."""
    flags = {f: o.kind is not None for o in OPTIONS for f in o.flags if f not in MOVED}
    return dict(sorted(flags.items(), key=lambda item: not item[0].startswith("--")))


def _flags_or_values(
    word: str, done: list[str], flags: Mapping[str, bool], models: ModelIds
) -> Found:
    if word.startswith("--") and "=" in word:  # --quality=hi
        flag, _, value = word.partition("=")
        return Found(word, [f"{flag}={v}" for v in _values(flag, value, done, models)])
    if done and flags.get(done[-1]):
        return Found(word, _values(done[-1], word, done, models))
    if word.startswith("-"):
        return Found(word, [flag for flag in flags if flag.startswith(word)])
    return Found(word, [])


def _values(flag: str, typed: str, done: list[str], models: ModelIds) -> list[str]:
    """The known values of `flag` that start as `typed` does. In a sweep's comma list
    (`--model a,b`) the last item is completed, and the earlier ones kept."""
    option = BY_FLAG.get(flag)
    if option is None:  # a %mesh command's own flag (--limit): no values known
        return []
    prefix, last = "", typed
    if option.dest in SWEEPABLE and "," in typed:
        kept, _, last = typed.rpartition(",")
        prefix = f"{kept},"
    if option.dest == "model":
        candidates: Sequence[str] = models(_given_base_url(done))
    else:
        candidates = option.kind.suggested if option.kind is not None else ()
    return [prefix + value for value in candidates if value.startswith(last)]


def _given_base_url(done: list[str]) -> str | None:
    """The `--base-url` the line gives already, if any (its models are the ones to offer)."""
    for i, word in enumerate(done):
        if word == "--base-url" and i + 1 < len(done):
            return done[i + 1]
        if word.startswith("--base-url="):
            return word.partition("=")[2]
    return None


# -- the model ids: the kept list, else asked for in the background ---------------------------


class ListedModels:
    """The ids `/v1/models` gave for an API (`http/listed.py`); when it has not been asked
    yet, asked on the engine, waiting `WAIT_SECONDS` at most."""

    def __init__(self, config: Callable[[], Mapping[str, Any]]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._asking: dict[str, tuple[float, concurrent.futures.Future[Any]]] = {}

    def __call__(self, base_url: str | None) -> Sequence[str]:
        from ..http.listed import listed_ids
        from ..settings import client_settings

        try:
            settings = client_settings(self._config(), base_url)
        except Exception:  # no key, a bad URL: nothing to offer (the cell will say why)
            return ()
        ids = listed_ids(settings.base_url)
        if ids is not None:
            return ids
        asking = self._ask(settings)
        with contextlib.suppress(Exception):  # still on its way, or failed: what there is
            asking.result(WAIT_SECONDS)
        return listed_ids(settings.base_url) or ()

    def _ask(self, settings: Any) -> concurrent.futures.Future[Any]:
        from ..engine.loop import engine
        from ..http.client import fetch_models

        with self._lock:
            began, asking = self._asking.get(settings.base_url, (0.0, None))
            failed = asking is not None and asking.done() and asking.exception() is not None
            if asking is None or (failed and time.monotonic() - began > RETRY_SECONDS):
                fetching = asyncio.wait_for(fetch_models(settings), FETCH_SECONDS)
                asking = engine().submit(fetching)
                self._asking[settings.base_url] = (time.monotonic(), asking)
            return asking


# -- on IPython's completer ---------------------------------------------------------------------


def register(shell: Any) -> None:
    """Put the matcher on `shell`'s completer (`%load_ext`); a reload replaces it. The
    settings (base URL, key) are those of the magics registered then."""

    def config() -> Mapping[str, Any]:
        magics = shell.magics_manager.registry.get("MeshImageMagics")
        return magics.settings() if magics is not None else {}

    completer = getattr(shell, "Completer", None)
    if completer is None:
        return
    unregister(shell)
    completer.custom_matchers.insert(0, matcher(ListedModels(config)))


def unregister(shell: Any) -> None:
    """Take the matcher off `shell`'s completer again (`%unload_ext`)."""
    completer = getattr(shell, "Completer", None)
    if completer is not None:
        completer.custom_matchers[:] = [
            m for m in completer.custom_matchers if getattr(m, "__name__", "") != _NAME
        ]


_NAME = "mesh_magics_matcher"


def matcher(models: ModelIds) -> Any:
    """`completions()` as a matcher of IPython's API v2: it replaces the word it completed
    and, when it has matches, keeps other matchers' Python names out."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    @context_matcher()
    def mesh_magics_matcher(context: Any) -> dict[str, Any]:
        found = completions(context.full_text, context.cursor_line, context.cursor_position, models)
        if found is None or not found.matches:
            return {"completions": [], "suppress": False}
        return {
            "completions": [SimpleCompletion(m, type="param") for m in found.matches],
            "matched_fragment": found.word,
            "suppress": True,
            "ordered": True,
        }

    assert mesh_magics_matcher.__name__ == _NAME
    return mesh_magics_matcher

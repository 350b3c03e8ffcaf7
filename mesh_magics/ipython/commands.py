"""`%mesh`: the commands, apart from the magic that generates (as jupysql keeps `%sqlcmd`
apart from `%sql`). `%%meshimage` only generates; everything else is a subcommand here:

    %mesh models [--base-url URL] [-o NAME]   the image models the API offers
    %mesh history [TEXT] [FILTERS] [-n N] [-o NAME]   the latest stored generations
    %mesh usage                                this session's requests, images and cost
    %mesh jobs [-o NAME]                       running and recent background runs
    %mesh wait [--timeout SECONDS]             wait for every background run
    %mesh form [OPTIONS] [PROMPT]              the interactive form (%%mesh form: prefilled)
    %mesh batches [--refresh] [-n N] [-o NAME] the batches sent with --batch
    %mesh from PATH [-o NAME]                  the cell that makes a saved image again

Each takes `-h`. A mistake is one `OptionError` line naming the command and what it
takes, as every option's is.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..wording import plural

if TYPE_CHECKING:
    from .magic import MeshImageMagics


class _HelpShown(Exception):
    """`-h` printed the command's help: the command does nothing else."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises `OptionError` instead of exiting the kernel."""

    def error(self, message: str) -> Any:  # argparse's own type says NoReturn
        raise OptionError(f"{self.prog}: {message} (see {self.prog} -h)")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise _HelpShown


def _parser(name: str, description: str) -> _Parser:
    return _Parser(prog=f"%mesh {name}", description=description, add_help=True)


def _out(parser: _Parser) -> None:
    parser.add_argument("-o", "--out", metavar="NAME", help="bind the value to NAME too")


def _limit(parser: _Parser) -> None:
    parser.add_argument(
        "-n", "--limit", type=int, default=20, metavar="N", help="how many (default 20)"
    )


def _models_parser() -> _Parser:
    parser = _parser("models", "The image models the API offers, as a table.")
    parser.add_argument("--base-url", metavar="URL", help="the API to ask (`local`: embedded)")
    _out(parser)
    return parser


def _models(magics: MeshImageMagics, words: list[str], cell: str | None) -> Any:
    args = _models_parser().parse_args(words)
    return magics.bind(args.out, magics.list_models(args.base_url))


def _history_parser() -> _Parser:
    parser = _parser("history", "The latest stored generations, newest first.")
    parser.add_argument("text", nargs="*", help="only those whose prompt, model or id has it")
    parser.add_argument("--model", metavar="MODEL", help="only this model's")
    parser.add_argument("--size", metavar="WxH", help="only this size (asked for, or made)")
    parser.add_argument("--seed", type=int, metavar="N", help="only this seed's")
    parser.add_argument("--since", metavar="WHEN", help="made at or after (ISO: 2025-05-01)")
    parser.add_argument("--until", metavar="WHEN", help="made before (a date: to its end)")
    parser.add_argument(
        "--tag", action="append", metavar="TAG", help="only those tagged so (again: all of them)"
    )
    parser.add_argument("--min-rating", type=int, metavar="STARS", help="at least 1 to 5 stars")
    _limit(parser)
    _out(parser)
    return parser


def _history(magics: MeshImageMagics, words: list[str], cell: str | None) -> Any:
    from ..client.history import history

    args = _history_parser().parse_args(words)
    try:
        found = history(
            " ".join(args.text) or None,
            args.limit,
            model=args.model,
            size=args.size,
            seed=args.seed,
            since=args.since,
            until=args.until,
            tag=args.tag,
            min_rating=args.min_rating,
            config=magics.settings(),
        )
    except OptionError as exc:  # name the command, as argparse's errors do
        raise OptionError(f"%mesh history: {exc}") from None
    return magics.bind(args.out, found)


def _usage_parser() -> _Parser:
    return _parser("usage", "This session's requests, images, replays and cost.")


def _usage(magics: MeshImageMagics, words: list[str], cell: str | None) -> Any:
    from ..client.history import usage_report

    _usage_parser().parse_args(words)
    return usage_report(config=magics.settings())


def _jobs_parser() -> _Parser:
    parser = _parser("jobs", "Running and recent background runs.")
    _out(parser)
    return parser


def _jobs(magics: MeshImageMagics, words: list[str], cell: str | None) -> Any:
    from ..engine.jobs import JobList, jobs

    args = _jobs_parser().parse_args(words)
    return magics.bind(args.out, JobList(jobs().all()))


def _wait_parser() -> _Parser:
    parser = _parser("wait", "Wait for every background run; an interrupt stops the wait.")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="wait at most this")
    return parser


def _wait(magics: MeshImageMagics, words: list[str], cell: str | None) -> None:
    from ..engine.jobs import jobs

    args = _wait_parser().parse_args(words)
    left = jobs().wait(args.timeout)
    if left:
        print(f"meshimage: {plural(len(left), 'background run')} still going after the timeout")


def _form(magics: MeshImageMagics, words: list[str], cell: str | None) -> Any:
    if words and words[0] in ("-h", "--help"):
        print(
            "usage: %mesh form [OPTIONS] [PROMPT]   (or %%mesh form, with option lines and a "
            "prompt)\n\nThe interactive form, prefilled with the request's options (those of "
            "%%meshimage), -o NAME and --base-url."
        )
        return None
    return magics.form(shlex.join(words), cell)


def _batches_parser() -> _Parser:
    parser = _parser(
        "batches", "The batches sent with --batch or mm.batch, newest first, as last seen."
    )
    parser.add_argument(
        "--refresh", action="store_true", help="ask the API for the status of those still going"
    )
    _limit(parser)
    _out(parser)
    return parser


def _batches(magics: MeshImageMagics, words: list[str], cell: str | None) -> Any:
    from ..client.batches import batches

    args = _batches_parser().parse_args(words)
    try:
        found = batches(args.limit, refresh=args.refresh, config=magics.settings())
    except OptionError as exc:
        raise OptionError(f"%mesh batches: {exc}") from None
    return magics.bind(args.out, found)


def _from_parser() -> _Parser:
    parser = _parser(
        "from",
        "The %%meshimage cell that makes a saved image again, from its provenance: put in "
        "a new cell below, or printed where no cell can be inserted (a terminal, a headless "
        "run).",
    )
    parser.add_argument("path", metavar="PATH", help="an image saved by mesh-magics")
    _out(parser)
    return parser


def _from(magics: MeshImageMagics, words: list[str], cell: str | None) -> None:
    args = _from_parser().parse_args(words)
    code = cell_of(args.path, args.out)
    shell = magics.shell
    from ..views import interactive_frontend

    if shell is not None and interactive_frontend(shell):
        shell.set_next_input(code)
    else:
        print(code)


def cell_of(path: str, out: str | None = None) -> str:
    """The exact `%%meshimage` cell for the image at `path`, written by the form's writer."""
    from ..client.provenance import fields_of
    from ..forms.code import to_cell
    from ..forms.state import FormState

    fields = fields_of(path)
    prompt = fields.pop("prompt", None)
    if prompt is None:
        raise OptionError(
            f"%mesh from {path}: it was saved without its prompt (embed_prompt=False), so "
            "no cell can make it again"
        )
    if {"image", "reference_images", "mask"} & set(fields):
        raise OptionError(
            f"%mesh from {path}: it was made from input images, which its metadata keeps "
            "as sha256 digests only, so a cell cannot name them; mm.fields_of(path) gives "
            "its fields"
        )
    fields.update(fields.pop("params", {}))
    return to_cell(FormState(prompt=prompt, fields=fields, out=out))


COMMANDS: dict[str, tuple[Callable[[MeshImageMagics, list[str], str | None], Any], str]] = {
    "models": (_models, "the image models the API offers"),
    "history": (_history, "the latest stored generations [TEXT] [--model, --tag ...] [-n N]"),
    "usage": (_usage, "this session's requests, images, replays and cost"),
    "jobs": (_jobs, "running and recent background runs"),
    "wait": (_wait, "wait for every background run [--timeout SECONDS]"),
    "form": (_form, "the interactive form, prefilled with options and a prompt"),
    "batches": (_batches, "the batches sent with --batch [--refresh] [-n N]"),
    "from": (_from, "the %%meshimage cell that makes a saved image again PATH"),
}

# The parsers of the commands that take argparse flags (`form` takes %%meshimage's).
PARSERS: dict[str, Callable[[], _Parser]] = {
    "models": _models_parser,
    "history": _history_parser,
    "usage": _usage_parser,
    "jobs": _jobs_parser,
    "wait": _wait_parser,
    "batches": _batches_parser,
    "from": _from_parser,
}


def command_flags(name: str) -> dict[str, bool]:
    """The flags `%mesh NAME` takes, and whether each takes a value, from its parser (for
    Tab completion)."""
    actions = PARSERS[name]()._actions
    return {flag: action.nargs != 0 for action in actions for flag in action.option_strings}


# The %%meshimage flags these commands replace, for a one-line pointer.
MOVED = {
    "--list-models": "models",
    "--history": "history",
    "--usage": "usage",
    "--jobs": "jobs",
    "--wait": "wait",
    "--form": "form",
}


def overview() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  %mesh {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "%mesh COMMAND [-h]: the commands of mesh-magics\n" + "\n".join(lines)


def run_command(magics: MeshImageMagics, line: str, cell: str | None) -> Any:
    """Run the `%mesh` line (and cell, for `%%mesh form`)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise OptionError(f"%mesh: {exc}") from None
    if not words or words[0] in ("-h", "--help", "help"):
        print(overview())
        return None
    name, rest = words[0], words[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, 1, 0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise OptionError(f"%mesh: no command {name!r}; {hint}commands: {', '.join(COMMANDS)}")
    if cell is not None and name != "form":
        raise OptionError(f"%%mesh {name} takes no cell; use the line magic %mesh {name}")
    try:
        return COMMANDS[name][0](magics, rest, cell)
    except _HelpShown:
        return None


def pointer(flag: str) -> OptionError:
    """The error for a command flag on `%meshimage`, which only generates now."""
    return OptionError(f"{flag} is now a command of its own: %mesh {MOVED[flag]} (see %mesh -h)")

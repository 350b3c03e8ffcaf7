"""The documents a newcomer reads: the README is a short front door whose two commands come
first, docs/reference.md is the schema as written now, and every link between the pages
leads somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mesh_magics.schema import OPTIONS, Option, allowed_text

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FLAG = re.compile(r"(?<![\w-])--?[a-z][\w-]*")


def test_the_reference_is_generated_from_the_schema() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, "docs/reference.md is stale: python scripts/reference.py --write"


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.flags], ids=lambda o: o.flags[0])
def test_each_option_says_what_it_takes_and_a_flag_takes_nothing(option: Option) -> None:
    allowed = allowed_text(option)
    if option.kind is None:
        assert allowed == "", "a flag takes no value"
    else:
        assert allowed, "an option with a value says what it may be"
        # An example written for another option (`e.g. -o fox` under --prompts) misleads.
        assert set(FLAG.findall(allowed)) <= set(option.flags), allowed
    if option.metavar == "SOURCE":
        assert "file path" in allowed and "variable" in allowed


def test_the_readme_is_a_front_door_with_the_two_commands_first() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    first_block = readme.split("```")[1]
    lines = [line.split()[0] for line in first_block.splitlines()[1:] if line.strip()]
    commands = [word for word in lines if not word.startswith("#")]
    assert commands[:2] == ["scripts/quickstart", "scripts/test"]
    for script in commands[:2]:
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of `page`."""
    anchors = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_between_the_pages_leads_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(ROOT), f"{target}: outside the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: {target}: no such heading"

"""The docs a newcomer reads hold together: every relative link in README.md and docs/*.md
points to a file that exists and, with an `#anchor`, to a heading of that file; every
picture in docs/ is shown by some page; and the README's CLI table names every command."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from pipeline.ops.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)


def prose(text: str) -> str:
    """The page without its code blocks: a link inside one is an example, not a link."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces
    as hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in HEADING.findall(prose(page.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page.read_text()))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_check_catches_a_broken_file_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Kafka: TLS and `SASL`\n")
    page.write_text(
        "[ok](other.md#kafka-tls-and-sasl) [gone](missing.md) [bad](other.md#nope)\n"
        "```\n[in code](nowhere.md)\n```\n[web](https://example.com/x.md)\n"
    )
    assert relative_links(page) == [
        "other.md#kafka-tls-and-sasl",
        "missing.md",
        "other.md#nope",
    ]
    assert anchors(tmp_path / "other.md") == {"other", "kafka-tls-and-sasl"}


def test_every_picture_in_docs_is_shown() -> None:
    shown = {
        (page.parent / target.partition("#")[0]).resolve()
        for page in PAGES
        for target in relative_links(page)
    }
    unshown = [p.name for p in sorted((ROOT / "docs").glob("*.png")) if p.resolve() not in shown]
    assert not unshown, f"pictures no page shows (delete them or show them): {unshown}"


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(commands(command, (*prefix, name)))
    return out


def cli_table_cells() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `tower")]
    return [row[2:].split(" | ")[0] for row in rows]


@pytest.mark.parametrize("path", commands(cli), ids=" ".join)
def test_the_readme_cli_table_names_every_command(path: tuple[str, ...]) -> None:
    """A row names a command as `tower GROUP ... NAME`, or lists it after its group's
    first command (`tower kafka down` / `status`)."""
    *groups, name = path
    lead = "`tower " + " ".join(groups) if groups else "`tower "
    named = [
        cell
        for cell in cli_table_cells()
        if cell.startswith(lead) and re.search(rf"(`tower |[ `/]){re.escape(name)}\b", cell)
    ]
    assert named, f"README.md's CLI table has no row for `tower {' '.join(path)}`"

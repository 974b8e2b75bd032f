"""Result tables in the documentation, copied from the committed files the pipeline wrote.

A block `<!-- table: results/<study>/table.md -->` … `<!-- end table -->` in a Markdown page holds
the table lines of that file, verbatim. `refresh` rewrites every block from its file; `stale`
names the blocks that differ, so a test fails when a number in the docs is not the committed one.
"""

from __future__ import annotations

import re
from pathlib import Path

from multvae.errors import MultVAEError

BLOCK = re.compile(r"(<!-- table: (?P<source>[^ ]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


class DocTableError(MultVAEError):
    """A block names a results file that is not there."""


def table_lines(markdown: str) -> str:
    """The lines of a Markdown file that belong to its tables."""
    return "".join(line + "\n" for line in markdown.splitlines() if line.startswith("|"))


def _expected(source: str, root: Path, page: Path) -> str:
    path = root / source
    if not path.is_file():
        raise DocTableError(f"{page}: the table block names {source}, which does not exist under {root}")
    return table_lines(path.read_text())


def refresh(text: str, root: Path, page: Path) -> str:
    """`text` with every block's body replaced by its source's table lines."""
    return BLOCK.sub(lambda m: m.group(1) + _expected(m.group("source"), root, page) + m.group(4), text)


def stale(text: str, root: Path, page: Path) -> list[str]:
    """The sources whose block in `text` differs from the committed file."""
    return [m.group("source") for m in BLOCK.finditer(text)
            if m.group("body") != _expected(m.group("source"), root, page)]


def sources(text: str) -> list[str]:
    return [m.group("source") for m in BLOCK.finditer(text)]

"""`multvae docs`: copy each study's committed table into the documentation pages that quote it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import user_errors


@user_errors
def docs(
    pages: Annotated[list[Path] | None, typer.Argument(
        help="Markdown pages (default: README.md, docs/*.md).")] = None,
    check: Annotated[bool, typer.Option(help="Only report stale tables; exit 1 if any.")] = False,
) -> None:
    """Rewrite every `<!-- table: results/<study>/table.md -->` block from the file it names."""
    from multvae.atomic import write_text
    from multvae.doc_tables import refresh, stale

    root = Path.cwd()
    found = []
    for page in pages or [Path("README.md"), *sorted(Path("docs").glob("*.md"))]:
        text = page.read_text()
        if check:
            found += [f"{page}: {source}" for source in stale(text, root, page)]
        elif refresh(text, root, page) != text:
            write_text(page, refresh(text, root, page))
            typer.echo(f"docs: refreshed {page}")
    if found:
        typer.echo("docs: stale tables (run `multvae docs`): " + "; ".join(found), err=True)
        raise typer.Exit(1)

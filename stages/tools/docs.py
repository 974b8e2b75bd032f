"""`multvae docs`: copy each study's committed table into the documentation pages that quote it,
and check every number in their prose against docs/numbers.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import user_errors


@user_errors
def docs(
    pages: Annotated[list[Path] | None, typer.Argument(
        help="Markdown pages (default: README.md, docs/*.md).")] = None,
    check: Annotated[bool, typer.Option(
        help="Only report stale tables and unregistered or stale numbers; exit 1 if any.")] = False,
    propose_numbers: Annotated[bool, typer.Option(
        help="Add the pages' unregistered numbers to docs/numbers.yaml: the committed file that "
             "holds each, else an entry marked UNFILLED to complete by hand.")] = False,
) -> None:
    """Rewrite every `<!-- table: results/<study>/table.md -->` block from the file it names."""
    import yaml

    from multvae.atomic import write_text
    from multvae.doc_numbers import REGISTRY, load_registry, problems, propose
    from multvae.doc_tables import refresh, stale

    root = Path.cwd()
    registry = load_registry(root)
    found = []
    for page in pages or [Path("README.md"), *sorted(Path("docs").glob("*.md"))]:
        text = page.read_text()
        if check:
            found += [f"{page}: {source}" for source in stale(text, root, page)]
            found += problems(str(page), text, registry, root)
        elif propose_numbers:
            new = propose(str(page), text, registry, root)
            if new:
                registry[str(page)] = {**(registry.get(str(page)) or {}), **new}
                typer.echo(f"docs: {len(new)} numbers of {page} added to {REGISTRY}")
        elif refresh(text, root, page) != text:
            write_text(page, refresh(text, root, page))
            typer.echo(f"docs: refreshed {page}")
    if propose_numbers:
        write_text(root / REGISTRY, yaml.safe_dump(registry, sort_keys=False, allow_unicode=True, width=110))
    if found:
        typer.echo("docs: stale (run `multvae docs`, or fix docs/numbers.yaml): " + "; ".join(found),
                   err=True)
        raise typer.Exit(1)

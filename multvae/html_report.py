"""One self-contained HTML page of the study: the table with intervals, the figures, the data's
statistics and the exact parameters. Nothing is fetched from the network (figures are embedded
PNGs, no scripts, no fonts, no style sheets from elsewhere), so it opens offline and on clusters,
unlike the page of `dvc plots show`, which loads Vega from a CDN."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }
li { margin: 0.3em 0; }
"""


def _markdown_table(markdown: str) -> tuple[str, list[str]]:
    """The comparison table's Markdown (from table.table_markdown) as an HTML table and its legend."""
    rows, legend = [], []
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip().replace("\\|", "|") for c in _split_row(line)]
            rows.append(cells)
        elif line.startswith("- "):
            legend.append(line[2:])
    if not rows:
        return "<p>No results.</p>", legend
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", legend


def _split_row(line: str) -> list[str]:
    cells, current, escaped = [], "", False
    for char in line.strip()[1:-1]:
        if char == "|" and not escaped:
            cells.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\"
    return [*cells, current]


def _image(path: Path, title: str) -> str:
    if not path.is_file():
        return f"<p>({html.escape(str(path))} not found)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def render(dataset: str, table_markdown: str, claims_markdown: str, figures: dict[str, Path],
           stats: dict[str, Any], params_text: str) -> str:
    table, legend = _markdown_table(table_markdown)
    claims, claims_legend = _markdown_table(claims_markdown)
    flat = {k: v for k, v in stats.items() if not isinstance(v, dict)}
    for fold, counts in (stats.get("folds") or {}).items():
        flat.update({f"fold {fold}: {k}": v for k, v in counts.items() if not isinstance(v, dict)})
    stat_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in flat.items())
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>Mult-VAE study: {html.escape(dataset)}</title>", f"<style>{STYLE}</style>", "</head>",
        "<body>", f"<h1>Mult-VAE study: {html.escape(dataset)}</h1>",
        "<h2>Test results</h2>", table,
        "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in legend) + "</ul>",
        "<h2>Claims checked</h2>", claims,
        "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in claims_legend) + "</ul>",
        "<h2>Figures</h2>", *(_image(path, title) for title, path in figures.items()),
        "<h2>Data</h2>", f"<table>{stat_rows}</table>",
        "<h2>Parameters (params.yaml, less runtime:)</h2>", f"<pre>{html.escape(params_text)}</pre>",
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"

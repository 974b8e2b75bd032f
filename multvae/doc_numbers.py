"""Numbers in the docs' prose, each tied to where it comes from (docs/numbers.yaml).

A number a page states outside its generated blocks and code is either read from a committed file
(`file` and `key`: a dotted path into JSON or YAML; `row` and `column` of a CSV table; or, for a
Markdown or text file the pipeline wrote, the number as printed there) and recomputed here, or
marked `measured` (a timing, a benchmark's figure: the entry says where it
was measured), `cited` (from a paper: which) or `defined` (a constant of the method: where it is
set). A number the registry does not list for its page, or one whose file now says otherwise,
fails the docs test, so a stale number in prose is caught the way a stale table cell is.
See `significant` for which numbers are checked.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from multvae.errors import MultVAEError

REGISTRY = Path("docs/numbers.yaml")
KINDS = ("file", "measured", "cited", "defined")
# What --propose-numbers writes where no committed file holds a number: to be replaced by hand.
UNFILLED = "UNFILLED"
TEXT = (".md", ".txt")
# A number: digits with thousands separators or a decimal part, an exponent, a sign, a percent.
NUMBER = re.compile(r"(?<![\w.\-/#@^])([+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e-?\d+)?%?)"
                    r"(?![\w]|\.\d)")
_HIDDEN = [re.compile(r"<!-- (?:table|fault-matrix)[^>]*-->.*?<!-- end [^>]*-->", re.S),
           re.compile(r"```.*?```", re.S), re.compile(r"`[^`\n]*`"), re.compile(r"<!--.*?-->", re.S),
           re.compile(r"\]\([^)]*\)"), re.compile(r"https?://\S+")]


class DocNumberError(MultVAEError):
    """docs/numbers.yaml is malformed, or names a file or key that does not exist."""


def prose(text: str) -> str:
    """The page less its generated blocks, code, comments, link targets and addresses."""
    for pattern in _HIDDEN:
        text = pattern.sub(" ", text)
    return text


def _value(token: str) -> float:
    return float(token.replace(",", "").replace("%", "").replace("−", "-"))


def digits(token: str) -> int:
    """Significant digits: 0.0053 has 2, 6,034 has 4, 5% has 1."""
    mantissa = token.split("e")[0]
    return len(re.sub(r"\D", "", mantissa).lstrip("0")) or 1


def significant(token: str) -> bool:
    """Checked: a number with two significant digits or more. A single digit is a setting or a
    threshold (dropout 0.5, p < 0.05, 80% power, 5%), and a whole number below 100 is mostly a
    count (seeds, folds, rows, epochs, minutes) that means something else on every line, so one
    registry entry could not tie either to a source."""
    if digits(token) < 2:
        return False
    return any(c in token for c in ".,%+−-e") or abs(_value(token)) >= 100


def numbers(text: str) -> list[str]:
    """The page's checked numbers, in order, repeats included."""
    return [t for t in NUMBER.findall(prose(text)) if significant(t)]


def _lookup(data: Any, key: str, where: str) -> Any:
    for part in key.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise DocNumberError(f"{REGISTRY}: {where} has no {key!r}")
    return data


def printed_in(entry: dict[str, Any], token: str, root: Path) -> bool:
    """A Markdown or text source: the token stands in the file as a number of its own."""
    path = root / entry["file"]
    if not path.is_file():
        raise DocNumberError(f"{REGISTRY}: {entry['file']} does not exist")
    return re.search(rf"(?<![\d.]){re.escape(token)}(?![\d])", path.read_text()) is not None


def source_value(entry: dict[str, Any], root: Path) -> float:
    """The number an entry's file holds (times `scale`, e.g. 100 for a percentage)."""
    path = root / entry["file"]
    if not path.is_file():
        raise DocNumberError(f"{REGISTRY}: {entry['file']} does not exist")
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get(entry.get("id", "variant")) == str(entry["row"])]
        if len(rows) != 1 or entry["column"] not in rows[0]:
            raise DocNumberError(f"{REGISTRY}: {entry['file']} has no row {entry['row']!r} with column "
                                 f"{entry['column']!r}")
        value: Any = rows[0][entry["column"]]
    else:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        value = _lookup(data, str(entry["key"]), entry["file"])
    try:
        return float(value) * float(entry.get("scale", 1))
    except (TypeError, ValueError):
        raise DocNumberError(f"{REGISTRY}: {entry['file']} {entry.get('key', entry.get('column'))}: "
                             f"{value!r} is not a number") from None


def agrees(token: str, value: float) -> bool:
    """The token is `value` as printed: rounded to the token's own decimals."""
    decimals = len(token.split(".")[1].rstrip("%")) if "." in token and "e" not in token else 0
    if "e" in token:
        return math.isclose(_value(token), value, rel_tol=0.05)
    return abs(round(value, decimals) - _value(token)) < 0.5 * 10.0 ** -decimals + 1e-12


def load_registry(root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    path = root / REGISTRY
    registry = yaml.safe_load(path.read_text()) if path.is_file() else {}
    if not isinstance(registry, dict):
        raise DocNumberError(f"{REGISTRY}: expected a mapping of pages to their numbers")
    for page, entries in registry.items():
        for token, entry in (entries or {}).items():
            kinds = [k for k in KINDS if k in (entry or {})]
            if len(kinds) != 1:
                raise DocNumberError(f"{REGISTRY}: {page}: {token}: give exactly one of {', '.join(KINDS)}")
            if kinds[0] != "file" and not str(entry[kinds[0]]).strip():
                raise DocNumberError(f"{REGISTRY}: {page}: {token}: say where ({kinds[0]}: …)")
    return registry


def problems(page: str, text: str, registry: dict[str, dict[str, dict[str, Any]]], root: Path) -> list[str]:
    """Each number of the page that the registry does not list, or whose file says otherwise."""
    entries = registry.get(page) or {}
    found = []
    on_page = dict.fromkeys(numbers(text))
    for token in on_page:
        entry = entries.get(token)
        if entry is None:
            found.append(f"{page}: {token} is not in {REGISTRY}")
        elif str(entry.get("measured", "")).startswith(UNFILLED):
            found.append(f"{page}: {token}: {REGISTRY} says {UNFILLED}; say where it was measured")
        elif "file" in entry and Path(entry["file"]).suffix in TEXT:
            if not printed_in(entry, token, root):
                found.append(f"{page}: {token}, but {entry['file']} does not print it")
        elif "file" in entry:
            value = source_value(entry, root)
            if not agrees(token, value):
                found.append(f"{page}: {token}, but {entry['file']} says {value:.6g}")
    stale = set(entries) - set(on_page)
    found += [f"{REGISTRY}: {page}: {token} is no longer on the page" for token in sorted(stale)]
    return found


def _leaves(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in _leaves(v, f"{prefix}{i}.")]
    if isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data):
        return [(prefix[:-1], float(data))]
    return []


def candidates(root: Path) -> list[tuple[dict[str, Any], float]]:
    """Every number in the committed results and configuration, as a registry entry and its value."""
    found: list[tuple[dict[str, Any], float]] = []
    for path in sorted((root / "results").glob("*/table.csv")):
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                for column, cell in row.items():
                    try:
                        value = float(cell)
                    except (TypeError, ValueError):
                        continue
                    if math.isfinite(value):
                        entry = {"file": str(path.relative_to(root)), "row": row["variant"], "column": column}
                        found.append((entry, value))
    files = [*sorted((root / "results").glob("*/*.json")), root / "conf" / "config.yaml",
             *sorted((root / "conf" / "study").glob("*.yaml"))]
    for path in files:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        found += [({"file": str(path.relative_to(root)), "key": key}, value) for key, value in _leaves(data)]
    return found


def propose(page: str, text: str, registry: dict[str, dict[str, dict[str, Any]]],
            root: Path) -> dict[str, dict[str, Any]]:
    """Entries for the page's numbers the registry lacks: a committed file that holds the number
    (preferring the study whose name the number's section heading holds), else a placeholder to
    fill by hand."""
    pool = candidates(root)
    entries = registry.get(page) or {}
    heading, out = "", {}
    for line in prose(text).splitlines():
        if line.startswith("#"):
            heading = line
        for token in NUMBER.findall(line):
            if not significant(token) or token in entries or token in out:
                continue
            for scale in ((1, 100) if token.endswith("%") else (1,)) if digits(token) >= 3 else ():
                matches = [e for e, v in pool if agrees(token, v * scale)]
                if token.isdigit():  # a count or a setting: a statistic or a parameter, not a table cell
                    matches = [e for e in matches if not e["file"].endswith(".csv")]
                if matches:
                    near = [e for e in matches if e["file"].split("/")[1] in heading]
                    out[token] = {**(near or matches)[0], **({"scale": scale} if scale != 1 else {})}
                    break
            else:
                texts = [p for p in sorted((root / "results").glob("*/*.md"))
                         if digits(token) >= 3 and not token.isdigit()
                         and token in NUMBER.findall(p.read_text())]
                same_study = [p for p in texts if p.parent.name in heading]
                out[token] = ({"file": str((same_study or texts)[0].relative_to(root))} if texts
                              else {"measured": f"{UNFILLED} ({line.strip()[:80]})"})
    return out

"""Where a tuning group's choice lies in its grid: the settings its members vary, and the axes on
which a chosen member sits at the smallest or largest value tried.

A choice at an end of a grid says the best setting may lie beyond it, so the table flags it
rather than presenting the grid's end as the optimum.
"""

from __future__ import annotations

from typing import Any

from multvae.config import Config, to_dict


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def varying(configs: dict[str, Config]) -> dict[str, dict[str, Any]]:
    """Per member, the settings whose values differ between the members (dotted keys)."""
    flat = {name: _flat(to_dict(cfg)) for name, cfg in configs.items()}
    keys = sorted({k for values in flat.values() for k in values})
    differing = [k for k in keys if len({repr(values.get(k)) for values in flat.values()}) > 1]
    return {name: {k: values.get(k) for k in differing} for name, values in flat.items()}


def edge_axes(settings: dict[str, dict[str, Any]], chosen: str) -> list[str]:
    """The numeric settings on which `chosen` takes the smallest or largest value of the grid."""
    edges = []
    for key, value in settings[chosen].items():
        values = [s[key] for s in settings.values()]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        if len(set(values)) > 1 and value in (min(values), max(values)):
            edges.append(key)
    return edges

"""Where a tuning group's choice lies in its grid: the settings its members vary, the axes on
which a chosen member sits at the smallest or largest value tried, and the grid point one step
past such an end.

A choice at an end of a grid says the best setting may lie beyond it, so the table flags it
rather than presenting the grid's end as the optimum, and `multvae extend-grids` adds the next
point as a new variant (stages/tools/extend_grids.py).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

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


def step_beyond(values: list[float], end: float) -> float:
    """The next value past `end`, the smallest or largest of `values`, at the grid's own spacing:
    a ratio when the values are positive and their ratios vary no more than their differences
    (step sizes, γ, β caps), a difference otherwise (dropout 0.3, 0.5, 0.7 → 0.9)."""
    ordered = sorted(set(values))
    diffs = np.diff(ordered)
    ratios = np.array(ordered[1:]) / np.array(ordered[:-1]) if ordered[0] > 0 else None
    geometric = ratios is not None and _spread(ratios) <= _spread(diffs)
    if end == ordered[-1]:
        beyond = end * ratios[-1] if geometric and ratios is not None else end + diffs[-1]
    else:
        beyond = end / ratios[0] if geometric and ratios is not None else end - diffs[0]
    return float(f"{beyond:.6g}")


def _spread(values: np.ndarray) -> float:
    return float(np.std(values) / abs(np.mean(values)))


@dataclass(frozen=True)
class Extension:
    """One new grid point: `member` (a new variant) is `beyond` with `axis` moved one step past the
    grid's end."""

    group: str
    member: str
    override: dict[str, Any]
    beyond: str
    axis: str
    value: float


def extensions(group: str, overrides: dict[str, dict[str, Any]], settings: dict[str, dict[str, Any]],
               chosen: set[str]) -> list[Extension]:
    """For each chosen member at an end of its grid (`edge_axes`), the member one step past that end
    on that axis, the other settings kept; none where that point is already in the grid."""
    found: dict[str, Extension] = {}
    for member in sorted(chosen):
        for axis in edge_axes(settings, member):
            value = step_beyond([s[axis] for s in settings.values()], settings[member][axis])
            point = {**settings[member], axis: value}
            if any(s == point for s in settings.values()):
                continue
            override = copy.deepcopy(overrides[member])
            *path, leaf = axis.split(".")
            node = override
            for key in path:
                node = node.setdefault(key, {})
            node[leaf] = value
            name = group + "".join(f"_{k.split('.')[-1]}_{_name(v)}" for k, v in point.items())
            found[name] = Extension(group, name, override, member, axis, value)
    return list(found.values())


def _name(value: Any) -> str:
    """A setting's value as part of a variant name (letters, digits and '_')."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{value:g}" if isinstance(value, float) else str(value)).replace(
        "-", "m")

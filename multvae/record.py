"""What a study's run keeps of its parameters (results/<study>/params.yaml, the report): params.yaml
less its `runtime:` section, which says how to run (threads, device, scoring batch), not what is
computed, so a rerun on other threads or another device writes the same record."""

from __future__ import annotations

from pathlib import Path

import yaml

from multvae.config import ConfigError

HOW_TO_RUN = "runtime"


def params_record(text: str, path: Path) -> str:
    """`text` (params.yaml as written) without its top-level `runtime:` block, every other line kept
    as it is; checked by parsing both, so a layout this cannot cut cleanly stops with one line."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line[:1] not in ("", " ", "\t", "-", "#", "\n"):  # a top-level key starts a section
            skipping = line.startswith(f"{HOW_TO_RUN}:")
        if not skipping:
            kept.append(line)
    record = "".join(kept)
    expected = {k: v for k, v in (yaml.safe_load(text) or {}).items() if k != HOW_TO_RUN}
    if (yaml.safe_load(record) or {}) != expected:
        raise ConfigError(f"{path}: its {HOW_TO_RUN}: section could not be set apart from the rest "
                          f"(write it as a block of indented lines under `{HOW_TO_RUN}:`)")
    return record

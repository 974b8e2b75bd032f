"""A study of conf/study/ by name, composed as `dvc exp run -S study=<name>` composes it (DVC's own
Hydra function), for the tools that look at a study other than the workspace's."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from multvae.errors import MultVAEError
from multvae.params import Params, load_params

# The same composition as a shell line, for jobs that compose the study in their own clone.
COMPOSE_COMMAND = ("python -c \"from pathlib import Path; from dvc.utils.hydra import compose_and_dump; "
                   "compose_and_dump(Path('params.yaml'), str(Path('conf').resolve()), None, 'config', '', "
                   "['study={study}'])\"")


def composed(study: str) -> Params:
    """params.yaml of `study`, composed from conf/, read and checked."""
    from dvc.utils.hydra import compose_and_dump

    if not re.fullmatch(r"[\w.-]+", study) or not (Path("conf") / "study" / f"{study}.yaml").is_file():
        known = ", ".join(sorted(p.stem for p in Path("conf/study").glob("*.yaml")))
        raise MultVAEError(f"--study {study}: no conf/study/{study}.yaml (studies: {known})")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        compose_and_dump(path, str(Path("conf").resolve()), None, "config", "", [f"study={study}"])
        return load_params(path)

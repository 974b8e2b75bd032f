"""Values one stage hands to another, as typed files of their own rather than fields re-read from a
metrics file: EASE's λ chosen on each fold's validation users, which the blend stage reuses, and the
number of settings EASE tried, which the blend's tuning budget inherits.

The file names the split each λ was chosen on, so a reader on another split (or another fold set)
stops with one line instead of blending at a λ tuned elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import AllowInfNan, ConfigDict, Field, Strict

from multvae.errors import MultVAEError

Lambda = Annotated[float, Strict(), AllowInfNan(False), Field(gt=0)]


class HandoffError(MultVAEError):
    """A handed-over value is missing, malformed or from another split; the message names the file."""


class EaseChoice(pydantic.BaseModel):
    """EASE's λ by fold, with the fingerprint of the split each was chosen on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ease_lambda"] = "ease_lambda"
    lambdas: dict[str, Lambda]  # fold -> λ
    split: dict[str, str]  # fold -> the prepared data's fingerprint
    tuning_budget: Annotated[int, Strict(), Field(ge=1)]  # settings tried on validation (most over folds)

    def to_text(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def ease_choice(lambdas: dict[int, float], split: dict[int, str], tuning_budget: int) -> EaseChoice:
    return EaseChoice(lambdas={str(k): float(v) for k, v in sorted(lambdas.items())},
                      split={str(k): v for k, v in sorted(split.items())}, tuning_budget=tuning_budget)


def read_ease_choice(path: Path, split: dict[int, str]) -> tuple[dict[int, float], int]:
    """λ for each fold of `split` (fold -> fingerprint of the data the reader loaded), and the
    settings EASE tried."""
    try:
        choice = EaseChoice.model_validate_json(Path(path).read_text())
    except FileNotFoundError:
        raise HandoffError(f"{path} not found: run the ease stage first (`dvc repro ease`)") from None
    except (OSError, UnicodeDecodeError, pydantic.ValidationError) as exc:
        detail = (exc.errors()[0]["msg"] if isinstance(exc, pydantic.ValidationError) else str(exc))
        raise HandoffError(f"{path}: not EASE's λ as the ease stage writes it ({detail}); "
                           "rerun `dvc repro -f ease`") from None
    for fold, fingerprint in split.items():
        if choice.split.get(str(fold)) != fingerprint or str(fold) not in choice.lambdas:
            raise HandoffError(f"{path}: no λ chosen on fold {fold} of this split (it has folds "
                               f"{sorted(choice.split)} of split {choice.split}, this one {fingerprint}); "
                               "rerun `dvc repro ease`")
    return {fold: choice.lambdas[str(fold)] for fold in split}, choice.tuning_budget

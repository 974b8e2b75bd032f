"""Values one stage hands to another, as typed files of their own rather than fields re-read from a
metrics file: the setting each baseline chose on each fold's validation users (EASE's λ, RP3β's α
and β), which the blend stages reuse, and the number of settings it tried, which a blend's tuning
budget inherits.

Each file names the split its settings were chosen on, so a reader on another split (or another
fold set) stops with one line instead of blending at a setting tuned elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import pydantic
from pydantic import AllowInfNan, ConfigDict, Field, Strict

from multvae.errors import MultVAEError

Positive = Annotated[float, Strict(), AllowInfNan(False), Field(gt=0)]
Share = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0, le=1)]


class HandoffError(MultVAEError):
    """A handed-over value is missing, malformed or from another split; the message names the file."""


class _Choice(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    split: dict[str, str]  # fold -> the prepared data's fingerprint
    tuning_budget: Annotated[int, Strict(), Field(ge=1)]  # settings tried on validation (most over folds)

    def to_text(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


class EaseChoice(_Choice):
    """EASE's λ by fold, with the fingerprint of the split each was chosen on."""

    kind: Literal["ease_lambda"] = "ease_lambda"
    lambdas: dict[str, Positive]  # fold -> λ


class Rp3Choice(_Choice):
    """RP3β's α and β by fold, with the fingerprint of the split each was chosen on."""

    kind: Literal["rp3beta_setting"] = "rp3beta_setting"
    alphas: dict[str, Positive]  # fold -> α
    betas: dict[str, Share]  # fold -> β


def _folds(values: dict[int, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in sorted(values.items())}


def ease_choice(lambdas: dict[int, float], split: dict[int, str], tuning_budget: int) -> EaseChoice:
    return EaseChoice(lambdas=_folds(lambdas), split={str(k): v for k, v in sorted(split.items())},
                      tuning_budget=tuning_budget)


def rp3_choice(alphas: dict[int, float], betas: dict[int, float], split: dict[int, str],
               tuning_budget: int) -> Rp3Choice:
    return Rp3Choice(alphas=_folds(alphas), betas=_folds(betas),
                     split={str(k): v for k, v in sorted(split.items())}, tuning_budget=tuning_budget)


C = TypeVar("C", bound=_Choice)


def _read(path: Path, model: type[C], stage: str, owner: str, setting: str, split: dict[int, str],
          values: tuple[str, ...]) -> C:
    """The handed-over file, checked to hold a setting for each fold of `split` (fold -> fingerprint
    of the data the reader loaded) chosen on that very fold."""
    try:
        choice = model.model_validate_json(Path(path).read_text())
    except FileNotFoundError:
        raise HandoffError(f"{path} not found: run the {stage} stage first (`dvc repro {stage}`)") from None
    except (OSError, UnicodeDecodeError, pydantic.ValidationError) as exc:
        if isinstance(exc, pydantic.ValidationError):
            error = exc.errors()[0]
            detail = ".".join(str(part) for part in error["loc"]) + ": " + error["msg"]
        else:
            detail = str(exc)
        raise HandoffError(f"{path}: not {owner}'s {setting} as the {stage} stage writes it ({detail}); "
                           f"rerun `dvc repro -f {stage}`") from None
    for fold, fingerprint in split.items():
        if choice.split.get(str(fold)) != fingerprint or \
                any(str(fold) not in getattr(choice, name) for name in values):
            raise HandoffError(f"{path}: no {setting} chosen on fold {fold} of this split (it has folds "
                               f"{sorted(choice.split)} of split {choice.split}, this one {fingerprint}); "
                               f"rerun `dvc repro {stage}`")
    return choice


def read_ease_choice(path: Path, split: dict[int, str]) -> tuple[dict[int, float], int]:
    """λ for each fold of `split`, and the settings EASE tried."""
    choice = _read(path, EaseChoice, "ease", "EASE", "λ", split, ("lambdas",))
    return {fold: choice.lambdas[str(fold)] for fold in split}, choice.tuning_budget


def read_rp3_choice(path: Path, split: dict[int, str]) -> tuple[dict[int, tuple[float, float]], int]:
    """(α, β) for each fold of `split`, and the settings RP3β tried."""
    choice = _read(path, Rp3Choice, "rp3beta", "RP3β", "α and β", split, ("alphas", "betas"))
    return {fold: (choice.alphas[str(fold)], choice.betas[str(fold)]) for fold in split}, choice.tuning_budget

"""What a paper printed for its rows, kept apart from the study's parameters: reference data that
lets a claim's verdict say whether this data excludes the paper's own difference.

The file names its source and, by this project's row names, the table each row's results come
from and the printed value of each metric. A claim whose source is that paper and whose two rows
are both there gets their difference on its metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pydantic
import yaml
from pydantic import AllowInfNan, ConfigDict, Field, Strict

from multvae.config import METRIC_PATTERN
from multvae.errors import MultVAEError

Value = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0, le=1)]


class PaperResultsError(MultVAEError):
    """The printed results cannot be read; the message names the file and the key."""


class PrintedRow(pydantic.BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # the metrics: name -> value

    table: Annotated[str, Strict(), Field(min_length=1)]


class PaperResults(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Annotated[str, Strict(), Field(min_length=1)]  # as the claims' `source` begins
    rows: dict[str, PrintedRow]

    def value(self, row: str, metric: str) -> float | None:
        printed = self.rows.get(row)
        extra = (printed.model_extra or {}) if printed is not None else {}
        return extra.get(metric)

    def difference(self, source: str, row: str, reference: str, metric: str) -> float | None:
        """The paper's row − reference on `metric`, for a claim from this paper; None otherwise."""
        if not source.startswith(self.source):
            return None
        a, b = self.value(row, metric), self.value(reference, metric)
        return None if a is None or b is None else a - b


def read_paper_results(path: Path) -> PaperResults:
    """The file's printed results, checked: each metric a number in [0, 1]."""
    try:
        results = PaperResults.model_validate(yaml.safe_load(Path(path).read_text()))
    except FileNotFoundError:
        raise PaperResultsError(f"{path} not found: the paper's printed results") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PaperResultsError(f"{path}: not readable as YAML ({type(exc).__name__})") from None
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the file"
        raise PaperResultsError(f"{path}: {where}: {error['msg']}") from None
    for name, row in results.rows.items():
        for metric, value in (row.model_extra or {}).items():
            if not METRIC_PATTERN.fullmatch(metric):  # a misspelt metric would never be compared
                raise PaperResultsError(f"{path}: rows.{name}.{metric}: not a metric (ndcg@K or recall@K)")
            try:
                _VALUE.validate_python(value)
            except pydantic.ValidationError as exc:
                raise PaperResultsError(f"{path}: rows.{name}.{metric}: {exc.errors()[0]['msg']}") from None
    return results


_VALUE = pydantic.TypeAdapter(Value)

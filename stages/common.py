"""What every command shares: the params file option and turning bad input into one line, exit 1."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from multvae.errors import MultVAEError

F = TypeVar("F", bound=Callable[..., Any])

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="Parameters file (params.yaml).")]
VariantArgument = Annotated[
    str | None, typer.Argument(help="Variant name under `variants:` in params; none: the base configuration.")
]
DataOption = Annotated[Path, typer.Option(
    help="Folder written by the prepare stage (a fold-<k> folder per fold).")]


def user_errors(func: F) -> F:
    """Print a bad-input error (multvae.errors.MultVAEError) as one red line instead of a traceback,
    and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MultVAEError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]

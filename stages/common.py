"""What every stage command shares: the params file option and turning known errors into exit 1."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer

from multvae.errors import USER_ERRORS

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="Parameters file (params.yaml).")]


def user_errors(func: Callable) -> Callable:
    """Print a bad-input error as one clear line instead of a traceback, and exit 1."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return wrapper

VariantArgument = Annotated[
    str | None, typer.Argument(help="Variant name under `variants:` in params; none: the base configuration.")
]
DataOption = Annotated[Path, typer.Option(help="Folder written by the prepare stage.")]

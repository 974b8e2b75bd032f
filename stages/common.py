"""What every command shares: the params file option and turning bad input, and faults of the file
system, into one line, exit 1."""

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


MESSAGE_LIMIT = 600  # characters of one error line


class PathsError(MultVAEError):
    """Options that name one path for two roles; the message names both options."""


def distinct_paths(reads: dict[str, Path], writes: dict[str, Path]) -> None:
    """Refuse outputs that would overwrite what the command reads or each other: two outputs on one
    path, an output on (or inside, or around) an input, an output below a file. Options name the
    roles: {"--raw": path}."""
    resolved = {name: Path(path).resolve() for name, path in {**reads, **writes}.items()}
    for name, path in writes.items():
        blocked = next((p for p in resolved[name].parents if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            raise PathsError(f"{name} {path}: {blocked} is a file, not a folder; give a path in a folder")

    def related(a: Path, b: Path) -> bool:
        return a == b or a in b.parents or b in a.parents

    names = list(writes)
    for i, out in enumerate(names):
        for other in names[i + 1:]:
            if related(resolved[out], resolved[other]):
                raise PathsError(f"{out} {writes[out]} and {other} {writes[other]}: two outputs on one path; "
                                 "give each its own")
        for source in reads:
            if related(resolved[out], resolved[source]):
                raise PathsError(f"{out} {writes[out]} would overwrite what {source} {reads[source]} reads; "
                                 "give the output a path of its own")


def one_line(message: str) -> str:
    """The message with control characters and undecodable bytes escaped (binary garbage quoted in
    an error never reaches the terminal raw, and a newline cannot split the line), cut if long."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " …"


def _os_message(exc: OSError) -> str:
    """A fault of the file system the library did not anticipate: the path and the cause."""
    where = exc.filename if exc.filename is not None else "(no path given)"
    return f"{where}: {exc.strerror or type(exc).__name__}"


def user_errors(func: F) -> F:
    """Print a bad-input error (multvae.errors.MultVAEError), or a fault of the file system
    (OSError: permission denied, a folder where a file belongs), as one red line instead of a
    traceback, and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MultVAEError as exc:
            message = str(exc)
        except OSError as exc:
            message = _os_message(exc)
        typer.secho(f"error: {one_line(message)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]

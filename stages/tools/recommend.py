"""`multvae recommend`: top-N movies from a trained variant, for a user of the split or for liked movies.

Not a DVC stage: a way to look at what a trained model recommends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stages.common import DataOption, ParamsOption, user_errors

if TYPE_CHECKING:
    from multvae.recommend import Recommendations


@user_errors
def recommend(
    variant: Annotated[str, typer.Argument(help="Variant whose trained model recommends.")] = "original",
    user: Annotated[int | None, typer.Option(
        help="MovieLens userId: a held-out user's fold-in (a training user's training items) is the input.",
    )] = None,
    movie: Annotated[list[str] | None, typer.Option(
        "--movie", "-m",
        help="A movie the person likes, repeatable: a movieId, or a title (case-insensitive; the exact "
             "title, else a unique part of one).",
    )] = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="How many movies.")] = 10,
    seed: Annotated[int | None, typer.Option(help="Which seed's model; default: the lowest trained.")] = None,
    fold: Annotated[int | None, typer.Option(help="Which fold's model (data.kfold > 1); default: the "
                                                  "lowest trained.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    models: Annotated[Path, typer.Option(help="Folder of trained models, a sub-folder per variant.")] = Path(
        "models"),
    data: DataOption = Path("data/prepared"),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Recommend movies the user does not have yet, best first, with the model's score (a logit)."""
    from multvae.params import load_params
    from multvae.recommend import Recommender, RecommendError
    from multvae.runtime import setup

    if (user is None) == (not movie):
        raise RecommendError("give either --user or --movie (one or more), not both or neither")
    read = load_params(params) if params.is_file() else None  # models carry their own configuration
    device = setup(read.runtime) if read else "cpu"
    known = list(read.variants) if read else None
    recommender = Recommender(variant, models, data, seed, known, device, fold)
    answer = recommender.for_user(user, top) if user is not None else recommender.for_items(movie or [], top)
    for movie_id in answer.ignored:
        typer.echo(f"note: movieId {movie_id} is not among the model's items; ignored", err=True)
    if as_json:
        run = {"variant": variant, "fold": recommender.fold, "seed": recommender.seed}
        typer.echo(json.dumps({**run, **answer.to_dict()}, indent=2))
        return
    typer.echo(f"{variant} (seed {recommender.seed}) for {_whose(answer)}:")
    typer.echo(_table(answer))


def _whose(answer: Recommendations) -> str:
    if answer.user is None:
        return "a person who likes " + ", ".join(answer.given["title"])
    known = "fold-in" if answer.role != "train" else "training"
    return f"{answer.role} user {answer.user}, from {len(answer.given)} {known} movies"


def _table(answer: Recommendations) -> str:
    top = answer.top
    width = max([len("title"), *top["title"].str.len()])
    lines = [f"{'rank':>4}  {'movieId':>7}  {'title':<{width}}  {'score':>7}"]
    lines += [f"{r.rank:>4}  {r.movieId:>7}  {r.title:<{width}}  {r.score:>7.3f}"
              for r in top.itertuples(index=False)]
    return "\n".join(lines)

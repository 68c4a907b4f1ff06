"""``netgpt popularity synth|import``: view logs (``timestamp,title`` CSV) for an edge's
``popularity_log``, for ``netgpt popularity predict --log`` and for ``netgpt data build popularity``.

``synth`` writes the seeded synthetic log the shipped model was trained on (README of
``tasks/popularity``); ``import movielens|netflix`` converts a real log a user brings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import Subparsers, quiet, usage_error


def add_view_log_commands(actions: Subparsers) -> None:
    synth = actions.add_parser("synth", help="write a seeded synthetic view log (daily cycles, trends, releases)")
    synth.add_argument("--out", type=Path, required=True, help="CSV to write (timestamp,title)")
    synth.add_argument("--seed", type=int, default=2024)
    synth.add_argument("--days", type=int, default=182, help="length of the log (default: 182, half a year)")
    synth.set_defaults(run=quiet(_synth))
    imported = actions.add_parser("import", help="convert a real viewer log to the timestamp,title CSV")
    sources = imported.add_subparsers(dest="source", required=True)
    lens = sources.add_parser("movielens", help="MovieLens ratings.csv (userId,movieId,rating,timestamp)")
    lens.add_argument("ratings", type=Path)
    lens.add_argument("--movies", type=Path, help="movies.csv for the titles (default: 'movie <id>')")
    flix = sources.add_parser("netflix", help="Netflix Prize training_set/ folder of mv_*.txt")
    flix.add_argument("folder", type=Path)
    flix.add_argument("--titles", type=Path, help="movie_titles.csv for the titles")
    flix.add_argument("--spread-seed", type=int, help="spread each day's views over the day (seeded)")
    for parser in (lens, flix):
        parser.add_argument("--out", type=Path, required=True, help="CSV to write (timestamp,title)")
        parser.set_defaults(run=quiet(_import))


def _synth(args: argparse.Namespace) -> int:
    from edge_node.netmgmt.popularity import write_views_csv
    from tasks.popularity.synth import SynthConfig, generate

    if args.days < 4:
        return usage_error(args, f"--days must be at least 4 (a window is 3 days), got {args.days}")
    count = write_views_csv(args.out, generate(args.seed, SynthConfig(days=args.days)).rows())
    print(f"wrote {count} views ({args.days} days, seed {args.seed}) to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from edge_node.netmgmt.popularity import write_views_csv
    from netgpt.errors import InvalidArgument
    from tasks.popularity.importers import movielens_views, netflix_views

    try:
        views = (movielens_views(args.ratings, args.movies) if args.source == "movielens"
                 else netflix_views(args.folder, args.titles, args.spread_seed))
    except InvalidArgument as exc:
        return usage_error(args, str(exc))
    count = write_views_csv(args.out, views)
    print(f"wrote {count} views of {len({title for _, title in views})} titles to {args.out}")
    return 0

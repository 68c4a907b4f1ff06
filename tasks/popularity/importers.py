"""Importers of real viewer logs into the canonical ``timestamp,title`` CSV (sorted by time).

- **MovieLens** (``ratings.csv``: ``userId,movieId,rating,timestamp``, unix seconds; optional
  ``movies.csv``: ``movieId,title,genres``): every rating is a view at its timestamp; titles come
  from movies.csv, else ``movie <id>``.
- **Netflix Prize** (``training_set/mv_*.txt``: first line ``<movieId>:``, then
  ``customerId,rating,YYYY-MM-DD``; optional ``movie_titles.csv``: ``movieId,year,title``, latin-1,
  titles may hold commas): the dates carry no time of day, so a view is put at 12:00 UTC of its
  date, or — with ``spread_seed`` — at a seeded uniform second of that day. 6-hour intervals of
  Netflix data are therefore not real time-of-day information: prefer ``--interval-s 86400``.

The command line is ``netgpt popularity import movielens|netflix ... --out views.csv`` (``cli/view_logs.py``).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

from edge_node.netmgmt.popularity import csv_rows
from netgpt.errors import InvalidArgument, excerpt

DAY_S = 86400


def _clean(title: str) -> str:
    """Titles as the prompt accepts them: printable, no reserved token brackets, bounded."""
    text = "".join(ch if ch.isprintable() else " " for ch in title).replace("<|", "<").replace("|>", ">")
    return " ".join(text.split())[:200]


def movielens_titles(path: Path) -> dict[str, str]:
    titles: dict[str, str] = {}
    for number, row in csv_rows(path, "titles file"):
        if number == 1 and row and row[0].strip().lower() == "movieid":
            continue
        if len(row) < 2:
            raise InvalidArgument(f"{path}:{number}: expected movieId,title,genres, got {excerpt(','.join(row))}")
        titles[row[0].strip()] = _clean(row[1])
    return titles


def movielens_views(ratings: Path, movies: Path | None = None) -> list[tuple[int, str]]:
    """(timestamp, title) of every rating, sorted by time."""
    titles = movielens_titles(movies) if movies is not None else {}
    views: list[tuple[int, str]] = []
    columns: dict[str, int] = {}
    for number, row in csv_rows(ratings, "ratings file"):
        if number == 1:
            columns = {name.strip().lower(): i for i, name in enumerate(row)}
            if "movieid" not in columns or "timestamp" not in columns:
                raise InvalidArgument(f"{ratings}:1: expected the header userId,movieId,rating,timestamp, got "
                                      f"{excerpt(','.join(row))}")
            continue
        if not row:
            continue
        try:
            movie, stamp = row[columns["movieid"]].strip(), int(row[columns["timestamp"]])
        except (IndexError, ValueError):
            raise InvalidArgument(f"{ratings}:{number}: expected userId,movieId,rating,timestamp (unix seconds), "
                                  f"got {excerpt(','.join(row))}") from None
        views.append((stamp, titles.get(movie) or f"movie {movie}"))
    if not views:
        raise InvalidArgument(f"{ratings} has no ratings")
    views.sort()
    return views


def netflix_titles(path: Path) -> dict[str, str]:
    titles: dict[str, str] = {}
    for number, row in csv_rows(path, "titles file", encoding="latin-1"):
        if len(row) < 3:
            raise InvalidArgument(f"{path}:{number}: expected movieId,year,title, got {excerpt(','.join(row))}")
        titles[row[0].strip()] = _clean(",".join(row[2:]))
    return titles


def _netflix_file(path: Path, title: str | None, rng: random.Random | None) -> Iterator[tuple[int, str]]:
    lines = path.read_text(encoding="latin-1").splitlines()
    head = lines[0].strip() if lines else ""
    if not head.endswith(":") or not head[:-1].isdigit():
        raise InvalidArgument(f"{path}:1: expected '<movieId>:', got {excerpt(head)}")
    name = title or f"movie {head[:-1]}"
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            day = dt.datetime.strptime(parts[2].strip(), "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except (IndexError, ValueError):
            raise InvalidArgument(f"{path}:{number}: expected customerId,rating,YYYY-MM-DD, got "
                                  f"{excerpt(line)}") from None
        start = int(day.timestamp())
        yield (start + rng.randrange(DAY_S) if rng else start + DAY_S // 2), name


def netflix_views(folder: Path, titles_file: Path | None = None,
                  spread_seed: int | None = None) -> list[tuple[int, str]]:
    """(timestamp, title) of every rating in ``folder``'s ``mv_*.txt`` files (or one such file), sorted."""
    titles = netflix_titles(titles_file) if titles_file is not None else {}
    files = sorted(folder.glob("mv_*.txt")) if folder.is_dir() else [folder]
    if not files or not files[0].is_file():
        raise InvalidArgument(f"{folder} holds no Netflix Prize mv_*.txt files")
    rng = random.Random(spread_seed) if spread_seed is not None else None
    views: list[tuple[int, str]] = []
    for path in files:
        movie = path.read_text(encoding="latin-1").split(":", 1)[0].strip()
        views.extend(_netflix_file(path, titles.get(movie), rng))
    if not views:
        raise InvalidArgument(f"{folder} has no ratings")
    views.sort()
    return views

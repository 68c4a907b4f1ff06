"""A seeded synthetic viewer log: daily cycles, weekends, trends, new releases that decay, noise.

Nothing can be downloaded here, so this stands in for the research's Netflix log. Views of title
``j`` in hour ``h`` are Poisson with rate::

    daily_views * share_j * trend_j(t) * release_j(t) * cycle(hour) * weekend(day) * buzz_jd / 24

- ``share_j``: a Zipf law over the catalogue ranks (exponent ``zipf_exponent``), titles shuffled;
- ``trend_j(t) = exp(slope_j * t / 90 days)``, ``slope_j ~ N(0, trend_sd)``: slow rise or fall;
- ``release_j``: ``new_releases`` titles appear at seeded times during the log (0 views before)
  with a boost ``1 + release_boost * 0.5 ** (age / half_life)`` that decays to their base share;
- ``cycle``: a TV-viewing profile over the 24 hours of a UTC day (trough ~04:00, peak ~20:00)
  raised to ``cycle_strength`` and normalised to mean 1: quiet nights miss some titles;
- ``weekend``: Saturdays and Sundays times ``weekend_boost``;
- ``buzz_jd ~ LogNormal(0, buzz_sd)`` per title and day: word of mouth, promotions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_node.netmgmt.popularity import DEFAULT_INTERVAL_S, ViewLog, write_views_csv

HOUR_S = 3600
DAY_S = 86400
DEFAULT_SEED = 2024  # the recipe trains on this log; the evaluation holds out its tail
START = 1704067200  # 2024-01-01 00:00 UTC, a Monday
# Relative viewing by hour of day (UTC), 00:00 first: the shape of a typical TV / streaming day.
HOURLY_PROFILE = (0.60, 0.35, 0.20, 0.12, 0.10, 0.12, 0.20, 0.35, 0.50, 0.60, 0.70, 0.80,
                  0.90, 0.90, 0.90, 1.00, 1.10, 1.30, 1.60, 2.00, 2.30, 2.20, 1.70, 1.10)

ADJECTIVES = ("Silent", "Broken", "Golden", "Hidden", "Last", "Crimson", "Frozen", "Wild", "Lost", "Iron",
              "Secret", "Midnight", "Burning", "Endless", "Quiet", "Electric", "Savage", "Distant", "Velvet",
              "Hollow", "Shining", "Dark", "Paper", "Glass", "Northern", "Bitter", "Lucky", "Final", "Sacred",
              "Restless")
NOUNS = ("Harbor", "Empire", "River", "Garden", "Signal", "Kingdom", "Orbit", "Horizon", "Storm", "Mirror",
         "Frontier", "Station", "Legacy", "Shadow", "Summer", "Island", "Witness", "Protocol", "Voyage",
         "Desert", "Circuit", "Throne", "Current", "Echo", "Fortress", "Tide", "Planet", "Canyon", "Saint",
         "Engine")


@dataclass(frozen=True)
class SynthConfig:
    """The generator's parameters (documented in the module docstring)."""

    days: int = 182  # the research used the first half-year of its log
    catalogue: int = 300  # titles available from the start
    new_releases: int = 60  # titles released at seeded times during the log
    daily_views: float = 500.0  # expected views per day over all titles, before trends and buzz
    zipf_exponent: float = 0.9
    trend_sd: float = 0.5  # sd of the log-slope per 90 days
    release_boost: float = 6.0
    release_half_life_days: float = 6.0
    cycle_strength: float = 1.6  # 0: flat day; 1: HOURLY_PROFILE as is; > 1: stronger day/night contrast
    weekend_boost: float = 1.25
    buzz_sd: float = 0.35
    start: int = START  # unix seconds of the first hour (midnight UTC)


@dataclass(frozen=True)
class SyntheticLog:
    titles: list[str]
    timestamps: np.ndarray  # int64 unix seconds, sorted
    title_ids: np.ndarray  # int64 index into ``titles``, parallel to ``timestamps``
    config: SynthConfig
    seed: int

    def __len__(self) -> int:
        return int(self.timestamps.size)

    def rows(self) -> Iterator[tuple[int, str]]:
        titles = self.titles
        for stamp, title in zip(self.timestamps.tolist(), self.title_ids.tolist(), strict=True):
            yield stamp, titles[title]

    def view_log(self, interval_s: int = DEFAULT_INTERVAL_S) -> ViewLog:
        names = np.asarray(self.titles, dtype=object)[self.title_ids]
        return ViewLog.from_events(self.timestamps, names.tolist(), interval_s)

    def write_csv(self, path: Path) -> int:
        """The canonical ``timestamp,title`` CSV; returns the number of views."""
        return write_views_csv(path, self.rows())

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "views": len(self), "titles": len(self.titles), **asdict(self.config)}


def title_names(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct film titles ("The Silent Harbor", "Iron Orbit 2", ...)."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        adjective, noun, other = (str(rng.choice(ADJECTIVES)), str(rng.choice(NOUNS)), str(rng.choice(NOUNS)))
        form = int(rng.integers(4))
        name = (f"The {adjective} {noun}", f"{adjective} {noun}", f"{noun} of the {other}",
                f"{adjective} {noun} {int(rng.integers(2, 5))}")[form]
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def hourly_cycle(strength: float) -> np.ndarray:
    profile = np.asarray(HOURLY_PROFILE) ** strength
    result: np.ndarray = profile / profile.mean()
    return result


def rates(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Expected views per (hour, title): shape (days * 24, catalogue + new_releases)."""
    n = config.catalogue + config.new_releases
    hours = config.days * 24
    ranks = rng.permutation(n) + 1
    share = ranks.astype(np.float64) ** -config.zipf_exponent
    share /= share.sum()
    t_days = np.arange(hours) / 24.0
    slopes = rng.normal(0.0, config.trend_sd, n)
    trend = np.exp(np.outer(t_days / 90.0, slopes))
    release_day = np.zeros(n)
    release_day[config.catalogue:] = rng.uniform(0, config.days, config.new_releases)
    age = t_days[:, None] - release_day[None, :]
    boost = 1.0 + config.release_boost * 0.5 ** (np.maximum(age, 0.0) / config.release_half_life_days)
    boost[:, : config.catalogue] = 1.0
    released = age >= 0
    cycle = np.tile(hourly_cycle(config.cycle_strength), config.days)
    weekday = ((config.start // DAY_S + 3) + np.arange(config.days)) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    weekend = np.where(weekday >= 5, config.weekend_boost, 1.0).repeat(24)
    buzz = rng.lognormal(0.0, config.buzz_sd, (config.days, n)).repeat(24, axis=0)
    base = config.daily_views / 24.0 * share[None, :]
    result: np.ndarray = base * trend * boost * released * buzz * (cycle * weekend)[:, None]
    return result


def generate(seed: int, config: SynthConfig | None = None) -> SyntheticLog:
    """The seeded log: same seed and config, same views, titles and timestamps."""
    config = config or SynthConfig()
    if config.days <= 0 or config.catalogue <= 0 or config.new_releases < 0 or config.daily_views <= 0:
        raise ValueError("days, catalogue and daily_views must be positive, new_releases not negative")
    rng = np.random.default_rng(seed)
    titles = title_names(config.catalogue + config.new_releases, rng)
    counts = rng.poisson(rates(config, rng))
    hour_index, title_ids = np.nonzero(counts)
    repeats = counts[hour_index, title_ids]
    hour_of_view = np.repeat(hour_index, repeats)
    ids = np.repeat(title_ids, repeats).astype(np.int64)
    stamps = config.start + hour_of_view.astype(np.int64) * HOUR_S + rng.integers(0, HOUR_S, hour_of_view.size)
    order = np.argsort(stamps, kind="stable")
    return SyntheticLog(titles, stamps[order], ids[order], config, seed)

"""The network an edge checks intents against (``intent_topology``): sites and the links between them,
read from a small TOML file::

    [[site]]
    name = "Access 1"
    kind = "access"            # optional, free text
    aliases = ["A1"]           # optional: other names operators write

    [[link]]
    between = ["Access 1", "Metro-1"]
    capacity_mbps = 10000      # > 0; a link carries it in both directions
    latency_ms = 0.5           # optional, >= 0

Names match case- and space-insensitively (``access  1`` is ``Access 1``). A file that cannot be used
is a :class:`TopologyError` naming the file, the line of the entry where it can be found, and the entry.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netgpt.config import EdgeConfig
from netgpt.errors import StartupError

SITE_KEYS = {"name", "kind", "aliases"}
LINK_KEYS = {"between", "capacity_mbps", "latency_ms"}


class TopologyError(ValueError):
    """A topology file that cannot be used; the message names the file and the entry."""


def name_key(name: str) -> str:
    """How names are compared: case-folded, whitespace collapsed."""
    return " ".join(name.casefold().split())


@dataclass(frozen=True)
class Site:
    name: str
    kind: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Link:
    a: str  # site names as the file's [[site]] entries spell them
    b: str
    capacity_mbps: float
    latency_ms: float | None = None  # None: the file does not say


@dataclass(frozen=True)
class Topology:
    sites: tuple[Site, ...]
    links: tuple[Link, ...]
    source: str = ""  # the file it was read from, for messages
    _by_key: dict[str, Site] = field(init=False, repr=False, compare=False)
    _adjacent: dict[str, tuple[tuple[str, Link], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key = {name_key(n): site for site in self.sites for n in (site.name, *site.aliases)}
        adjacent: dict[str, list[tuple[str, Link]]] = {site.name: [] for site in self.sites}
        for link in self.links:
            adjacent.setdefault(link.a, []).append((link.b, link))
            adjacent.setdefault(link.b, []).append((link.a, link))
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_adjacent", {name: tuple(edges) for name, edges in adjacent.items()})

    def site(self, name: str) -> Site | None:
        """The site ``name`` (or one of its aliases) names, ignoring case and spacing; None if none."""
        return self._by_key.get(name_key(name))

    def names(self) -> list[str]:
        """Every name and alias a request may use."""
        return [n for site in self.sites for n in (site.name, *site.aliases)]

    def neighbours(self, site: str) -> tuple[tuple[str, Link], ...]:
        """(neighbour's name, the link to it) for each link of ``site`` (its canonical name)."""
        return self._adjacent.get(site, ())


def load_topology(path: Path) -> Topology:
    """The topology in the TOML file ``path``; :class:`TopologyError` when it cannot be read or used."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"topology file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"topology file {path}: not valid TOML: {exc}") from exc
    return parse_topology(data, str(path), text)


def parse_topology(data: Mapping[str, Any], source: str = "topology", text: str = "") -> Topology:
    """The topology of parsed TOML ``data``; ``text`` (the file's text) lets errors name lines."""
    unknown = sorted(set(data) - {"site", "link"})
    if unknown:
        raise TopologyError(f"{source}: unknown key(s) {', '.join(unknown)}; a topology has [[site]] and [[link]] "
                            "entries")
    sites_raw, links_raw = _entries(data, "site", source), _entries(data, "link", source)
    if not sites_raw:
        raise TopologyError(f"{source}: no [[site]] entries")
    site_lines, link_lines = _header_lines(text, "site", len(sites_raw)), _header_lines(text, "link", len(links_raw))
    sites: list[Site] = []
    seen: dict[str, str] = {}  # name key → the entry that claimed it
    for i, raw in enumerate(sites_raw):
        where = _where(source, "site", i, site_lines)
        site = _site(raw, where)
        where = f"{where} ({raw['name']!r})"
        for name in (site.name, *site.aliases):
            if name_key(name) in seen:
                raise TopologyError(f"{where}: the name {name!r} is already used by {seen[name_key(name)]}")
            seen[name_key(name)] = f"site {site.name!r}"
        sites.append(site)
    by_key = {name_key(n): s.name for s in sites for n in (s.name, *s.aliases)}
    links: list[Link] = []
    pairs: dict[frozenset[str], str] = {}
    for i, raw in enumerate(links_raw):
        where = _where(source, "link", i, link_lines)
        link = _link(raw, where, by_key)
        where = f"{where} ({raw['between'][0]} - {raw['between'][1]})"
        pair = frozenset((link.a, link.b))
        if pair in pairs:
            raise TopologyError(f"{where}: a second link between {link.a!r} and {link.b!r} ({pairs[pair]} is the "
                                "first); describe parallel links as one with their total capacity")
        pairs[pair] = f"link {i + 1}"
        links.append(link)
    return Topology(tuple(sites), tuple(links), source)


def intent_topology(config: EdgeConfig) -> Topology | None:
    """The edge's ``intent_topology`` (None when it is empty); a file that cannot be used is a
    :class:`StartupError` naming it; blocking."""
    if not config.intent_topology:
        return None
    try:
        return load_topology(Path(config.intent_topology))
    except TopologyError as exc:
        raise StartupError(f"intent_topology: {exc}") from exc


# --- one entry ------------------------------------------------------------------------------


def _entries(data: Mapping[str, Any], table: str, source: str) -> list[Mapping[str, Any]]:
    raw = data.get(table, [])
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise TopologyError(f"{source}: {table} must be a list of tables ([[{table}]] entries)")
    return raw


def _header_lines(text: str, table: str, count: int) -> list[int]:
    """The 1-based line of each ``[[table]]`` header; empty unless there is one per entry (e.g. inline tables)."""
    pattern = re.compile(rf"^[ \t]*\[\[[ \t]*{table}[ \t]*\]\]", re.MULTILINE)
    lines = [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]
    return lines if len(lines) == count else []


def _where(source: str, table: str, index: int, lines: list[int]) -> str:
    line = f", line {lines[index]}" if lines else ""
    return f"{source}{line}: {table} {index + 1}"


def _site(raw: Mapping[str, Any], where: str) -> Site:
    _no_unknown_keys(raw, SITE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name_key(name):
        raise TopologyError(f"{where}: name must be a non-empty string")
    where = f"{where} ({name!r})"
    kind = raw.get("kind", "")
    if not isinstance(kind, str):
        raise TopologyError(f"{where}: kind must be a string")
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and name_key(a) for a in aliases):
        raise TopologyError(f"{where}: aliases must be a list of non-empty strings")
    if len({name_key(a) for a in [name, *aliases]}) != len(aliases) + 1:
        raise TopologyError(f"{where}: an alias repeats the name or another alias")
    return Site(" ".join(name.split()), kind, tuple(" ".join(a.split()) for a in aliases))


def _link(raw: Mapping[str, Any], where: str, by_key: Mapping[str, str]) -> Link:
    _no_unknown_keys(raw, LINK_KEYS, where)
    between = raw.get("between")
    if not (isinstance(between, list) and len(between) == 2 and all(isinstance(n, str) for n in between)):
        raise TopologyError(f'{where}: between must name two sites, e.g. between = ["Access 1", "Metro-1"]')
    where = f"{where} ({between[0]} - {between[1]})"
    ends = []
    for name in between:
        if name_key(name) not in by_key:
            raise TopologyError(f"{where}: unknown site {name!r}; add a [[site]] entry for it")
        ends.append(by_key[name_key(name)])
    if ends[0] == ends[1]:
        raise TopologyError(f"{where}: a link must join two different sites")
    capacity = _number(raw, "capacity_mbps", where)
    if capacity is None:
        raise TopologyError(f"{where}: capacity_mbps is required (Mbit/s)")
    if capacity <= 0:
        raise TopologyError(f"{where}: capacity_mbps must be > 0, got {capacity:g}")
    latency = _number(raw, "latency_ms", where)
    if latency is not None and latency < 0:
        raise TopologyError(f"{where}: latency_ms must be >= 0, got {latency:g}")
    return Link(ends[0], ends[1], capacity, latency)


def _number(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TopologyError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _no_unknown_keys(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TopologyError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")

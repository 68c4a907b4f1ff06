"""Where each node of a deploy fetches from: the core plans, nodes fetch. gRPC-free.

The core answers a deploy with a :class:`FetchPlan` per target: peers that already hold the
blob (same region first), then earlier targets of the same deploy along an ``fanout``-ary
tree (its parent, the parent's siblings, the grandparents: they will hold it soon), then
the core's store (the origin). Only a *seed* (the first target, when no node holds the blob
yet) starts at the origin; the others wait for their peers and fall back to the origin only
when no peer can serve. So the core uploads the artifact about once per deploy, and a deploy
to N nodes takes about ``log_fanout(N)`` transfer times instead of N.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cmp.pieces import Pieces

FANOUT = 4  # children per node in the deploy tree: a node's default upload_streams
MAX_SOURCES = 8  # peers listed per node (the origin comes on top)


@dataclass(frozen=True)
class Peer:
    """A node as the planner sees it."""

    node_id: str
    address: str
    region: str = ""


@dataclass(frozen=True)
class Source:
    """One place to fetch from: a peer's BlobService, or the origin (the core's store)."""

    node_id: str = ""
    address: str = ""
    origin: bool = False

    @property
    def label(self) -> str:
        return "core" if self.origin else self.node_id or self.address


ORIGIN = Source(origin=True)


@dataclass(frozen=True)
class FetchPlan:
    sha256: str
    pieces: Pieces
    sources: tuple[Source, ...]
    seed: bool = False


@dataclass
class SourceTally:
    """What one source delivered to one transfer (deployment status shows it)."""

    source: Source
    bytes: int = 0
    dropped: bool = False
    error: str = ""


@dataclass
class DeployTree:
    """Plans for the targets of one deploy, in the order given."""

    holders: list[Peer]
    fanout: int = FANOUT
    max_sources: int = MAX_SOURCES
    seeds: int = 1
    _targets: list[Peer] = field(default_factory=list)

    def plan(self, target: Peer, sha256: str, pieces: Pieces) -> FetchPlan:
        index = len(self._targets)
        self._targets.append(target)
        if self.max_sources <= 0:
            return FetchPlan(sha256, pieces, (ORIGIN,), seed=True)
        holders = sorted((p for p in self.holders if p.node_id != target.node_id),
                         key=lambda p: p.region != target.region)
        upstream = [self._targets[j] for j in self._upstream(index)]
        upstream.sort(key=lambda p: p.region != target.region)  # stable: tree order within a region
        peers = list(dict.fromkeys([*holders, *upstream]))[:self.max_sources]
        seed = not self.holders and index < self.seeds
        return FetchPlan(sha256, pieces, (*(Source(p.node_id, p.address) for p in peers), ORIGIN), seed=seed)

    def _upstream(self, index: int) -> list[int]:
        """Parent, the parent's siblings, then grandparents up to the root, within ``max_sources``."""
        if index == 0:
            return []
        parent = (index - 1) // self.fanout
        first_sibling = ((parent - 1) // self.fanout) * self.fanout + 1 if parent else 0
        found = [parent, *(j for j in range(first_sibling, min(first_sibling + self.fanout, index)) if j != parent)]
        ancestor = parent
        while ancestor:
            ancestor = (ancestor - 1) // self.fanout
            found.append(ancestor)
        return list(dict.fromkeys(found))[:self.max_sources]

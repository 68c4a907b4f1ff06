"""What the edge may do with a request's personal data: desensitise it, and where it may be processed.

Two sources, combined so that neither can loosen the other's restrictions:

- the edge's own settings (``allowed_cloud_regions``): a legal floor of the site;
- the policy the core pushes (``RoutingPolicy.residency`` rules per cell,
  ``RoutingPolicy.verbatim_workflows``, ``RoutingPolicy.distill_samples``), replaced whole by each push.

A request from a cell may be forwarded only to a cloud whose region every applicable
restriction allows. Every request is desensitised unless the pushed policy names its
workflow as verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from netgpt.v1 import control_plane_pb2 as cp_pb2


@dataclass(frozen=True)
class ResidencyRule:
    cells: frozenset[str]  # empty: every cell
    regions: frozenset[str]  # cloud regions allowed; empty: none

    def covers(self, cell_id: str) -> bool:
        return not self.cells or cell_id in self.cells


@dataclass(frozen=True)
class DataPolicy:
    edge_regions: frozenset[str] | None = None  # the edge's own setting; None: any region
    residency: tuple[ResidencyRule, ...] = ()  # from the core
    verbatim_workflows: frozenset[str] = field(default_factory=frozenset)  # from the core
    distill_samples: bool = True  # from the core: False stops the edge keeping distillation samples

    @classmethod
    def from_settings(cls, allowed_cloud_regions: list[str]) -> DataPolicy:
        return cls(edge_regions=frozenset(allowed_cloud_regions) if allowed_cloud_regions else None)

    def desensitises(self, workflow: str) -> bool:
        return workflow not in self.verbatim_workflows

    def allowed_regions(self, cell_id: str) -> frozenset[str] | None:
        """Cloud regions a request from ``cell_id`` may be forwarded to; None: any."""
        allowed = self.edge_regions
        for rule in self.residency:
            if rule.covers(cell_id):
                allowed = rule.regions if allowed is None else allowed & rule.regions
        return allowed

    def updated(self, message: cp_pb2.RoutingPolicy) -> DataPolicy:
        """This policy with the core's latest residency rules, verbatim workflows and distillation switch (the
        edge's own kept)."""
        rules = tuple(ResidencyRule(frozenset(r.cell_ids), frozenset(r.allowed_cloud_regions))
                      for r in message.residency)
        distill = not message.HasField("distill_samples") or message.distill_samples
        return replace(self, residency=rules, verbatim_workflows=frozenset(message.verbatim_workflows),
                       distill_samples=distill)


def residency_detail(cell_id: str, allowed: frozenset[str], clouds: dict[str, str]) -> str:
    """Why no cloud may take a request from ``cell_id``: ``clouds`` maps usable cloud ids to their regions."""
    regions = ", ".join(sorted(allowed)) or "none"
    found = "; ".join(f"{node} is in {region or 'no region'}" for node, region in sorted(clouds.items()))
    return f"data residency: cell {cell_id or 'unknown'} may forward only to regions [{regions}]; {found}"

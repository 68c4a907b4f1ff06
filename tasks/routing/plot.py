"""The frontier as a PNG: answer quality against the share of requests ended at the edge (matplotlib, the
``eval`` extra: ``pip install -e '.[eval]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tasks.routing.frontier import GOAL_EDGE_SHARE, TARGET, Frontier, Point

if TYPE_CHECKING:
    from matplotlib.axes import Axes

INSTALL = "the frontier plot needs matplotlib: .venv/bin/pip install -e '.[eval]'"


def draw(frontier: Frontier, out: Path, title: str = "") -> None:
    """ImportError (saying how to install it) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(INSTALL) from e
    figure, axes = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    _curve(axes, frontier.learned, "learned router (threshold sweep)", "C0")
    _curve(axes, frontier.rules_confidence, "rules: log-prob threshold sweep", "C1")
    edge, cloud, _, oracle = frontier.baselines
    axes.plot([edge.edge_share, cloud.edge_share], [edge.quality, cloud.quality], ":", color="grey",
              label="random router (expected)")
    for point, marker, colour in ((edge, "s", "C3"), (cloud, "D", "C2"), (oracle, "*", "C4"),
                                  (frontier.chosen, "o", "C0"), (frontier.rules_chosen, "o", "C1")):
        axes.scatter([point.edge_share], [point.quality], marker=marker, color=colour, s=60, zorder=3,
                     label=f"{point.router}: {point.edge_share:.0%} edge, {point.quality:.1%}")
    goal_quality = TARGET * cloud.quality
    axes.axhline(goal_quality, color="grey", linewidth=0.8, linestyle="--")
    axes.axvline(GOAL_EDGE_SHARE, color="grey", linewidth=0.8, linestyle="--")
    axes.fill_between([GOAL_EDGE_SHARE, 1.0], goal_quality, 1.02, color="green", alpha=0.07,
                      label=f"goal: >= {GOAL_EDGE_SHARE:.0%} edge at >= {TARGET:.0%} of always-cloud")
    axes.set_xlim(-0.02, 1.02)
    axes.set_xlabel("share of requests ended at the edge")
    axes.set_ylabel("answer quality (share correct, held-out)")
    axes.set_title(title or f"routing frontier, held-out (n={cloud.n}, label: {frontier.label})", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def _curve(axes: Axes, points: list[Point], label: str, colour: str) -> None:
    ordered = sorted(points, key=lambda p: p.edge_share)
    axes.plot([p.edge_share for p in ordered], [p.quality for p in ordered], "-", marker=".", markersize=3,
              color=colour, label=label)

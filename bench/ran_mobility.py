"""UE mobility: AI sessions re-anchored across edges on handovers, measured with ``netgpt ran-sim``.

    python -m bench.ran_mobility [--ues 6] [--duration 20] [--dwell 1.5] [--pairs 20]

One process: a core, a cloud, edge-1 (cells harbour, campus) and edge-2 (cell station) on a
throw-away CA, starter models. Two parts, in the same run:

1. ``ran-sim`` replays a seeded random mobility trace (each UE handed over every ``--dwell``
   trace seconds on average) while every UE sends requests back to back; reports requests ok /
   failed, streams in flight across a handover, the core's re-anchoring time, and the time from
   the HandoverUe call to the first reply from the new edge.
2. The handover path one UE sees, against the baseline without re-anchoring, alternated
   ``--pairs`` times: re-anchor (HandoverUe + GetSession + a request at the new edge) vs
   re-establish (ReleaseSession + EstablishSession in the new cell + a request at the new edge),
   each up to the first reply of that request. Reports medians and their ratio.

Writes bench/reports/ran_mobility.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from appkit.all_in_one import Cluster, load_models, start_all_in_one
from appkit.ran_sim import SimSettings, TraceEvent, run_trace
from edge_node.daemon import load_knowledge, start_edge
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.logs import configure_logging
from netgpt.tls import LocalPki, Transport
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import ran_pb2, ran_pb2_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from node.runtime import NodeHandle

REPORT = Path(__file__).parent / "reports" / "ran_mobility.json"
EDGE_1_CELLS = ["cell-harbour-1", "cell-campus-2"]
EDGE_2_CELLS = ["cell-station-3"]
CELLS = EDGE_1_CELLS + EDGE_2_CELLS


def mobility_trace(ues: int, duration_s: float, dwell_s: float, seed: int = 7) -> list[TraceEvent]:
    """Each UE attaches in a random cell, moves to another cell after an exponential dwell, detaches at the end."""
    rng = random.Random(seed)
    events = []
    for n in range(ues):
        ue_id, cell, now = f"ue-{n + 1}", rng.choice(CELLS), rng.uniform(0, 0.2)
        events.append(TraceEvent(now, ue_id, cell, "attach", "1-000001", rng.choice([7, 8, 9, 80])))
        while True:
            now += rng.expovariate(1 / dwell_s)
            if now >= duration_s:
                break
            cell = rng.choice([c for c in CELLS if c != cell])
            events.append(TraceEvent(round(now, 3), ue_id, cell, "handover"))
        events.append(TraceEvent(duration_s, ue_id, "", "detach"))
    return sorted(events, key=lambda e: e.time_s)


async def _start(pki: LocalPki) -> tuple[Cluster, NodeHandle]:
    gpt2, llama = load_models("starter", "starter")
    store = tempfile.mkdtemp(prefix="netgpt-bench-ran-")
    cluster = await start_all_in_one(
        gpt2, llama, CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5, store_dir=store),
        CloudConfig(listen="127.0.0.1:0"),
        EdgeConfig(listen="127.0.0.1:0", cells=EDGE_1_CELLS, profiles_db=":memory:", answer_cache_ttl_s=0,
                   intent_tokens=0), pki=pki)
    deploy_dir = tempfile.mkdtemp(prefix="netgpt-bench-edge-2-")
    cluster.scratch += [Path(store), Path(deploy_dir)]
    config = EdgeConfig(**pki.settings("edge", "edge-2"), node_id="edge-2", listen="127.0.0.1:0",
                        core=cluster.core.address, cells=EDGE_2_CELLS, profiles_db=":memory:", answer_cache_ttl_s=0,
                        intent_tokens=0, deploy_dir=deploy_dir)
    edge_2 = await start_edge(config, gpt2, load_knowledge(config))  # type: ignore[arg-type]
    while "edge-2" not in {s.info.node_id for s in cluster.core.registry.statuses()}:
        await asyncio.sleep(0.05)
    return cluster, edge_2


def _request(session_id: str, max_new_tokens: int) -> up_pb2.GenerateRequest:
    return up_pb2.GenerateRequest(session_id=session_id, kind=up_pb2.PROMPT_KIND_CONCISE,
                                  prompt="where can I get a coffee near here?", route=up_pb2.ROUTE_PREFERENCE_EDGE,
                                  params=up_pb2.GenerationParams(max_new_tokens=max_new_tokens))


async def _first_reply(address: str, ue: Transport, session_id: str, max_new_tokens: int) -> float:
    """Send a request; returns when its first reply arrived (perf_counter); drains the rest."""
    first = 0.0
    async with open_channel(address, ue) as channel:
        async for _ in up_grpc.UserPlaneServiceStub(channel).Generate(_request(session_id, max_new_tokens),
                                                                      timeout=120):
            first = first or time.perf_counter()
    return first


async def _paired(core: str, pki: LocalPki, pairs: int, max_new_tokens: int) -> dict[str, object]:
    """Re-anchor vs re-establish, alternated, for one UE moving between edge-1 and edge-2."""
    ran_id, ue_id = pki.identity("ran", "bench-ran"), "ue-paired"
    ue = pki.identity("ue", ue_id)
    reanchor_ms, reestablish_ms = [], []
    async with open_channel(core, ran_id) as ran_ch, open_channel(core, ue) as ue_ch:
        ran, cp = ran_pb2_grpc.RanServiceStub(ran_ch), cp_grpc.ControlPlaneServiceStub(ue_ch)
        cell = "cell-harbour-1"
        await ran.AttachUe(ran_pb2.AttachUeRequest(ue_id=ue_id, cell_id=cell, five_qi=9), timeout=10)
        session = (await cp.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id=ue_id, cell_id=cell),
                                             timeout=10)).session
        await _first_reply(session.serving_edge.address, ue, session.session_id, max_new_tokens)  # warm both paths
        for _ in range(pairs):
            for mode in ("reanchor", "reestablish"):
                cell = "cell-station-3" if cell == "cell-harbour-1" else "cell-harbour-1"
                began = time.perf_counter()
                if mode == "reanchor":
                    await ran.HandoverUe(ran_pb2.HandoverUeRequest(ue_id=ue_id, target_cell_id=cell), timeout=10)
                    session = (await cp.GetSession(cp_pb2.GetSessionRequest(session_id=session.session_id),
                                                   timeout=10)).session
                else:  # no RAN API: the UE notices the new cell and sets its session up again
                    await cp.ReleaseSession(cp_pb2.ReleaseSessionRequest(session_id=session.session_id), timeout=10)
                    session = (await cp.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id=ue_id, cell_id=cell),
                                                         timeout=10)).session
                first = await _first_reply(session.serving_edge.address, ue, session.session_id, max_new_tokens)
                (reanchor_ms if mode == "reanchor" else reestablish_ms).append((first - began) * 1000)
        await ran.DetachUe(ran_pb2.DetachUeRequest(ue_id=ue_id), timeout=10)
    med_a, med_e = statistics.median(reanchor_ms), statistics.median(reestablish_ms)
    return {"pairs": pairs, "reanchor_to_first_reply_ms_p50": round(med_a, 1),
            "reestablish_to_first_reply_ms_p50": round(med_e, 1),
            "ratio_reanchor_over_reestablish": round(med_a / med_e, 3),
            "note": "re-establishing also costs the UE a new session id and AI flow id; re-anchoring keeps both"}


async def bench(ues: int, duration_s: float, dwell_s: float, pairs: int, max_new_tokens: int) -> dict[str, object]:
    pki_folder = Path(tempfile.mkdtemp(prefix="netgpt-bench-ran-pki-"))
    pki = LocalPki(pki_folder)
    cluster, edge_2 = await _start(pki)
    cluster.scratch.append(pki_folder)
    try:
        trace = mobility_trace(ues, duration_s, dwell_s)
        settings = SimSettings(core=cluster.core.address, max_new_tokens=max_new_tokens,
                               route=up_pb2.ROUTE_PREFERENCE_EDGE, ran_transport=pki.identity("ran", "bench-ran"),
                               ue_transport=lambda ue_id: pki.identity("ue", ue_id))
        began = time.perf_counter()
        sim = await run_trace(trace, settings)
        sim_s = time.perf_counter() - began
        paired = await _paired(cluster.core.address, pki, pairs, max_new_tokens)
    finally:
        await edge_2.stop(1.0)
        await cluster.stop()
    return {"bench": "ran_mobility", "machine": platform.machine(), "python": platform.python_version(),
            "setup": {"ues": ues, "trace_s": duration_s, "mean_dwell_s": dwell_s, "max_new_tokens": max_new_tokens,
                      "edges": {"edge-1": EDGE_1_CELLS, "edge-2": EDGE_2_CELLS}, "wall_s": round(sim_s, 1)},
            "ran_sim": sim.summary(), "handover_path": paired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ues", type=int, default=6)
    parser.add_argument("--duration", type=float, default=20.0, help="trace seconds")
    parser.add_argument("--dwell", type=float, default=1.5, help="mean seconds a UE stays in a cell")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    configure_logging(json=True, level="warning")
    report = asyncio.run(bench(args.ues, args.duration, args.dwell, args.pairs, args.max_new_tokens))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

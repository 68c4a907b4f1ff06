"""The hop-by-hop printout of one answer: what the core set up, what the edge and the cloud streamed, the summary.

:func:`appkit.client.ask` reports to it; ``netgpt ask`` and ``netgpt demo`` print with it.
"""

from __future__ import annotations

import sys
from typing import TextIO

from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.words import enum_word


class Printer:
    """Writes what happened at each hop; ``out=None`` prints nothing."""

    def __init__(self, out: TextIO | None = sys.stdout) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def session(self, s: cp_pb2.AiSession) -> None:
        cloud = s.serving_cloud.node_id or "none"
        self.line(f"[core]  session {s.session_id} flow {s.ai_flow_id}: UE {s.ue_id} in {s.cell_id} "
                  f"-> edge {s.serving_edge.node_id} ({s.serving_edge.address}), cloud {cloud}")

    def event(self, event: up_pb2.GenerateResponse, state: dict[str, str]) -> None:
        kind = event.WhichOneof("event")
        if kind == "comprehensive_prompt":
            cp = event.comprehensive_prompt
            self.line(f"[edge]  comprehensive prompt ({cp.prompt_tokens} tokens, "
                      f"{len(cp.knowledge_used)} local facts):")
            for text_line in cp.text.splitlines():
                self.line(f"          {text_line}")
        elif kind == "tokens":
            source = enum_word(common_pb2.NodeRole, event.tokens.source)
            if state.get("source") != source:
                state["source"] = source
                if self.out is not None:
                    self.out.write(f"[{source}] answer: ")
            if self.out is not None:
                self.out.write(event.tokens.text)
                self.out.flush()
        elif kind == "fallback":
            self.line(f"\n[edge]  cloud failed ({event.fallback.reason}); "
                      f"discarding {event.fallback.discarded_tokens} tokens, answering at the edge")
            state.pop("source", None)
        elif kind == "summary":
            self.summary(event.summary)

    def summary(self, s: up_pb2.GenerationSummary) -> None:
        where = enum_word(common_pb2.NodeRole, s.terminated_at)
        lat = s.latency
        self.line("")
        self.line(f"[done]  terminated at {where}: {up_pb2.RouteReason.Name(s.reason)} ({s.reason_detail})"
                  f"{' [fallback]' if s.fallback else ''}")
        self.line(f"        tokens: prompt {s.prompt_tokens}, completion {s.completion_tokens} "
                  f"({up_pb2.FinishReason.Name(s.finish_reason)}); bytes edge->cloud {s.bytes_edge_to_cloud}")
        self.line(f"        latency ms: personalise {lat.personalise_ms:.1f}, edge {lat.edge_generate_ms:.1f}, "
                  f"cloud {lat.cloud_ms:.1f}, first token {lat.time_to_first_token_ms:.1f}, total {lat.total_ms:.1f}")
        if s.steps:  # the edge's workflow steps, as they ran
            ran = ", ".join(f"{t.step_id} {t.started_ms:.1f}-{t.finished_ms:.1f}" for t in s.steps if not t.skipped)
            skipped = ", ".join(t.step_id for t in s.steps if t.skipped)
            self.line(f"        steps ms: {ran}" + (f" (skipped: {skipped})" if skipped else ""))
        models = [f"edge {s.edge_model.name}@{s.edge_model.version}"]
        if s.cloud_model.name:
            models.append(f"cloud {s.cloud_model.name}@{s.cloud_model.version}")
        self.line(f"        models: {', '.join(models)}")

"""``netgpt intent`` and ``netgpt popularity``: the edge's network-management models over gRPC.

Both call an edge's NetworkManagementService: the one named with ``--edge``, else the first
serving edge the core lists (which serves the model name the command needs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from cli.common import DEFAULT_TIMEOUT_S, Subparsers, add_core_flag, quiet, sync
from cli.nodes import list_nodes
from cli.view_logs import add_view_log_commands
from edge_node.netmgmt.intent_documents import PROTO_FORMATS, render_json
from netgpt.channels import open_channel
from netgpt.errors import StartupError
from netgpt.node_status import models_served
from netgpt.v1 import common_pb2
from netgpt.v1 import network_management_pb2 as nm_pb2
from netgpt.v1 import network_management_pb2_grpc as nm_grpc
from netgpt.words import enum_word

DOCUMENT_FORMATS = {name: value for value, name in PROTO_FORMATS.items()}  # --format word → IntentDocumentFormat


def _edge_flags(parser: argparse.ArgumentParser) -> None:
    add_core_flag(parser)
    parser.add_argument("--edge", default="", metavar="HOST:PORT",
                        help="the edge to ask (default: the first serving edge the core lists)")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def add_commands(sub: Subparsers) -> None:
    intent = sub.add_parser("intent", help="read an operator's request as a structured network intent")
    intent.add_argument("text", help='e.g. "build a 10 Gbit/s connection from Access 1 to Cloud 2 with protection"')
    _edge_flags(intent)
    intent.add_argument("--format", choices=("proto", *DOCUMENT_FORMATS), default="proto",
                        help="proto: the structured reading (default; --json for JSON); 3gpp: a 3GPP TS 28.312 "
                             "Intent; tmf921: a TM Forum TMF921 Intent resource (JSON on stdout; a reading that "
                             "needs a clarification prints it on stderr and exits 3)")
    intent.set_defaults(run=quiet(sync(_intent)))

    popularity = sub.add_parser("popularity", help="predict which titles appear in an interval (edge caching)")
    actions = popularity.add_subparsers(dest="action", required=True)
    predict = actions.add_parser("predict", help="rank titles by predicted probability of appearing")
    _edge_flags(predict)
    predict.add_argument("--interval", type=int, default=-1,
                         help="the interval to predict (default: the one after the log's last)")
    predict.add_argument("--log", type=Path, default=None,
                         help="a view log CSV (timestamp,title) read here and sent as the history window; "
                              "default: the edge's own popularity_log")
    predict.add_argument("--interval-s", type=int, default=21600, help="interval length of --log (default: 6 h)")
    predict.add_argument("--top-k", type=int, default=10, help="titles to print (0: all)")
    predict.set_defaults(run=quiet(sync(_predict)))
    add_view_log_commands(actions)


async def edge_address(args: argparse.Namespace, model_name: str) -> str:
    if args.edge:
        return str(args.edge)
    for status in await list_nodes(args.core, "edge"):
        if status.health == common_pb2.NODE_HEALTH_SERVING and any(m.name == model_name
                                                                    for m in models_served(status)):
            return status.info.address
    raise StartupError(f"no serving edge with a {model_name} model is registered at {args.core}; pass --edge")


async def _call(address: str, method: str, request: object) -> object:
    async with open_channel(address) as channel:
        stub = nm_grpc.NetworkManagementServiceStub(channel)
        return await getattr(stub, method)(request, timeout=DEFAULT_TIMEOUT_S)


def _shown(field: object, value: object) -> str:
    enum = getattr(field, "enum_type", None)
    if enum is not None:
        return enum_word(getattr(nm_pb2, enum.name), int(value))  # type: ignore[call-overload]
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_reading(reply: nm_pb2.InferIntentResponse) -> str:
    rows = [f"  {field.name:<15} {_shown(field, value):<28} confidence {reply.confidence.get(field.name, 0.0):.2f}"
            for field, value in reply.intent.ListFields()]
    lines = [f"intent (model {reply.model_version}):", *(rows or ["  (nothing read)"])]
    if reply.needs_clarification:
        lines.append(f"needs clarification: {reply.clarification}")
        if reply.missing_fields:
            lines.append(f"  missing: {', '.join(reply.missing_fields)}")
        if reply.ambiguous_fields:
            lines.append(f"  ambiguous: {', '.join(reply.ambiguous_fields)}")
    return "\n".join(lines)


async def _intent(args: argparse.Namespace) -> int:
    address = await edge_address(args, "gpt2-intent")
    request = nm_pb2.InferIntentRequest(text=args.text, document_format=DOCUMENT_FORMATS.get(
        args.format, nm_pb2.INTENT_DOCUMENT_FORMAT_UNSPECIFIED))
    reply = await _call(address, "InferIntent", request)
    assert isinstance(reply, nm_pb2.InferIntentResponse)
    if args.format == "proto":
        print(json.dumps(MessageToDict(reply, preserving_proto_field_name=True), indent=2) if args.json
              else format_reading(reply))
    elif reply.needs_clarification:  # no document: the question goes where a script's reader sees it
        print(format_reading(reply), file=sys.stderr)
    else:  # an edge from before documents leaves reply.document empty: render the same document here
        print(reply.document or render_json(reply.intent, args.format))
    return 0 if not reply.needs_clarification else 3


def window_request(log: Path, interval: int, interval_s: int, top_k: int) -> nm_pb2.PredictPopularityRequest:
    from edge_node.netmgmt.popularity import DEFAULT_LAGS, ViewLog

    views = ViewLog.from_csv(log, interval_s)
    target = views.num_intervals if interval < 0 else interval
    first, history = views.window(target, DEFAULT_LAGS)
    window = nm_pb2.HistoryWindow(first_interval=first, titles=[nm_pb2.TitleHistory(title=t, views=v)
                                                                for t, v in history.items()])
    return nm_pb2.PredictPopularityRequest(history=window, top_k=top_k)


def format_ranking(reply: nm_pb2.PredictPopularityResponse) -> str:
    lines = [f"interval {reply.interval} (model {reply.model_version}):"]
    lines += [f"  {i:>3}. {t.title:<40} p={t.probability:.3f}{'  appears' if t.predicted_appear else ''}"
              for i, t in enumerate(reply.titles, 1)]
    return "\n".join(lines)


async def _predict(args: argparse.Namespace) -> int:
    if args.log is not None:
        request = window_request(args.log, args.interval, args.interval_s, args.top_k)
    elif args.interval < 0:
        raise StartupError("pass --interval N (of the edge's view log) or --log FILE")
    else:
        request = nm_pb2.PredictPopularityRequest(interval=args.interval, top_k=args.top_k)
    reply = await _call(await edge_address(args, "gpt2-popularity"), "PredictPopularity", request)
    assert isinstance(reply, nm_pb2.PredictPopularityResponse)
    print(json.dumps(MessageToDict(reply, preserving_proto_field_name=True), indent=2) if args.json
          else format_ranking(reply))
    return 0

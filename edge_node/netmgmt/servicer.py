"""NetworkManagementService on the edge: popularity prediction and intent inference, each a thin
gRPC layer over its task model (:mod:`edge_node.netmgmt.popularity`,
:mod:`edge_node.netmgmt.intent_reader`).

The forward passes run on the node's decode slots (the generation runner), so network-management
calls and user generations share one admission control and one thread budget.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import structlog

from edge_node.netmgmt.inputs import masked_text, masked_titles
from edge_node.netmgmt.intent_clarify import Reading
from edge_node.netmgmt.intent_documents import format_of, render_json
from edge_node.netmgmt.intent_line import Intent
from edge_node.netmgmt.intent_reader import IntentReader
from edge_node.netmgmt.intent_request import validate_text
from edge_node.netmgmt.popularity import DEFAULT_LAGS, PopularityPredictor, ViewLog
from edge_node.netmgmt.task_models import SPECS
from edge_node.netmgmt.topology import Topology
from edge_node.netmgmt.topology_check import check_reading
from netgpt.errors import FailedPrecondition, InvalidArgument, Unavailable
from netgpt.model_slot import ModelSlot, Served
from netgpt.v1 import network_management_pb2 as nm_pb2
from netgpt.v1 import network_management_pb2_grpc as nm_grpc
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)

ACTIONS = {"create": nm_pb2.INTENT_ACTION_CREATE, "modify": nm_pb2.INTENT_ACTION_MODIFY,
           "delete": nm_pb2.INTENT_ACTION_DELETE}
SLICES = {"embb": nm_pb2.NETWORK_SLICE_EMBB, "urllc": nm_pb2.NETWORK_SLICE_URLLC,
          "miot": nm_pb2.NETWORK_SLICE_MIOT}


def intent_to_proto(intent: Intent) -> nm_pb2.NetworkIntent:
    return nm_pb2.NetworkIntent(
        action=ACTIONS.get(intent.action, nm_pb2.INTENT_ACTION_UNSPECIFIED), source=intent.source,
        destination=intent.destination, bandwidth_mbps=intent.bandwidth_mbps, latency_ms=intent.latency_ms,
        protection=intent.protection, slice=SLICES.get(intent.slice, nm_pb2.NETWORK_SLICE_UNSPECIFIED),
        five_qi=intent.five_qi, time_window=intent.time_window)


def reading_to_proto(reading: Reading, version: str, document_format: str = "") -> nm_pb2.InferIntentResponse:
    """The reply; with ``document_format`` (``3gpp`` | ``tmf921``) also the intent as that document, unless
    the reading needs a clarification (that is answered with the question, never a document)."""
    reply = nm_pb2.InferIntentResponse(
        intent=intent_to_proto(reading.intent), confidence=reading.confidence,
        needs_clarification=reading.needs_clarification, missing_fields=reading.missing_fields,
        ambiguous_fields=reading.ambiguous_fields, clarification=reading.clarification, model_version=version)
    if document_format and not reply.needs_clarification:
        reply.document = render_json(reply.intent, document_format)
    return reply


def window_from_proto(window: nm_pb2.HistoryWindow) -> dict[str, list[int]]:
    """Titles → views; the predictor checks the window's shape (ragged, empty, too long)."""
    history: dict[str, list[int]] = {}
    for item in window.titles:
        if item.title in history:
            raise InvalidArgument(f"history names title {item.title!r} twice")
        history[item.title] = list(item.views)
    return history


class NetworkManagementServicer(nm_grpc.NetworkManagementServiceServicer):
    def __init__(self, slots: Mapping[str, ModelSlot], runner: GenerationRunner,
                 view_log: ViewLog | None = None, topology: Topology | None = None) -> None:
        """``topology``: the network InferIntent checks intents against (None: no check)."""
        self.slots = slots
        self.runner = runner
        self.view_log = view_log
        self.topology = topology
        self._readers: dict[str, tuple[Served, object]] = {}  # per task: the reader of the served model

    def _reader(self, task: str) -> tuple[Served, object]:
        """The task's served model and its reader, built once per model version (a hot swap builds anew)."""
        slot = self.slots.get(task)
        if slot is None:
            raise Unavailable(f"this edge serves no {task} model (its {task}_model setting is none)")
        cached = self._readers.get(task)
        if cached is None or cached[0] is not slot.current:
            cached = self._readers[task] = (slot.current, SPECS[task].reader(slot.current.model))
        return cached

    async def PredictPopularity(self, request: nm_pb2.PredictPopularityRequest,
                                context: grpc.aio.ServicerContext) -> nm_pb2.PredictPopularityResponse:
        served, predictor = self._reader("popularity")
        assert isinstance(predictor, PopularityPredictor)
        source = request.WhichOneof("source")
        if source == "history":
            first, history = request.history.first_interval, window_from_proto(request.history)
        elif source == "interval":
            if self.view_log is None:
                raise FailedPrecondition("this edge has no view log (popularity_log) to read interval "
                                         f"{request.interval} from; send the history window instead")
            first, history = self.view_log.window(request.interval, DEFAULT_LAGS)
        else:
            raise InvalidArgument("set history (a window of views per title) or interval (of the edge's view log)")
        masked = masked_titles(history)
        ranked = await self.runner.call(lambda: predictor.rank(history, first, request.top_k, masked.shown))
        target = first + len(next(iter(history.values())))
        log.info("popularity.predicted", interval=target, titles=len(history), model=served.ref.version,
                 top=masked.shown[ranked[0][0]] if ranked else "", desensitised=masked.total)
        return nm_pb2.PredictPopularityResponse(
            interval=target, model_version=served.ref.version,
            titles=[nm_pb2.TitleScore(title=title, probability=p, predicted_appear=p >= 0.5) for title, p in ranked])

    async def InferIntent(self, request: nm_pb2.InferIntentRequest,
                          context: grpc.aio.ServicerContext) -> nm_pb2.InferIntentResponse:
        document_format = format_of(request.document_format)  # a bad value fails before the model runs
        served, reader = self._reader("intent")
        assert isinstance(reader, IntentReader)
        masked = masked_text(validate_text(request.text))  # too long or empty: told before masking
        reading = await self.runner.call(lambda: reader.read(masked.text))
        if self.topology is not None:  # before the document: an intent the network cannot take is a question
            reading = check_reading(reading, self.topology)
        log.info("intent.inferred", action=reading.intent.action, fields=sorted(reading.confidence),
                 desensitised=masked.describe(),
                 needs_clarification=reading.needs_clarification, missing=reading.missing_fields,
                 ambiguous=reading.ambiguous_fields, model=served.ref.version, document=document_format)
        return reading_to_proto(reading, served.ref.version, document_format)

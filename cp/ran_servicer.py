"""RanService: thin gRPC layer over the core's RAN view (:mod:`cp.ran`) and its UE tokens
(:mod:`cp.ue_tokens`), with its proto conversions."""

from __future__ import annotations

import grpc

from cp.ran import CellLoadReport, CellView, RanView, Reanchored, UeState
from cp.ue_tokens import UeTokenAuthority
from netgpt.ue_tokens import IssuedToken
from netgpt.v1 import ran_pb2, ran_pb2_grpc


def _timestamp_ns(unix_s: float) -> int:
    return int(unix_s * 1e9)


def encode_ue(ue: UeState) -> ran_pb2.UeContext:
    message = ran_pb2.UeContext(ue_id=ue.ue_id, cell_id=ue.cell_id, slice_id=ue.slice_id, five_qi=ue.five_qi,
                                qos=ue.qos)
    message.updated_at.FromNanoseconds(_timestamp_ns(ue.updated_at))
    return message


def encode_reanchored(moved: list[Reanchored]) -> list[ran_pb2.ReanchoredSession]:
    return [ran_pb2.ReanchoredSession(session_id=m.session_id, from_cell_id=m.from_cell_id, to_cell_id=m.to_cell_id,
                                      from_edge_id=m.from_edge_id, to_edge_id=m.to_edge_id) for m in moved]


def encode_cell(cell: CellView) -> ran_pb2.CellStatus:
    message = ran_pb2.CellStatus(cell_id=cell.cell_id, attached_ues=cell.attached_ues, edge_ids=cell.edge_ids)
    if cell.load is not None:
        message.load.CopyFrom(ran_pb2.CellLoad(cell_id=cell.cell_id, prb_utilization=cell.load.prb_utilization,
                                               connected_ues=cell.load.connected_ues))
        message.load_reported_at.FromNanoseconds(_timestamp_ns(cell.load.reported_at))
    return message


def encode_token(issued: IssuedToken) -> ran_pb2.UeToken:
    message = ran_pb2.UeToken(token=issued.token, token_id=issued.claims.token_id)
    message.expires_at.FromNanoseconds(_timestamp_ns(issued.claims.expires_at))
    return message


def decode_loads(request: ran_pb2.ReportCellLoadRequest) -> list[CellLoadReport]:
    return [CellLoadReport(c.cell_id, c.prb_utilization, c.connected_ues) for c in request.cells]


class RanServicer(ran_pb2_grpc.RanServiceServicer):
    """``tokens``: the UE tokens attach and handover hand out and detach revokes (None: none are issued)."""

    def __init__(self, ran: RanView, tokens: UeTokenAuthority | None = None) -> None:
        self.ran = ran
        self.tokens = tokens

    def _token(self, ue: UeState) -> ran_pb2.UeToken | None:
        return None if self.tokens is None else encode_token(self.tokens.issue(ue.ue_id, ue.cell_id, ue.slice_id))

    async def AttachUe(self, request: ran_pb2.AttachUeRequest,
                       context: grpc.aio.ServicerContext) -> ran_pb2.AttachUeResponse:
        done = self.ran.attach(request.ue_id, request.cell_id, request.slice_id, request.five_qi)
        return ran_pb2.AttachUeResponse(ue=encode_ue(done.ue), reanchored=encode_reanchored(done.reanchored),
                                        token=self._token(done.ue))

    async def HandoverUe(self, request: ran_pb2.HandoverUeRequest,
                         context: grpc.aio.ServicerContext) -> ran_pb2.HandoverUeResponse:
        done = self.ran.handover(request.ue_id, request.target_cell_id, request.source_cell_id)
        return ran_pb2.HandoverUeResponse(ue=encode_ue(done.ue), reanchored=encode_reanchored(done.reanchored),
                                          reanchor_ms=done.reanchor_ms, token=self._token(done.ue))

    async def DetachUe(self, request: ran_pb2.DetachUeRequest,
                       context: grpc.aio.ServicerContext) -> ran_pb2.DetachUeResponse:
        released = self.ran.detach(request.ue_id, request.keep_sessions)
        if self.tokens is not None:
            self.tokens.revoke(request.ue_id)
        return ran_pb2.DetachUeResponse(released_session_ids=released)

    async def GetUe(self, request: ran_pb2.GetUeRequest,
                    context: grpc.aio.ServicerContext) -> ran_pb2.GetUeResponse:
        return ran_pb2.GetUeResponse(ue=encode_ue(self.ran.ue(request.ue_id)))

    async def ReportCellLoad(self, request: ran_pb2.ReportCellLoadRequest,
                             context: grpc.aio.ServicerContext) -> ran_pb2.ReportCellLoadResponse:
        self.ran.report_load(decode_loads(request))
        return ran_pb2.ReportCellLoadResponse()

    async def ListCells(self, request: ran_pb2.ListCellsRequest,
                        context: grpc.aio.ServicerContext) -> ran_pb2.ListCellsResponse:
        return ran_pb2.ListCellsResponse(cells=[encode_cell(c) for c in self.ran.cells()])

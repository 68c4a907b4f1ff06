"""5QI → NetGPT QoS: the standardized 5QI table of 3GPP TS 23.501 (Table 5.7.4-1) and one rule to map it.

For each standardized 5QI the table gives its resource type, default priority level (1..127,
lower is served first) and packet delay budget (PDB, ms). A session established without QoS of
its own gets, from its UE's 5QI:

- ``priority`` = the 3GPP priority level mapped linearly onto NetGPT's 1 (highest) .. 15 (lowest),
  over the span of the standardized levels (5 → 1, 90 → 15), so their order is kept;
- ``latency_budget_ms`` = the PDB. It bounds the edge's routing decision: a flow whose budget
  cannot wait for the cloud's measured latency is answered at the edge (``edge_node/serving/routing.py``),
  which is the point of answering delay-critical flows near the UE.

A 5QI outside the table (operator-specific 128..255, or one this table lacks) is refused
(INVALID_ARGUMENT), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from netgpt.errors import InvalidArgument
from netgpt.v1 import common_pb2

MAX_FIVE_QI = 255
_LEVEL_SPAN = (5, 90)  # the highest and lowest default priority levels of the standardized 5QIs
_NETGPT_SPAN = (1, 15)  # QoS.priority: 1 highest .. 15 lowest (netgpt.validate.MAX_QOS_PRIORITY)


@dataclass(frozen=True)
class FiveQi:
    five_qi: int
    resource: str  # GBR, non-GBR, delay-critical GBR
    priority_level: int  # 3GPP default priority level: lower is served first
    pdb_ms: int  # packet delay budget
    example: str  # an example service from the table


# 3GPP TS 23.501 V18 Table 5.7.4-1 (standardized 5QI to QoS characteristics mapping)
TABLE: dict[int, FiveQi] = {q.five_qi: q for q in (
    FiveQi(1, "GBR", 20, 100, "conversational voice"),
    FiveQi(2, "GBR", 40, 150, "conversational video (live streaming)"),
    FiveQi(3, "GBR", 30, 50, "real-time gaming, V2X messages"),
    FiveQi(4, "GBR", 50, 300, "non-conversational video (buffered streaming)"),
    FiveQi(65, "GBR", 7, 75, "mission-critical push-to-talk voice"),
    FiveQi(66, "GBR", 20, 100, "non-mission-critical push-to-talk voice"),
    FiveQi(67, "GBR", 15, 100, "mission-critical video user plane"),
    FiveQi(71, "GBR", 56, 150, "live uplink streaming"),
    FiveQi(72, "GBR", 56, 300, "live uplink streaming"),
    FiveQi(73, "GBR", 56, 300, "live uplink streaming"),
    FiveQi(74, "GBR", 56, 500, "live uplink streaming"),
    FiveQi(76, "GBR", 56, 500, "live uplink streaming"),
    FiveQi(5, "non-GBR", 10, 100, "IMS signalling"),
    FiveQi(6, "non-GBR", 60, 300, "video (buffered streaming), TCP-based services"),
    FiveQi(7, "non-GBR", 70, 100, "voice, live video, interactive gaming"),
    FiveQi(8, "non-GBR", 80, 300, "video (buffered streaming), TCP-based services"),
    FiveQi(9, "non-GBR", 90, 300, "video (buffered streaming), TCP-based services (default bearer)"),
    FiveQi(69, "non-GBR", 5, 60, "mission-critical delay-sensitive signalling"),
    FiveQi(70, "non-GBR", 55, 200, "mission-critical data"),
    FiveQi(79, "non-GBR", 65, 50, "V2X messages"),
    FiveQi(80, "non-GBR", 68, 10, "low-latency eMBB, augmented reality"),
    FiveQi(82, "delay-critical GBR", 19, 10, "discrete automation"),
    FiveQi(83, "delay-critical GBR", 22, 10, "discrete automation, V2X platooning"),
    FiveQi(84, "delay-critical GBR", 24, 30, "intelligent transport systems"),
    FiveQi(85, "delay-critical GBR", 21, 5, "electricity distribution (high voltage), remote driving"),
    FiveQi(86, "delay-critical GBR", 18, 5, "V2X collision avoidance, platooning"),
    FiveQi(87, "delay-critical GBR", 25, 5, "interactive service: motion tracking"),
    FiveQi(88, "delay-critical GBR", 25, 10, "interactive service: motion tracking"),
    FiveQi(89, "delay-critical GBR", 25, 15, "visual content for cloud/edge/split rendering"),
    FiveQi(90, "delay-critical GBR", 25, 20, "visual content for cloud/edge/split rendering"),
)}


def netgpt_priority(priority_level: int) -> int:
    """A 3GPP priority level (lower first) as NetGPT's QoS priority 1..15, order kept."""
    low, high = _LEVEL_SPAN
    first, last = _NETGPT_SPAN
    clamped = min(max(priority_level, low), high)
    return first + round((clamped - low) * (last - first) / (high - low))


def check_five_qi(five_qi: int, where: str = "five_qi") -> None:
    """INVALID_ARGUMENT unless ``five_qi`` is 0 (none) or a standardized 5QI of :data:`TABLE`."""
    if five_qi and five_qi not in TABLE:
        kind = "an operator-specific 5QI" if 128 <= five_qi <= MAX_FIVE_QI else "not a standardized 5QI"
        raise InvalidArgument(f"{where} {five_qi} is {kind}; NetGPT derives QoS only from the standardized 5QIs "
                              f"of 3GPP TS 23.501 Table 5.7.4-1: {', '.join(map(str, sorted(TABLE)))} "
                              "(or set the session's QoS explicitly)")


def qos_for(five_qi: int) -> common_pb2.QoS:
    """The QoS a session gets from ``five_qi``; an empty QoS for 0 (no 5QI known)."""
    check_five_qi(five_qi)
    if not five_qi:
        return common_pb2.QoS()
    row = TABLE[five_qi]
    return common_pb2.QoS(priority=netgpt_priority(row.priority_level), latency_budget_ms=row.pdb_ms)


def is_unset(qos: common_pb2.QoS) -> bool:
    """True when a client set neither priority nor latency budget (the 5QI then decides)."""
    return not qos.priority and not qos.latency_budget_ms

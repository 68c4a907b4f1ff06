"""The access table of each daemon, in one place so that it can be read (and tested) as a whole.

- node (edge, cloud): register, heartbeat and answer only as itself; read models, workflows,
  policy and sessions; fetch blobs; publish the results of its own training jobs. An edge also
  establishes sessions for the UEs of its OpenAI-compatible HTTP API, which it checked itself
  (``edge_http_rules``: the same rules as its gRPC API).
- operator: everything, each action audited (publish, deploy, rollback, policy, workflows,
  training jobs, profiles).
- ue (a UE certificate, or a UE token the RAN got at attach: ``netgpt.ue_tokens``): establish, read
  and release its own sessions; generate at the edge in its own session; read, update and delete its
  own profile.
- network management at the edge: operators infer intents; operators, the RAN and nodes predict
  popularity (a content cache deciding what to prefetch).
- ran (a testbed, a RIC xApp, a simulator): report UE attach, handover and detach and cell load
  for any UE (not bound: the RAN speaks for its UEs), getting a UE token with each attach and
  handover; a detach revokes the UE's tokens. Operators may too. RAN events are frequent
  (a handover per UE every few seconds) and telemetry-like: they go to the structlog ``ran.*``
  events, not the fsynced audit log.

A method missing from a table is refused (PERMISSION_DENIED): a new RPC is closed until someone
decides who may call it (``tests/test_security.py`` checks every method of every service is listed).
"""

from __future__ import annotations

from typing import Any

from netgpt.access import NODES, OPERATOR, Owner, Principal, Rule, field_owner, operator_action
from netgpt.v1 import common_pb2

UE = frozenset({"ue"})
RAN = frozenset({"ran"})
EDGE = frozenset({"edge"})
CP = "/netgpt.v1.ControlPlaneService/"
CMP = "/netgpt.v1.ComputePlaneService/"
TRAINING = "/netgpt.v1.TrainingService/"
WORKFLOW = "/netgpt.v1.WorkflowService/"
BLOB = "/netgpt.v1.BlobService/"
UP = "/netgpt.v1.UserPlaneService/"
PROFILE = "/netgpt.v1.ProfileService/"
RAN_SERVICE = "/netgpt.v1.RanService/"
NETMGMT = "/netgpt.v1.NetworkManagementService/"

_READ = Rule(OPERATOR | NODES)
_OPERATOR_READ = Rule(OPERATOR)
_BLOBS = Rule(NODES | OPERATOR)


_NODE_ROLE_WORDS = {common_pb2.NODE_ROLE_EDGE: "edge", common_pb2.NODE_ROLE_CLOUD: "cloud"}


def _registering(request: Any) -> Principal:
    """A registration claims a node id and a role; both must be the certificate's."""
    return Principal(request.node.node_id, _NODE_ROLE_WORDS.get(request.node.role, "unspecified"))


def core_rules(session_owner: Owner) -> dict[str, Rule]:
    """The core: control plane, compute plane, training, workflows, and its blob store.

    ``session_owner(request)`` is the UE id of the session a request names (GetSession, ReleaseSession).
    """
    return {
        CP + "RegisterNode": Rule(NODES, owner=_registering),
        CP + "Heartbeat": Rule(NODES, owner=field_owner("node_id")),
        # edges too: for the UEs of their HTTP API, whom the edge checked first (edge_http_rules)
        CP + "EstablishSession": Rule(UE | OPERATOR | EDGE, owner=field_owner("ue_id"), bound=UE),
        CP + "GetSession": Rule(UE | OPERATOR | NODES, owner=session_owner, bound=UE),  # edges resolve sessions
        CP + "ReleaseSession": Rule(UE | OPERATOR, owner=session_owner),
        CP + "ListNodes": _READ,
        CP + "SetRoutingPolicy": operator_action(),
        CP + "GetRoutingPolicy": _READ,
        CMP + "ListModels": _READ,
        CMP + "ListModelVersions": _READ,
        CMP + "DescribeModelVersion": _READ,
        CMP + "GetDeploymentStatus": _READ,
        CMP + "FetchModel": _READ,
        CMP + "PublishModel": operator_action(roles=OPERATOR | NODES),  # nodes publish their training results
        CMP + "DeployModel": operator_action(),
        CMP + "RollbackModel": operator_action(),
        TRAINING + "StartTrainingJob": operator_action(),
        TRAINING + "CancelTrainingJob": operator_action(),
        TRAINING + "GetTrainingJob": _OPERATOR_READ,
        TRAINING + "WatchTrainingJob": _OPERATOR_READ,
        TRAINING + "ListTrainingJobs": _OPERATOR_READ,
        WORKFLOW + "ApplyWorkflow": operator_action(),
        WORKFLOW + "DeleteWorkflow": operator_action(),
        WORKFLOW + "GetWorkflow": _READ,
        WORKFLOW + "ListWorkflows": _READ,
        BLOB + "FetchBlob": _BLOBS,
        **ran_rules(),
    }


def ran_rules() -> dict[str, Rule]:
    """RanService on the core: the RAN (and operators) report events and read the RAN view."""
    events = Rule(RAN | OPERATOR, audit=False)
    return {
        RAN_SERVICE + "AttachUe": events,
        RAN_SERVICE + "HandoverUe": events,
        RAN_SERVICE + "DetachUe": events,
        RAN_SERVICE + "ReportCellLoad": events,
        RAN_SERVICE + "GetUe": Rule(RAN | OPERATOR),
        RAN_SERVICE + "ListCells": Rule(RAN | OPERATOR),
    }


def edge_rules(session_owner: Owner) -> dict[str, Rule]:
    """An edge: UEs generate in their own sessions and manage their own profiles; peers fetch blobs."""
    return {
        UP + "Generate": Rule(UE | OPERATOR, owner=session_owner),
        PROFILE + "GetProfile": Rule(UE | OPERATOR, owner=field_owner("user_id")),
        PROFILE + "UpdateProfile": Rule(UE | OPERATOR, owner=field_owner("user_id")),
        PROFILE + "DeleteProfile": operator_action(roles=UE | OPERATOR, owner=field_owner("user_id")),
        BLOB + "FetchBlob": _BLOBS,
        NETMGMT + "PredictPopularity": Rule(OPERATOR | RAN | NODES),  # a cache or xApp in the RAN, peer nodes
        NETMGMT + "InferIntent": Rule(OPERATOR),
    }


HTTP_MODELS = "GET /v1/models"


def edge_http_rules(session_owner: Owner) -> dict[str, Rule]:
    """The edge's OpenAI-compatible HTTP API (``edge_node.openai_api``): a caller may do over HTTP what
    it may do over gRPC. Each step of an HTTP call is checked under the gRPC method it stands for:
    generating in a session is ``Generate`` (a UE only in its own sessions), a session made on first
    use is ``EstablishSession`` (a UE only for itself; the edge then asks the core); listing models
    is open to the same callers."""
    return {
        UP + "Generate": edge_rules(session_owner)[UP + "Generate"],
        CP + "EstablishSession": Rule(UE | OPERATOR, owner=field_owner("ue_id")),
        HTTP_MODELS: Rule(UE | OPERATOR),
    }


def cloud_rules() -> dict[str, Rule]:
    """A cloud: only edges (and operators, for diagnosis) send it comprehensive prompts."""
    return {
        UP + "Generate": Rule(EDGE | OPERATOR),
        BLOB + "FetchBlob": _BLOBS,
    }

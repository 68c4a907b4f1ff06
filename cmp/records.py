"""The compute plane's records of what the core tracks: one node's deployments, one fine-tuning job.

Plain data, with no logic beyond reading itself: the domain modules (``cmp.deployments``,
``cmp.training_jobs``) keep them, ``cmp.convert`` maps them to and from protos and
``cmp.commands`` builds node commands from them, so none of those imports another's domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netgpt.v1 import common_pb2, training_pb2

S = common_pb2  # states: S.TRAINING_STATE_*
TERMINAL = frozenset({S.TRAINING_STATE_SUCCEEDED, S.TRAINING_STATE_FAILED, S.TRAINING_STATE_CANCELLED})


@dataclass(frozen=True)
class NodeDeployments:
    """One node as deployments see it: its status, the commands it has not reported on yet (newest
    first), then the deployments it reports."""

    status: common_pb2.NodeStatus
    deployments: list[common_pb2.DeploymentState]


@dataclass
class Job:
    """One fine-tuning job as the core knows it: what was asked, where it runs, its latest state."""

    id: str
    spec: training_pb2.TrainingJobSpec
    node_id: str
    base: common_pb2.ModelRef  # empty name: the node's serving model
    dataset: common_pb2.ModelRef
    created_at: float
    report: common_pb2.TrainingJobState = field(default_factory=common_pb2.TrainingJobState)
    cancel_requested: bool = False
    requeue: bool = False  # restored after a core restart: hand the command to the node again

    @property
    def state(self) -> int:
        return self.report.state

    @property
    def done(self) -> bool:
        return self.report.state in TERMINAL

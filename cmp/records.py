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
    # in memory only (the core's monotonic clock): when its node was last seen alive, since when it waits
    # for a node, the nodes it was taken from (never placed there again), the cancels sent to a node that
    # still reports it (node id -> that node's registration time, so a node registered again gets another)
    node_seen_at: float = 0.0
    unplaced_since: float = 0.0
    lost_nodes: set[str] = field(default_factory=set)
    cancels_sent: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> int:
        return self.report.state

    @property
    def done(self) -> bool:
        return self.report.state in TERMINAL


CHECKPOINT_FORMAT = "training-checkpoint"  # manifest metadata "format" of a job's uploaded checkpoints


def checkpoint_model(job_id: str) -> str:
    """The store name a job's training checkpoints are uploaded under, one version per step, so a
    node the job moves to resumes from the last one (``cmp.training_agent``)."""
    return f"job-{job_id}-checkpoint"


def checkpoint_version(step: int) -> str:
    """Zero-padded, so versions sort by step."""
    return f"step-{step:09d}"

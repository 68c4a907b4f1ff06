"""The commands the core queues on a node's heartbeat stream (deploy, rollback, start/cancel
training), and how a queued command shows until its node reports on it."""

from __future__ import annotations

from cmp.convert import plan_to_proto
from cmp.distribution import FetchPlan
from cmp.records import Job
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2


def deploy_command(command_id: str, ref: common_pb2.ModelRef, plan: FetchPlan | None = None) -> cp_pb2.NodeCommand:
    command = cp_pb2.NodeCommand(command_id=command_id, deploy=cp_pb2.DeployCommand(model=ref))
    if plan is not None:
        command.deploy.plan.CopyFrom(plan_to_proto(plan))
    return command


def rollback_command(command_id: str) -> cp_pb2.NodeCommand:
    return cp_pb2.NodeCommand(command_id=command_id, rollback=cp_pb2.RollbackCommand())


def pending_state(command: cp_pb2.NodeCommand, at_s: float) -> common_pb2.DeploymentState:
    """How a queued command shows until its node reports on it."""
    ref = command.deploy.model if command.HasField("deploy") else common_pb2.ModelRef()
    state = common_pb2.DeploymentState(command_id=command.command_id, model=ref,
                                       phase=common_pb2.DEPLOYMENT_PHASE_PENDING,
                                       rollback=command.HasField("rollback"))
    state.started_at.FromNanoseconds(int(at_s * 1e9))
    state.updated_at.CopyFrom(state.started_at)
    return state


def start_training_command(job: Job) -> cp_pb2.NodeCommand:
    return cp_pb2.NodeCommand(command_id=f"train-{job.id}", start_training=cp_pb2.StartTrainingCommand(
        job_id=job.id, spec=job.spec, base=job.base, dataset=job.dataset))


def cancel_training_command(job_id: str) -> cp_pb2.NodeCommand:
    return cp_pb2.NodeCommand(command_id=f"cancel-{job_id}",
                              cancel_training=cp_pb2.CancelTrainingCommand(job_id=job_id))

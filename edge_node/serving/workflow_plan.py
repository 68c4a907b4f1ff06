"""What a request does at the edge: the steps of the workflow it names (cp/workflows.py defines the
functions and what each reads and writes), checked once more before they run.

The default plan — personalise → route → generate at the edge or in the cloud — is what
every request without a workflow gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from cp.workflow_dataflow import ancestors, check_dataflow
from cp.workflows import FUNCTIONS, Step
from netgpt.errors import FailedPrecondition, InvalidArgument
from netgpt.v1 import common_pb2, workflow_pb2


@dataclass(frozen=True)
class WorkflowPlan:
    name: str
    steps: tuple[Step, ...]  # in topological order: a step comes after every step it runs after
    priority: int = 0  # the workflow's QoS priority (1 highest .. 15) for the cloud; 0: the session's own
    cloud_node_id: str = ""  # where the core placed generate_cloud, if anywhere

    @cached_property
    def functions(self) -> frozenset[str]:
        return frozenset(step.function for step in self.steps)

    def has(self, function: str) -> bool:
        return function in self.functions

    @cached_property
    def before(self) -> dict[str, frozenset[str]]:
        """Step id → the ids of every step it runs after, directly or not."""
        return ancestors(self.steps)

    def last_writer(self, field_name: str) -> Step | None:
        """The step whose value of ``field_name`` the request ends with (the writers of a field run one
        after the other: ``cp.workflow_dataflow``); None when no step writes it."""
        writers = [step for step in self.steps if field_name in FUNCTIONS[step.function].writes]
        return next((w for w in writers if all(o.id in self.before[w.id] for o in writers if o is not w)), None)

    def post_processed(self, step: Step) -> bool:
        """True when a post_process step runs after ``step`` (its answer streams tidied)."""
        return any(s.function == "post_process" and step.id in self.before[s.id] for s in self.steps)

    def led_by(self, function: str) -> WorkflowPlan:
        """This plan with a ``function`` step that every other step runs after, unless one already leads it."""
        ids = {step.id for step in self.steps}
        if any(s.function == function and all(s.id in self.before[o.id] for o in self.steps if o is not s)
               for s in self.steps):
            return self
        lead = Step(id=_unused(function, ids), function=function)
        steps = (lead, *(Step(s.id, s.function, s.after or (lead.id,)) for s in self.steps))
        return WorkflowPlan(self.name, steps, self.priority, self.cloud_node_id)


def _unused(name: str, taken: set[str]) -> str:
    return next(candidate for i in range(len(taken) + 1)
                if (candidate := name if i == 0 else f"{name}-{i}") not in taken)


def _chain(*functions: str | tuple[str, ...]) -> tuple[Step, ...]:
    """Steps named after their functions, each stage after the one before (a tuple: concurrent ones)."""
    steps: list[Step] = []
    previous: tuple[str, ...] = ()
    for stage in functions:
        names = (stage,) if isinstance(stage, str) else stage
        steps += [Step(id=name, function=name, after=previous) for name in names]
        previous = names
    return tuple(steps)


# route picks a side; only that side's generation step answers (generate_cloud falls back to the edge)
DEFAULT_PLAN = WorkflowPlan("default", _chain("personalise", "route", ("generate_edge", "generate_cloud")))


def plan_from_workflow(workflow: workflow_pb2.Workflow) -> WorkflowPlan:
    name = workflow.spec.name
    if workflow.placement_error:
        raise FailedPrecondition(f"workflow {name!r} cannot be placed now: {workflow.placement_error}")
    steps = tuple(Step(id=s.id, function=s.function, after=tuple(s.after)) for s in workflow.spec.steps)
    unknown = sorted({s.function for s in steps} - set(FUNCTIONS))
    if unknown:  # a newer core's function
        raise FailedPrecondition(f"workflow {name!r} uses functions this edge cannot run: {unknown}")
    try:
        check_dataflow(steps)
    except InvalidArgument as exc:  # applied before the core checked this: the operator must re-apply it
        raise FailedPrecondition(f"workflow {name!r} cannot run at the edge: {exc}; fix it and apply it "
                                 "again") from exc
    cloud = [p.node_id for p in workflow.placement
             if p.function == "generate_cloud" and p.role == common_pb2.NODE_ROLE_CLOUD]
    return WorkflowPlan(name, steps, workflow.spec.priority, cloud[0] if cloud else "")

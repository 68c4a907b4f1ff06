"""Runs a workflow plan's DAG for one request: each step starts as soon as the steps it runs after
are done, steps that do not depend on each other run concurrently (one asyncio task each), and
each step reads the request state as the steps it runs after left it.

A step function returns the state with the fields its function writes replaced
(``cp.workflows.FUNCTIONS``), or :class:`Skipped` when it has nothing to do. Writing a field
it does not own is a bug of the function and fails the request. A step that raises fails the
request: its domain error keeps its status and names the step and its function; anything else
becomes INTERNAL, named the same way, with the traceback in the log. The other steps in
flight are cancelled then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from cp.workflows import FUNCTIONS, Step
from edge_node.serving.workflow_plan import WorkflowPlan
from edge_node.serving.workflow_state import RequestState
from netgpt.errors import FailedPrecondition, Internal, NetGptError, restated
from netgpt.timing import Stopwatch
from up.events import StepTiming

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Skipped:
    reason: str


StepFunction = Callable[[Step, RequestState], Awaitable[RequestState | Skipped]]
AfterStep = Callable[[Step, RequestState], None]  # called with the state a step left, as part of the step


class WorkflowRun:
    def __init__(self, plan: WorkflowPlan, functions: Mapping[str, StepFunction], clock: Stopwatch,
                 after_step: AfterStep | None = None) -> None:
        self.plan = plan
        self.functions = functions
        self.clock = clock
        self.after_step = after_step
        self._timings: dict[str, StepTiming] = {}
        self._writes: dict[str, dict[str, object]] = {}  # step id -> the fields it wrote
        self._done: list[str] = []  # step ids in the order they finished

    @property
    def timings(self) -> tuple[StepTiming, ...]:
        """The steps that ran (or skipped), in the order they started."""
        return tuple(sorted(self._timings.values(), key=lambda t: t.started_ms))

    async def run(self, initial: RequestState) -> RequestState:
        """The state the request ends with, once every step has run."""
        waiting = list(self.plan.steps)
        running: dict[asyncio.Task[None], Step] = {}
        try:
            while waiting or running:
                ready = [s for s in waiting if all(a in self._done for a in s.after)]
                for step in ready:
                    waiting.remove(step)
                    running[asyncio.create_task(self._run(step, self._view(step, initial)))] = step
                if not running:
                    raise FailedPrecondition(f"workflow {self.plan.name!r}: steps {[s.id for s in waiting]} "
                                             "wait for steps that never run")
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=lambda t: self.plan.steps.index(running[t])):
                    step = running.pop(task)
                    task.result()  # a step's error fails the request here
                    self._done.append(step.id)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return self._state(initial, self._done)

    def _view(self, step: Step, initial: RequestState) -> RequestState:
        """The state as the steps ``step`` runs after left it (writers of a field run one after the other,
        so applying them in the order they finished gives the last one's value)."""
        return self._state(initial, [done for done in self._done if done in self.plan.before[step.id]])

    def _state(self, initial: RequestState, step_ids: list[str]) -> RequestState:
        state = initial
        for step_id in step_ids:
            state = state.updated(self._writes[step_id])
        return state

    async def _run(self, step: Step, view: RequestState) -> None:
        started = self.clock.ms()
        with structlog.contextvars.bound_contextvars(step=step.id, function=step.function):
            try:
                result = await self.functions[step.function](step, view)
                if isinstance(result, Skipped):
                    self._writes[step.id] = {}
                else:
                    self._writes[step.id] = self._owned(step, view, result)
                    if self.after_step is not None:
                        self.after_step(step, result)
            except NetGptError as exc:
                log.info("workflow.step_failed", error=str(exc), code=type(exc).__name__)
                raise restated(exc, f"{self._where(step)} failed: {exc}") from exc
            except Exception as exc:
                log.exception("workflow.step_failed")
                raise Internal(f"{self._where(step)} failed: internal error ({type(exc).__name__}); the edge's "
                               "log has the details") from exc
            finished = self.clock.ms()
            skipped = result.reason if isinstance(result, Skipped) else ""
            self._timings[step.id] = StepTiming(step.id, step.function, started, finished, skipped)
            log.info("workflow.step", started_ms=round(started, 1), took_ms=round(finished - started, 1),
                     skipped=skipped or None)

    def _owned(self, step: Step, view: RequestState, result: RequestState) -> dict[str, object]:
        """What ``step`` wrote; a field its function does not own is a bug (AssertionError)."""
        changed = view.changed(result)
        foreign = changed - set(FUNCTIONS[step.function].writes)
        if foreign:
            raise AssertionError(f"{step.function} wrote {sorted(foreign)}, which it does not own")
        return result.values(changed)

    def _where(self, step: Step) -> str:
        return f"step {step.id!r} (function {step.function}) of workflow {self.plan.name!r}"

"""The edge runs a workflow's DAG as declared: in the declared order, independent steps at once, the
workflow's priority as the cloud's QoS, a failing step named in the status; the default keeps today's flow.

Through a real core, cloud and edge on loopback (the cloud records what it receives), and the DAG
executor on its own where a test needs steps that only a test can write.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from itertools import pairwise

import grpc
import pytest
from harness import start_cluster
from helpers import RecordGenerate, concise, generate, kinds, new_session, streamed_text
from test_workflow_requests import apply

from cp.workflows import Step
from edge_node.serving.workflow_plan import WorkflowPlan, plan_from_workflow
from edge_node.serving.workflow_run import WorkflowRun
from edge_node.serving.workflow_state import Prompt, RequestState
from netgpt.errors import FailedPrecondition, Internal, InvalidArgument
from netgpt.status import status_code
from netgpt.timing import Stopwatch
from netgpt.v1 import common_pb2, workflow_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2

CLOUD = common_pb2.NODE_ROLE_CLOUD


@pytest.fixture(scope="module")
async def dag(models):
    """A cluster whose cloud records every request, with a route step that always probes the edge model
    (a confidence threshold no answer reaches: the probe runs, the request still goes to the cloud), and no
    answer cache or shared calls, so every request reaches the cloud."""
    recorder = RecordGenerate()
    running = await start_cluster(*models, heartbeat_interval_s=0.3, cloud_interceptors=[recorder],
                                  edge={"confidence_threshold": 1000.0, "answer_cache_ttl_s": 0.0, "coalesce": False})
    yield running, recorder
    await running.stop()


def workflow(name: str, *steps: tuple[str, str, list[str]], priority: int = 5) -> workflow_pb2.ApplyWorkflowRequest:
    """(id, function, after) for each step."""
    return workflow_pb2.ApplyWorkflowRequest(spec=workflow_pb2.WorkflowSpec(
        name=name, latency_budget_ms=5000, priority=priority,
        steps=[workflow_pb2.WorkflowStep(id=i, function=f, after=a) for i, f, a in steps]))


def timings(summary: up_pb2.GenerationSummary) -> dict[str, up_pb2.StepTiming]:
    return {step.step_id: step for step in summary.steps}


async def test_a_declared_order_other_than_the_default_runs_in_that_order(dag):
    cluster, recorder = dag
    await apply(cluster, workflow("route-first", ("mask", "desensitise", []), ("route", "route", ["mask"]),
                                  ("personalise", "personalise", ["route"]),
                                  ("generate", "generate_cloud", ["personalise"]),
                                  ("tidy", "post_process", ["generate"])))
    session = await new_session(cluster.core.address, "cell-harbour-1")
    events = await generate(cluster.edge.address, concise(session, "Where can I eat seafood tonight?",
                                                          workflow="route-first", max_new_tokens=24))
    summary = events[-1].summary
    assert [s.step_id for s in summary.steps] == ["mask", "route", "personalise", "generate", "tidy"]
    for first, then in pairwise(summary.steps):
        assert then.started_ms >= first.finished_ms, (first, then)  # one after the other, as declared
    assert not any(s.skipped for s in summary.steps)
    assert [s.function for s in summary.steps][1:3] == ["route", "personalise"]  # the default is the other way
    # the personalised prompt, built after routing, is still what the cloud generates from
    comprehensive = events[0].comprehensive_prompt.text
    assert "Harbour Fish Market" in comprehensive and recorder.requests[-1].prompt == comprehensive
    assert summary.terminated_at == CLOUD and summary.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED
    assert streamed_text(events) == summary.text  # post-processed as it streamed, after generation


async def test_independent_steps_overlap_in_time(dag):
    cluster, _ = dag
    # route (a confidence probe on the edge model) and personalise (the edge model's intent) need only the mask
    await apply(cluster, workflow("fan-out", ("mask", "desensitise", []), ("route", "route", ["mask"]),
                                  ("personalise", "personalise", ["mask"]),
                                  ("generate", "generate_cloud", ["route", "personalise"])))
    session = await new_session(cluster.core.address, "cell-harbour-1")
    summary = (await generate(cluster.edge.address, concise(session, "Any good pizza around here?",
                                                            workflow="fan-out")))[-1].summary
    step = timings(summary)
    route, personalise = step["route"], step["personalise"]
    assert route.started_ms < personalise.finished_ms and personalise.started_ms < route.finished_ms
    assert step["generate"].started_ms >= max(route.finished_ms, personalise.finished_ms)
    assert step["mask"].finished_ms <= min(route.started_ms, personalise.started_ms)
    assert "edge_confidence" in summary.routing_inputs  # route did probe


async def test_a_failing_step_fails_the_request_naming_the_step(dag):
    cluster, _ = dag
    await apply(cluster, workflow("long-context", ("mask", "desensitise", []),
                                  ("enrich", "personalise", ["mask"]), ("answer", "generate_edge", ["enrich"])))
    session = await new_session(cluster.core.address, "cell-harbour-1")
    too_long = " ".join(f"Where can I eat fresh seafood near pier {letter}?" for letter in "abcdefghijklmnopqrstuvwxyz")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.edge.address, concise(session, too_long, workflow="long-context", max_new_tokens=256))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()  # the request's, not ours
    details = err.value.details()
    assert "step 'enrich' (function personalise) of workflow 'long-context' failed" in details
    assert "exceeds the model context" in details


async def test_the_default_workflow_runs_todays_flow(dag):
    cluster, recorder = dag
    session = await new_session(cluster.core.address, "cell-harbour-1")
    events = await generate(cluster.edge.address, concise(session, "Where can I eat seafood near the harbour?"))
    assert kinds(events) == ["comprehensive_prompt", "tokens", "summary"]
    summary = events[-1].summary
    assert [(s.step_id, s.skipped) for s in summary.steps] == [
        ("desensitise", ""), ("personalise", ""), ("route", ""), ("generate_edge", "routed to the cloud"),
        ("generate_cloud", "")]  # the data policy's desensitise first, then today's fixed order
    step = timings(summary)
    assert step["route"].started_ms >= step["personalise"].finished_ms
    assert summary.routing_inputs["workflow"] == "default" and summary.routing_inputs["desensitised"] == "0"
    assert summary.terminated_at == CLOUD and summary.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED
    assert summary.latency.personalise_ms <= step["route"].started_ms  # the prompt went out once it was built
    forwarded = recorder.requests[-1]
    assert forwarded.prompt == events[0].comprehensive_prompt.text and "Harbour" in forwarded.prompt
    assert forwarded.ran.qos.priority == session.qos.priority  # no workflow: the session's QoS, as before


async def test_the_workflow_priority_is_the_clouds_qos(dag):
    cluster, recorder = dag
    await apply(cluster, workflow("urgent", ("generate", "generate_cloud", []), priority=2))
    await apply(cluster, workflow("background", ("generate", "generate_cloud", []), priority=14))
    session = await new_session(cluster.core.address, "cell-harbour-1")
    for name, priority in (("urgent", 2), ("background", 14)):
        summary = (await generate(cluster.edge.address, concise(session, f"Plan my {name} evening",
                                                                workflow=name)))[-1].summary
        assert summary.terminated_at == CLOUD
        assert recorder.requests[-1].ran.qos.priority == priority


@pytest.mark.parametrize("steps, needles", [
    ([("mask", "desensitise", []), ("p", "personalise", []), ("g", "generate_edge", ["mask", "p"])],
     ["steps 'mask' (desensitise) and 'p' (personalise) both write the prompt", "neither runs after the other"]),
    ([("r", "route", []), ("p", "personalise", []), ("g", "generate_cloud", ["p"])],
     ["step 'r' (route) writes the routing decision, which step 'g' (generate_cloud) generates from"]),
    ([("g", "generate_cloud", []), ("t1", "post_process", ["g"]), ("t2", "post_process", ["g"])],
     ["steps 't1' (post_process) and 't2' (post_process) both write the answer"]),
    ([("t", "post_process", []), ("g", "generate_edge", ["t"])],
     ["step 't' (post_process) needs the answer", "after a generate_edge or generate_cloud step"]),
    ([("p", "personalise", [])], ["no generate_edge or generate_cloud step"]),
])
async def test_steps_that_would_race_are_refused_when_applied_and_planned(dag, steps, needles):
    cluster, _ = dag
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await apply(cluster, workflow("racy", *steps))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for needle in needles:
        assert needle in err.value.details()

    stored_before_the_check = workflow_pb2.Workflow(spec=workflow("racy", *steps).spec)  # the edge checks again
    with pytest.raises(FailedPrecondition) as planned:
        plan_from_workflow(stored_before_the_check)
    assert "workflow 'racy' cannot run at the edge" in str(planned.value) and needles[0] in str(planned.value)


async def test_two_generation_steps_are_alternatives(dag):
    cluster, _ = dag
    await apply(cluster, workflow("either", ("route", "route", []), ("edge", "generate_edge", ["route"]),
                                  ("cloud", "generate_cloud", ["route"])))
    session = await new_session(cluster.core.address, "cell-harbour-1")
    for task, answered, skipped in ((up_pb2.TASK_CLASS_CHAT, "cloud", "edge"),
                                    (up_pb2.TASK_CLASS_LOOKUP, "edge", "cloud")):
        summary = (await generate(cluster.edge.address, concise(session, "Where is the station?", workflow="either",
                                                                task=task)))[-1].summary
        step = timings(summary)
        assert step[answered].skipped == "" and step[skipped].skipped.startswith("routed to the")
        assert summary.terminated_at == (CLOUD if answered == "cloud" else common_pb2.NODE_ROLE_EDGE)


# The executor on its own: steps only a test writes.

def plan(*steps: Step) -> WorkflowPlan:
    return WorkflowPlan("t", steps)


FAN_OUT = plan(Step("p", "personalise"), Step("r", "route"), Step("g", "generate_edge", ("p", "r")))
START = RequestState(prompt=Prompt("hello"))


async def passes(step: Step, state: RequestState) -> RequestState:
    return state


async def test_independent_steps_run_at_the_same_time():
    """Each of two independent steps waits until the other has started: run one after the other, they
    could never finish."""
    started = {"personalise": asyncio.Event(), "route": asyncio.Event()}

    async def waits_for_the_other(step: Step, state: RequestState) -> RequestState:
        started[step.function].set()
        other = next(name for name in started if name != step.function)
        await asyncio.wait_for(started[other].wait(), 10)
        return state

    run = WorkflowRun(FAN_OUT, {"personalise": waits_for_the_other, "route": waits_for_the_other,
                                "generate_edge": passes}, Stopwatch())
    await run.run(START)
    assert [t.step_id for t in run.timings][-1] == "g"


async def test_a_step_reads_what_the_steps_before_it_wrote():
    async def personalise(step: Step, state: RequestState) -> RequestState:
        return replace(state, prompt=Prompt(state.prompt.text + " near the harbour"))

    seen: dict[str, str] = {}

    async def reads(step: Step, state: RequestState) -> RequestState:
        seen[step.id] = state.prompt.text
        return state

    chain = plan(Step("r", "route"), Step("p", "personalise", ("r",)), Step("g", "generate_edge", ("p",)))
    final = await WorkflowRun(chain, {"personalise": personalise, "route": reads, "generate_edge": reads},
                              Stopwatch()).run(START)
    assert seen == {"r": "hello", "g": "hello near the harbour"} and final.prompt.text == "hello near the harbour"


async def test_a_failing_step_is_named_and_its_siblings_are_cancelled():
    cancelled = asyncio.Event()

    async def fails(step: Step, state: RequestState) -> RequestState:
        await asyncio.sleep(0)
        raise InvalidArgument("no such place")

    async def waits(step: Step, state: RequestState) -> RequestState:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()
        return state

    run = WorkflowRun(FAN_OUT, {"personalise": waits, "route": fails, "generate_edge": passes}, Stopwatch())
    with pytest.raises(InvalidArgument, match=r"^step 'r' \(function route\) of workflow 't' failed: no such place$"):
        await run.run(START)
    assert cancelled.is_set()


@pytest.mark.parametrize("broken", ["raises", "writes what it does not own"])
async def test_a_broken_step_function_is_internal_and_named(broken):
    async def bug(step: Step, state: RequestState) -> RequestState:
        if broken == "raises":
            raise KeyError("oops")
        return RequestState(prompt=Prompt("rewritten"))  # route owns the routing decision, not the prompt

    run = WorkflowRun(FAN_OUT, {"personalise": passes, "route": bug, "generate_edge": passes}, Stopwatch())
    with pytest.raises(Internal) as err:
        await run.run(START)
    assert "step 'r' (function route)" in str(err.value) and status_code(err.value) == grpc.StatusCode.INTERNAL

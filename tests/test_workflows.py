"""Workflows through a real core on loopback: validation, placement, re-placement, CLI."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path

import grpc
import pytest
from helpers import eventually
from throwaway_ca import as_node

from cli import workflow as cli_workflow
from cp.placement import place
from cp.workflows import parse_toml
from netgpt.channels import open_channel
from netgpt.errors import FailedPrecondition
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import workflow_pb2 as wf_pb2
from netgpt.v1 import workflow_pb2_grpc as wf_grpc

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "workflow.toml"
EDGE, CLOUD = common_pb2.NODE_ROLE_EDGE, common_pb2.NODE_ROLE_CLOUD


def node(node_id: str, role: int, cells: tuple[str, ...] = (), slots: int = 2) -> common_pb2.NodeInfo:
    return common_pb2.NodeInfo(node_id=node_id, role=role, address=f"127.0.0.1:{1000 + len(node_id)}",
                               cell_ids=cells, capabilities=common_pb2.Capabilities(max_concurrency=slots))


def load(queue: int = 0, p50_ms: float = 0.0) -> common_pb2.NodeLoad:
    return common_pb2.NodeLoad(queue_depth=queue, p50_first_token_ms=p50_ms)


def chat_spec(**fields) -> wf_pb2.WorkflowSpec:
    spec = wf_pb2.WorkflowSpec(name="chat", latency_budget_ms=2000, priority=1, steps=[
        wf_pb2.WorkflowStep(id="desensitise", function="desensitise"),
        wf_pb2.WorkflowStep(id="personalise", function="personalise", after=["desensitise"]),
        wf_pb2.WorkflowStep(id="route", function="route", after=["personalise"]),
        wf_pb2.WorkflowStep(id="generate", function="generate_cloud", after=["route"]),
        wf_pb2.WorkflowStep(id="post", function="post_process", after=["generate"]),
    ])
    for key, value in fields.items():
        setattr(spec, key, value)
    return spec


class Nodes:
    """Fake nodes that register and heartbeat through the generated control-plane stubs."""

    def __init__(self, core) -> None:
        self.core = core
        self.loads: dict[str, common_pb2.NodeLoad] = {}
        self.beats: dict[str, asyncio.Task] = {}
        self.channels: dict[str, grpc.aio.Channel] = {}  # one per node: each calls with its own certificate

    async def up(self, info: common_pb2.NodeInfo, node_load: common_pb2.NodeLoad | None = None) -> None:
        if info.node_id not in self.channels:
            self.channels[info.node_id] = open_channel(self.core.address, as_node(info))
        stub = cp_grpc.ControlPlaneServiceStub(self.channels[info.node_id])
        await stub.RegisterNode(cp_pb2.RegisterNodeRequest(node=info), timeout=5)
        self.loads[info.node_id] = node_load or load()
        await self.silence(info.node_id)
        self.beats[info.node_id] = asyncio.create_task(self._beat(stub, info.node_id))
        await eventually(lambda: self.core.registry.get(info.node_id).load == self.loads[info.node_id],
                         f"{info.node_id}'s load in a heartbeat")

    async def _beat(self, stub: cp_grpc.ControlPlaneServiceStub, node_id: str) -> None:
        call = stub.Heartbeat()
        try:
            while True:
                await call.write(cp_pb2.HeartbeatRequest(node_id=node_id, load=self.loads[node_id]))
                await call.read()
                await asyncio.sleep(0.05)
        finally:
            call.cancel()

    async def silence(self, node_id: str) -> None:
        """Stop heartbeating: the core marks the node STALE after three missed intervals."""
        task = self.beats.pop(node_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for node_id in list(self.beats):
            await self.silence(node_id)
        for channel in self.channels.values():
            await channel.close()


@pytest.fixture
def channel(core_channel):
    return core_channel


@pytest.fixture
async def nodes(core, channel):
    fleet = Nodes(core)
    yield fleet
    await fleet.close()


@pytest.fixture
def wf(channel) -> wf_grpc.WorkflowServiceStub:
    return wf_grpc.WorkflowServiceStub(channel)


def placed(workflow: wf_pb2.Workflow) -> dict[str, tuple[str, int]]:
    return {p.step_id: (p.node_id, p.role) for p in workflow.placement}


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_apply_places_steps_on_roles_least_loaded_and_cell(nodes, wf):
    await nodes.up(node("edge-a", EDGE, ("cell-1",)))
    await nodes.up(node("edge-b", EDGE, ("cell-2",)), load(queue=1))
    await nodes.up(node("cloud-a", CLOUD), load(queue=4, p50_ms=10))
    await nodes.up(node("cloud-b", CLOUD), load(p50_ms=100))

    workflow = (await wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=chat_spec()), timeout=5)).workflow
    assert placed(workflow) == {"desensitise": ("edge-a", EDGE), "personalise": ("edge-a", EDGE),
                                "route": ("edge-a", EDGE), "generate": ("cloud-b", CLOUD), "post": ("edge-a", EDGE)}
    assert [p.step_id for p in workflow.placement] == ["desensitise", "personalise", "route", "generate", "post"]
    assert workflow.placement[0].node_address == "127.0.0.1:1006"
    # step costs 5 + 40 + 2 + 600 + 5, cloud-b's p50 first token 100, two edge<->cloud hops of 20
    assert workflow.estimated_latency_ms == pytest.approx(792.0)
    assert list(workflow.critical_path) == ["desensitise", "personalise", "route", "generate", "post"]
    assert workflow.placed_at.seconds > 0 and not workflow.placement_error

    in_cell_2 = chat_spec(name="chat-cell-2", cell_id="cell-2")
    workflow = (await wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=in_cell_2), timeout=5)).workflow
    assert {p.node_id for p in workflow.placement if p.role == EDGE} == {"edge-b"}

    listed = (await wf.ListWorkflows(wf_pb2.ListWorkflowsRequest(), timeout=5)).workflows
    assert [w.spec.name for w in listed] == ["chat", "chat-cell-2"]
    fetched = (await wf.GetWorkflow(wf_pb2.GetWorkflowRequest(name="chat"), timeout=5)).workflow
    assert fetched.spec == chat_spec()


def bad(**changes) -> wf_pb2.WorkflowSpec:
    spec = chat_spec()
    for key, value in changes.items():
        spec.ClearField(key)
        if isinstance(value, list):
            getattr(spec, key).extend(value)
        else:
            setattr(spec, key, value)
    return spec


@pytest.mark.parametrize("spec, needles", [
    (bad(steps=[wf_pb2.WorkflowStep(id="a", function="route", after=["c"]),
                wf_pb2.WorkflowStep(id="b", function="route", after=["a"]),
                wf_pb2.WorkflowStep(id="c", function="route", after=["b"])]), ["cycle", "a -> b -> c -> a"]),
    (bad(steps=[wf_pb2.WorkflowStep(id="a", function="translate")]), ["'translate'", "generate_cloud", "desensitise"]),
    (bad(steps=[wf_pb2.WorkflowStep(id="a", function="route"), wf_pb2.WorkflowStep(id="a", function="route")]),
     ["duplicate step id 'a'"]),
    (bad(steps=[wf_pb2.WorkflowStep(id="a", function="route", after=["ghost"])]), ["'a'", "ghost"]),
    (bad(steps=[]), ["empty"]),
    (bad(latency_budget_ms=0), ["latency_budget_ms is required"]),
    (bad(priority=0), ["priority is required"]),
    (bad(priority=16), ["priority", "1..15"]),
    (bad(name=""), ["workflow.name is required"]),
])
async def test_bad_spec_is_invalid_argument(wf, spec, needles):
    err = await rpc_error(wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=spec), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    for needle in needles:
        assert needle in err.details()


@pytest.mark.parametrize("text, needle", [
    ("[workflow\nname = 1", "not valid TOML"),
    ('[workflow]\nname = "w"\nlatency_budget_ms = -5\npriority = 1\n'
     '[[workflow.steps]]\nid = "a"\nfunction = "route"\n', "latency_budget_ms must be within 1.."),
    ('[workflow]\nname = "w"\nlatency_budget_ms = 100\npriority = 1\n', "empty"),
    ('[workflow]\nname = "w"\nlatency_budget_ms = 100\npriority = 1\n'
     '[[workflow.steps]]\nid = "a"\nfunction = "route"\nafter = ["a"]\n', "cycle: a -> a"),
    ('[workflow]\nname = "w"\nlatency_budget = 100\npriority = 1\n', "unknown key(s) ['latency_budget']"),
])
async def test_bad_toml_is_invalid_argument(wf, text, needle):
    err = await rpc_error(wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec_toml=text), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.details(), err.details()


async def test_request_without_spec_is_invalid_argument(wf):
    err = await rpc_error(wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "spec_toml" in err.details()


async def test_impossible_placement_is_failed_precondition_and_not_stored(nodes, wf):
    await nodes.up(node("edge-a", EDGE, ("cell-1",)))
    err = await rpc_error(wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=chat_spec()), timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'generate'" in err.details() and "cloud" in err.details()

    err = await rpc_error(wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=chat_spec(cell_id="cell-9")), timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "cell-9" in err.details()

    await nodes.up(node("cloud-a", CLOUD), load(p50_ms=3000))  # measured first token alone blows the budget
    err = await rpc_error(wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=chat_spec()), timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "latency budget of 2000 ms" in err.details() and "3692 ms" in err.details()

    err = await rpc_error(wf.GetWorkflow(wf_pb2.GetWorkflowRequest(name="chat"), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def get(wf: wf_grpc.WorkflowServiceStub, name: str) -> wf_pb2.Workflow:
    return (await wf.GetWorkflow(wf_pb2.GetWorkflowRequest(name=name), timeout=5)).workflow


async def poll(wf: wf_grpc.WorkflowServiceStub, name: str, check, what: str, timeout_s: float = 10) -> wf_pb2.Workflow:
    last: list[wf_pb2.Workflow] = []

    async def checked() -> wf_pb2.Workflow | None:
        last[:] = [await get(wf, name)]
        return last[0] if check(last[0]) else None

    return await eventually(checked, lambda: f"{what}; last: {last[0]}", timeout_s, poll_s=0.05)


async def test_stale_node_is_replaced_then_unplaceable_then_back(nodes, wf):
    await nodes.up(node("edge-a", EDGE, ("cell-1",)))
    await nodes.up(node("cloud-a", CLOUD))
    await nodes.up(node("cloud-b", CLOUD), load(queue=3))
    workflow = (await wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=chat_spec()), timeout=5)).workflow
    assert placed(workflow)["generate"] == ("cloud-a", CLOUD)

    await nodes.silence("cloud-a")
    moved = await poll(wf, "chat", lambda w: placed(w).get("generate", ("",))[0] == "cloud-b", "move to cloud-b")
    assert placed(moved)["desensitise"] == ("edge-a", EDGE) and not moved.placement_error

    await nodes.silence("cloud-b")
    lost = await poll(wf, "chat", lambda w: bool(w.placement_error), "placement error")
    assert not lost.placement and "'generate'" in lost.placement_error and "cloud" in lost.placement_error
    assert lost.spec.name == "chat"

    await nodes.up(node("cloud-a", CLOUD))  # re-registers
    back = await poll(wf, "chat", lambda w: not w.placement_error, "placement again")
    assert placed(back)["generate"] == ("cloud-a", CLOUD)


async def test_unknown_names_are_not_found_and_delete(nodes, wf):
    for call in (wf.GetWorkflow(wf_pb2.GetWorkflowRequest(name="nope"), timeout=5),
                 wf.DeleteWorkflow(wf_pb2.DeleteWorkflowRequest(name="nope"), timeout=5)):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND
    await nodes.up(node("edge-a", EDGE, ("cell-1",)))
    await nodes.up(node("cloud-a", CLOUD))
    await wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=chat_spec()), timeout=5)
    await wf.DeleteWorkflow(wf_pb2.DeleteWorkflowRequest(name="chat"), timeout=5)
    assert (await rpc_error(wf.GetWorkflow(wf_pb2.GetWorkflowRequest(name="chat"), timeout=5))).code() \
        == grpc.StatusCode.NOT_FOUND
    assert not (await wf.ListWorkflows(wf_pb2.ListWorkflowsRequest(), timeout=5)).workflows


async def test_example_file_applies(nodes, wf):
    await nodes.up(node("edge-a", EDGE, ("cell-1",)))
    await nodes.up(node("cloud-a", CLOUD))
    request = wf_pb2.ApplyWorkflowRequest(spec_toml=EXAMPLE.read_text())
    workflow = (await wf.ApplyWorkflow(request, timeout=5)).workflow
    assert workflow.spec.name == "personalised-chat" and workflow.spec.latency_budget_ms == 2000
    assert [(p.function, p.node_id) for p in workflow.placement] == [
        ("desensitise", "edge-a"), ("personalise", "edge-a"), ("route", "edge-a"),
        ("generate_cloud", "cloud-a"), ("post_process", "edge-a")]


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="netgpt")
    cli_workflow.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


async def test_cli_apply_and_show(core, nodes, capsys):
    await nodes.up(node("edge-a", EDGE, ("cell-1",)))
    await nodes.up(node("cloud-a", CLOUD))
    # the CLI runs its own event loop (asyncio.run), so it runs in a thread beside the core's loop
    assert await asyncio.to_thread(cli, "workflow", "apply", str(EXAMPLE), "--core", core.address) == 0
    applied = capsys.readouterr().out
    assert "workflow personalised-chat: budget 2000 ms" in applied
    assert "generate         generate_cloud   cloud  cloud-a" in applied

    assert await asyncio.to_thread(cli, "workflow", "show", "personalised-chat", "--core", core.address) == 0
    shown = capsys.readouterr().out
    assert "desensitise -> personalise -> route -> generate -> post-process" in shown
    assert shown.count("edge-a") == 4 and "STEP" in shown
    assert await asyncio.to_thread(cli, "workflow", "show", "--core", core.address) == 0
    assert "personalised-chat" in capsys.readouterr().out

    with pytest.raises(grpc.aio.AioRpcError) as err:  # cli.main turns this into exit status 1
        await asyncio.to_thread(cli, "workflow", "show", "nope", "--core", core.address)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert await asyncio.to_thread(cli, "workflow", "apply", "/no/such.toml", "--core", core.address) == 2


def status(node_id: str, role: int, slots: int, queue: int, p50_ms: float = 0.0) -> common_pb2.NodeStatus:
    return common_pb2.NodeStatus(info=node(node_id, role, ("cell-1",) if role == EDGE else (), slots),
                                 load=load(queue, p50_ms), health=common_pb2.NODE_HEALTH_SERVING)


def test_placement_weighs_load_by_slots_and_trades_load_for_budget():
    workflow = parse_toml(EXAMPLE.read_text())
    fleet = [status("edge-big", EDGE, slots=8, queue=2), status("edge-small", EDGE, slots=1, queue=1),
             status("cloud-busy-fast", CLOUD, slots=2, queue=1, p50_ms=100),
             status("cloud-idle-slow", CLOUD, slots=2, queue=0, p50_ms=1500)]
    result = place(workflow, fleet)
    assert result.node_of("personalise") == "edge-big"  # 2 of 8 slots beats 1 of 1
    assert result.node_of("generate") == "cloud-busy-fast"  # the idle cloud would miss the 2000 ms budget
    relaxed = place(dataclasses.replace(workflow, latency_budget_ms=5000), fleet)
    assert relaxed.node_of("generate") == "cloud-idle-slow"
    stale = list(fleet)
    stale[2] = common_pb2.NodeStatus(info=fleet[2].info, load=fleet[2].load, health=common_pb2.NODE_HEALTH_STALE)
    with pytest.raises(FailedPrecondition, match="latency budget"):
        place(workflow, stale)

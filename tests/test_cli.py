"""The ``netgpt`` command line as a package: the parser, enum choices that match the protos, one
default core address, one error path, and a ``--help`` that imports no model runtime."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from daemons import client_env

from cli import ask, model, nodes, policy
from cli.common import DEFAULT_CORE, enum_choices
from cli.main import COMMAND_GROUPS, build_parser, main
from netgpt.config import CloudConfig, EdgeConfig
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.words import enum_word

NETGPT = [sys.executable, "-m", "cli"]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def leaves(parser: argparse.ArgumentParser,
           path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command: ``("model", "deploy")`` and its parser."""
    if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        yield path, parser
        return
    for name, child in subparsers(parser).items():
        yield from leaves(child, (*path, name))


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_parser_builds_every_command_group():
    parser = build_parser()
    assert list(subparsers(parser)) == ["core", "cloud", "edge", "ask", "nodes", "policy", "model", "workflow", "data",
                                        "train", "dataset", "eval", "intent", "popularity", "pki", "token", "demo",
                                        "ran-sim"]
    assert all(callable(getattr(group, "add_commands", None)) for group in COMMAND_GROUPS)
    for path, leaf in leaves(parser):
        assert leaf.get_default("run") is not None, path


def values(enum, *drop: int) -> set[int]:
    return set(enum.values()) - {0, *drop}


def test_enum_choices_are_the_proto_values():
    assert ask.TASKS == {enum_word(up_pb2.TaskClass, v): v for v in values(up_pb2.TaskClass)}
    assert policy.TASKS == ask.TASKS
    routes = {enum_word(up_pb2.RoutePreference, v): v for v in values(up_pb2.RoutePreference)}
    assert ask.ROUTES == {"auto": 0, **routes}
    assert model.KINDS == {enum_word(common_pb2.ModelKind, v, sep="-"): v for v in values(common_pb2.ModelKind)}
    assert "onnx-edge" in model.KINDS and "lora-adapter" in model.KINDS
    roles = {enum_word(common_pb2.NodeRole, v): v for v in values(common_pb2.NodeRole, common_pb2.NODE_ROLE_CORE)}
    assert model.ROLES == {"auto": 0, **roles} and nodes.ROLES == {"all": 0, **roles}


def test_flags_offer_exactly_those_choices():
    commands = dict(leaves(build_parser()))
    assert {ask.TASKS[c] for c in option(commands["ask",], "--task").choices} == values(up_pb2.TaskClass)
    assert {ask.ROUTES[c] for c in option(commands["ask",], "--route").choices} == set(up_pb2.RoutePreference.values())
    assert {model.KINDS[c] for c in option(commands["model", "publish"], "--kind").choices} == \
        values(common_pb2.ModelKind)
    assert set(option(commands["model", "deploy"], "--role").choices) == set(model.ROLES)
    assert set(option(commands["nodes",], "--role").choices) == set(nodes.ROLES)


def test_policy_tasks_parse_as_proto_values_and_refuse_unknown_words(capsys):
    parser = build_parser()
    assert parser.parse_args(["policy", "set"]).edge_tasks is None  # not named: not changed
    assert parser.parse_args(["policy", "set", "--edge-tasks", "lookup, CHAT"]).edge_tasks == \
        [up_pb2.TASK_CLASS_LOOKUP, up_pb2.TASK_CLASS_CHAT]
    assert parser.parse_args(["policy", "set", "--edge-tasks", ""]).edge_tasks == []
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["policy", "set", "--edge-tasks", "lookup,gossip"])
    assert exit_.value.code == 2 and "'gossip'" in capsys.readouterr().err


def test_enum_choices_helper():
    assert enum_choices(common_pb2.NodeRole) == {"core": 1, "edge": 2, "cloud": 3}
    assert enum_choices(common_pb2.NodeRole, unspecified="any", exclude={"core"}) == {"any": 0, "edge": 2, "cloud": 3}


def test_one_default_core_address():
    assert DEFAULT_CORE == CloudConfig().core == EdgeConfig().core
    with_core = {path: option(leaf, "--core").default for path, leaf in leaves(build_parser())
                 if any("--core" in a.option_strings for a in leaf._actions)}
    daemons = {("cloud",), ("edge",)}  # their --core overrides the config (default None: not given)
    assert daemons <= set(with_core) and all(with_core[d] is None for d in daemons)
    clients = {path: default for path, default in with_core.items() if path not in daemons}
    assert {("ask",), ("nodes",), ("policy", "set"), ("model", "deploy"), ("workflow", "show")} <= set(clients)
    assert set(clients.values()) == {DEFAULT_CORE}


def test_ask_takes_a_workflow():
    args = build_parser().parse_args(["ask", "hello", "--workflow", "personalised-chat"])
    assert args.workflow == "personalised-chat"
    assert build_parser().parse_args(["ask", "hello"]).workflow == ""


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["workflow", "apply", "/no/such.toml", "--core", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["netgpt workflow apply: error: no such file '/no/such.toml'"]


@pytest.fixture
def closed_port() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("argv, command", [
    (["nodes"], "nodes"), (["ask", "hello", "--timeout", "3"], "ask"), (["policy", "show"], "policy show"),
    (["model", "list"], "model list"), (["workflow", "show"], "workflow show"),
])
def test_unreachable_core_is_one_unavailable_line_and_exit_1(closed_port, argv, command):
    result = subprocess.run([*NETGPT, *argv, "--core", closed_port], capture_output=True, text=True, timeout=60,
                            env=client_env())
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"netgpt {command}: UNAVAILABLE: "), result.stderr
    assert result.stdout == ""


def test_help_imports_no_model_runtime():
    probe = ("import sys\n"
             "from cli.main import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
             "for command in ('core', 'cloud', 'edge', 'ask', 'nodes', 'model', 'demo'):\n"
             "    try:\n        main([command, '--help'])\n    except SystemExit:\n        pass\n"
             "heavy = sorted(m for m in ('torch', 'onnxruntime', 'transformers', 'onnx', 'peft') if m in sys.modules)\n"
             "print('HEAVY', heavy, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr, result.stderr

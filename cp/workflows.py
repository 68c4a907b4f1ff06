"""Workflow specs: a DAG of known AI functions with QoS, parsed from TOML and validated.

Pure domain (no gRPC): every mistake in a spec is an :class:`InvalidArgument` whose
message names what is wrong, because the author of a TOML file reads it verbatim.
"""

from __future__ import annotations

import graphlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netgpt.errors import InvalidArgument, excerpt
from netgpt.v1 import common_pb2
from netgpt.validate import check_id

EDGE = common_pb2.NODE_ROLE_EDGE
CLOUD = common_pb2.NODE_ROLE_CLOUD

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_STEPS = 64
MAX_PRIORITY = 15
MAX_BUDGET_MS = 3_600_000
MAX_TOML_CHARS = 64 * 1024
MAX_TOML_NESTING = 8  # arrays and inline tables inside each other; a workflow needs 2 ([[workflow.steps]])


# What a request carries from step to step (cp/workflow_dataflow.py checks who writes what; the edge's
# edge_node/serving/workflow_state.py holds them): names, and how an error message says them.
PROMPT, REDACTIONS, ROUTE, ANSWER = "prompt", "redactions", "route", "answer"
FIELDS: dict[str, str] = {PROMPT: "the prompt", REDACTIONS: "the redaction counts",
                          ROUTE: "the routing decision", ANSWER: "the answer"}


@dataclass(frozen=True)
class Function:
    """An AI function the core knows how to place, and its contract as a step.

    ``roles`` are in order of preference; ``cost_ms`` is the placement estimate of one
    run, to which a generation step adds the chosen node's measured p50 first-token time.
    ``reads``/``writes``: the request fields (:data:`FIELDS`) the step takes from the steps it
    runs after, and the ones it hands on; ``needs``: reads that some earlier step must have written.
    """

    name: str
    roles: tuple[int, ...]
    cost_ms: float
    generates: bool = False
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    # masks the prompt as it stands when the step runs (the concise one, or a comprehensive one)
    Function("desensitise", (EDGE,), 5.0, reads=(PROMPT, REDACTIONS), writes=(PROMPT, REDACTIONS)),
    Function("personalise", (EDGE,), 40.0, reads=(PROMPT,), writes=(PROMPT,)),
    Function("route", (EDGE,), 2.0, reads=(PROMPT,), writes=(ROUTE,)),
    # the generation steps are alternatives: the one on the routed side answers (reading ANSWER: a
    # generation step after one that answered has nothing to do)
    Function("generate_edge", (EDGE,), 150.0, generates=True, reads=(PROMPT, ROUTE, ANSWER), writes=(ANSWER,)),
    Function("generate_cloud", (CLOUD,), 600.0, generates=True, reads=(PROMPT, ROUTE, ANSWER), writes=(ANSWER,)),
    # the answer goes back to the UE through the edge, so post-process there when possible
    Function("post_process", (EDGE, CLOUD), 5.0, reads=(ANSWER,), writes=(ANSWER,), needs=(ANSWER,)),
)}


@dataclass(frozen=True)
class Step:
    id: str
    function: str
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workflow:
    """A validated workflow: ``steps`` are in topological order (declaration order among ready steps)."""

    name: str
    latency_budget_ms: int
    priority: int
    steps: tuple[Step, ...]
    cell_id: str = ""

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


def parse_toml(text: str) -> Workflow:
    """A workflow from TOML text: a ``[workflow]`` table with ``[[workflow.steps]]``."""
    if len(text) > MAX_TOML_CHARS:
        raise InvalidArgument(f"workflow spec is {len(text)} characters; the limit is {MAX_TOML_CHARS}")
    depth = toml_nesting(text)
    if depth > MAX_TOML_NESTING:
        raise InvalidArgument(f"workflow spec nests arrays or inline tables {depth} deep; the limit is "
                              f"{MAX_TOML_NESTING}")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"workflow spec is not valid TOML: {exc}") from exc
    except RecursionError as exc:  # the nesting count above is a scan, not a parse: never INTERNAL
        raise InvalidArgument("workflow spec nests too deeply to parse") from exc
    if set(document) != {"workflow"} or not isinstance(document["workflow"], dict):
        found = ", ".join(excerpt(key, 32) for key in sorted(document)[:8])
        raise InvalidArgument(f"workflow spec must hold exactly one [workflow] table; found [{found}]")
    return from_mapping(document["workflow"])


def toml_nesting(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text`` outside strings and comments (table headers
    count: ``[[workflow.steps]]`` is 2). A scan, so a hostile document costs one pass, not a recursion."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "\"'":
            i = _string_end(text, i)
            continue
        if char == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
            continue
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return deepest


def _string_end(text: str, start: int) -> int:
    """The index after the string that opens at ``start`` (basic, literal, or either multi-line form)."""
    quote = text[start]
    if text.startswith(quote * 3, start):
        end = text.find(quote * 3, start + 3)
        return len(text) if end < 0 else end + 3
    i = start + 1
    while i < len(text) and text[i] not in (quote, "\n"):
        i += 2 if quote == '"' and text[i] == "\\" else 1
    return i + 1


def from_mapping(spec: Mapping[str, Any]) -> Workflow:
    """Validate a workflow given as plain data (from TOML, or converted from protobuf)."""
    _no_unknown_keys(spec, {"name", "latency_budget_ms", "priority", "cell_id", "steps"}, "workflow")
    name = _name(spec.get("name"), "workflow.name")
    budget = _int(spec, "latency_budget_ms", 1, MAX_BUDGET_MS)
    priority = _int(spec, "priority", 1, MAX_PRIORITY)
    cell_id = spec.get("cell_id", "")
    if not isinstance(cell_id, str):
        raise InvalidArgument("workflow.cell_id must be a string")
    check_id(cell_id, "workflow.cell_id")
    raw_steps = spec.get("steps", [])
    if not isinstance(raw_steps, list) or not all(isinstance(s, Mapping) for s in raw_steps):
        raise InvalidArgument("workflow.steps must be a list of tables ([[workflow.steps]])")
    if not raw_steps:
        raise InvalidArgument(f"workflow {name!r} is empty: it needs at least one [[workflow.steps]]")
    if len(raw_steps) > MAX_STEPS:
        raise InvalidArgument(f"workflow {name!r} has {len(raw_steps)} steps; at most {MAX_STEPS}")
    steps = [_step(raw, i) for i, raw in enumerate(raw_steps)]
    return Workflow(name=name, latency_budget_ms=budget, priority=priority, steps=_ordered(steps), cell_id=cell_id)


def to_mapping(workflow: Workflow) -> dict[str, Any]:
    """The plain data :func:`from_mapping` reads back into the same workflow (steps in topological order)."""
    return {"name": workflow.name, "latency_budget_ms": workflow.latency_budget_ms, "priority": workflow.priority,
            "cell_id": workflow.cell_id,
            "steps": [{"id": s.id, "function": s.function, "after": list(s.after)} for s in workflow.steps]}


def _step(raw: Mapping[str, Any], index: int) -> Step:
    where = f"workflow.steps[{index}]"
    _no_unknown_keys(raw, {"id", "function", "after"}, where)
    step_id = _name(raw.get("id"), f"{where}.id")
    function = raw.get("function")
    if not isinstance(function, str) or not function:
        raise InvalidArgument(f"step {step_id!r} needs a function; known functions: {sorted(FUNCTIONS)}")
    if function not in FUNCTIONS:
        raise InvalidArgument(f"step {step_id!r} uses unknown function {excerpt(function)}; "
                              f"known functions: {sorted(FUNCTIONS)}")
    after = raw.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise InvalidArgument(f"step {step_id!r}: after must be a list of step ids")
    return Step(id=step_id, function=function, after=tuple(dict.fromkeys(after)))


def _ordered(steps: list[Step]) -> tuple[Step, ...]:
    """Topological order, stable by declaration; names the steps of a cycle if there is one."""
    by_id: dict[str, Step] = {}
    for step in steps:
        if step.id in by_id:
            raise InvalidArgument(f"duplicate step id {step.id!r}")  # ids are checked names: short
        by_id[step.id] = step
    for step in steps:
        missing = [a for a in step.after if a not in by_id]
        if missing:
            raise InvalidArgument(f"step {step.id!r} runs after unknown step(s) "
                                  f"[{', '.join(excerpt(m, 32) for m in missing[:4])}]; steps: {list(by_id)}")
    sorter = graphlib.TopologicalSorter({s.id: s.after for s in steps})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise InvalidArgument(f"workflow has a cycle: {' -> '.join(cycle)} "
                              "(each step runs after the one before it)") from exc
    position = {s.id: i for i, s in enumerate(steps)}
    ordered: list[Step] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        ordered.extend(by_id[r] for r in ready)
        sorter.done(*ready)
    return tuple(ordered)


def _no_unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidArgument(f"{where} has unknown key(s) [{', '.join(excerpt(k, 32) for k in unknown[:4])}]; "
                              f"allowed: {sorted(allowed)}")


def _name(value: object, where: str) -> str:
    if not value:
        raise InvalidArgument(f"{where} is required")
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidArgument(f"{where} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}; got {excerpt(value)}")
    return value


def _int(spec: Mapping[str, Any], key: str, low: int, high: int) -> int:
    if key not in spec:
        raise InvalidArgument(f"workflow.{key} is required ({low}..{high})")
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"workflow.{key} must be an integer; got {excerpt(repr(value))}")
    if not low <= value <= high:
        raise InvalidArgument(f"workflow.{key} must be within {low}..{high}; got {value}")
    return value

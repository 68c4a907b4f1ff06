"""Who writes what in a workflow: the checks that make a DAG of steps run the same way every time.

A step reads the request fields (:data:`cp.workflows.FIELDS`) as the steps it runs after left
them, and hands on what it writes. So that the answer never depends on which of two
concurrent steps finished first, and every generation step streams from the final prompt:

- two steps that write the same field run one after the other (the generation steps are
  exempt among themselves: they are alternatives, only the routed side answers);
- every step that writes what a generation step generates from runs before it;
- a step that needs a field (post_process: the answer) runs after a step that writes it;
- something generates the answer.

The core checks this when a workflow is applied (INVALID_ARGUMENT) and the edge again when it
plans a request (a workflow stored before these checks existed fails there, never half-runs).
"""

from __future__ import annotations

import graphlib
from collections.abc import Sequence

from cp.workflows import FIELDS, FUNCTIONS, Function, Step
from netgpt.errors import InvalidArgument


def ancestors(steps: Sequence[Step]) -> dict[str, frozenset[str]]:
    """Every step's id → the ids of all steps it runs after, directly or through others (steps form a DAG)."""
    by_id = {step.id: step for step in steps}
    found: dict[str, frozenset[str]] = {}
    for step_id in graphlib.TopologicalSorter({s.id: s.after for s in steps}).static_order():
        after = by_id[step_id].after
        found[step_id] = frozenset(after).union(*(found[a] for a in after))
    return found


def check_dataflow(steps: Sequence[Step]) -> None:
    """InvalidArgument naming the steps and the field when ``steps`` break a rule of the module doc."""
    before = ancestors(steps)
    function = {step.id: FUNCTIONS[step.function] for step in steps}
    generating = [step for step in steps if function[step.id].generates]
    if not generating:
        raise InvalidArgument("the workflow has no generate_edge or generate_cloud step: nothing would answer "
                              "the request")
    for i, first in enumerate(steps):
        for second in steps[i + 1:]:
            _check_writers(first, second, function, before)
    for step in generating:
        _check_inputs_final(step, steps, function, before)
    for step in steps:
        for field in function[step.id].needs:
            if not any(field in function[a].writes for a in before[step.id]):
                writers = [f.name for f in FUNCTIONS.values() if field in f.writes and field not in f.needs]
                raise InvalidArgument(f"step {step.id!r} ({step.function}) needs {FIELDS[field]}, which no step "
                                      f"before it writes: run it after a {' or '.join(writers)} step")


def _check_writers(first: Step, second: Step, function: dict[str, Function],
                   before: dict[str, frozenset[str]]) -> None:
    if first.id in before[second.id] or second.id in before[first.id]:
        return
    if function[first.id].generates and function[second.id].generates:
        return  # alternatives: only the side the request is routed to answers
    shared = [field for field in function[first.id].writes if field in function[second.id].writes]
    if shared:
        raise InvalidArgument(f"steps {first.id!r} ({first.function}) and {second.id!r} ({second.function}) both "
                              f"write {FIELDS[shared[0]]} and neither runs after the other: add one to the "
                              "other's after")


def _check_inputs_final(generation: Step, steps: Sequence[Step], function: dict[str, Function],
                        before: dict[str, frozenset[str]]) -> None:
    """Every writer of what ``generation`` generates from (what it reads and does not write) runs before it."""
    inputs = [f for f in function[generation.id].reads if f not in function[generation.id].writes]
    for step in steps:
        written = [f for f in inputs if f in function[step.id].writes]
        if written and step.id not in before[generation.id]:
            raise InvalidArgument(f"step {step.id!r} ({step.function}) writes {FIELDS[written[0]]}, which step "
                                  f"{generation.id!r} ({generation.function}) generates from, so it must run "
                                  f"before it: add {step.id!r} to the after of {generation.id!r} (directly or "
                                  "through another step)")

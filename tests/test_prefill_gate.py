"""Prompts first (``prefill_first``): a decode step that starts while a prompt is prefilled waits for it, and
the order changes no token."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.model.prefill_gate import PrefillGate
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.tiny_models import TinyModels


def test_a_decode_step_waits_for_a_running_prefill() -> None:
    gate, order, prefilling, release = PrefillGate(), [], threading.Event(), threading.Event()

    def prefill() -> None:
        with gate.prefill():
            prefilling.set()
            release.wait(5)
            order.append("prefill done")

    def step() -> None:
        prefilling.wait(5)
        gate.before_step()
        order.append("step")

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(prefill), pool.submit(step)]
        prefilling.wait(5)
        threading.Event().wait(0.05)  # the step is waiting by now, not running
        assert order == []
        release.set()
        for future in done:
            future.result(5)
    assert order == ["prefill done", "step"] and gate.held_steps == 1
    gate.before_step()  # nothing prefilling: no wait
    assert gate.held_steps == 1


@pytest.mark.parametrize("max_batch", [1, 4])  # one session per step, and batched decode steps
def test_concurrent_requests_get_the_same_tokens_with_and_without_the_gate(tiny: TinyModels, max_batch: int) -> None:
    prompts = [[5, 6, 7, 8, 9, 10] * k for k in (1, 3, 5, 7)]
    params = SamplingParams(max_new_tokens=12)

    def tokens(model: OrtGpt2Model) -> list[list[int]]:
        def one(ids: list[int]) -> list[int]:
            return [p.token_id for p in generate_tokens(model.new_session(), model.tokenizer, ids, params)]

        with ThreadPoolExecutor(len(prompts)) as pool:
            return list(pool.map(one, prompts))

    free = OrtGpt2Model.load(tiny.gpt2_dir, providers="cpu", max_batch=max_batch)
    gated = OrtGpt2Model.load(tiny.gpt2_dir, providers="cpu", max_batch=max_batch, prefill_first=True)
    assert not free.gate.enabled and gated.gate.enabled
    assert tokens(gated) == tokens(free)

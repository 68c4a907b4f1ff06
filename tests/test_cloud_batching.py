"""Cloud continuous batching: shared forward passes, mixed LoRA adapters, per-request sampling,
cancellation within a step, QoS admission order, KV budget, and the gRPC path with hot swap."""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing

import grpc
import pytest
import torch
from harness import start_cluster
from helpers import eventually

from cloud_node.adapter_model import LlamaAdapter
from cloud_node.batching_runner import BatchingRunner
from cloud_node.daemon import cloud_runner
from cloud_node.llama_engine import LlamaModel
from cloud_node.lora import make_lora_adapter
from cloud_node.packed_forward import PackedLlama, Segment
from cloud_node.scheduler import BatchScheduler
from netgpt.channels import open_channel
from netgpt.config import CloudConfig
from netgpt.engine import LanguageModel
from netgpt.errors import ResourceExhausted
from netgpt.generation import SamplingParams, StartConstraint, generate_tokens
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from up.runner import GenerationRunner

PROMPTS = ["the quick brown fox", "radio access network", "hello", "where is the harbour", "a b c d e f",
           "mobile edge computing", "location based", "user plane"]
GREEDY = SamplingParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def base(tiny) -> LlamaModel:
    return LlamaModel.load(tiny.llama_dir, device="cpu")


@pytest.fixture(scope="module")
def adapters(tiny, base: LlamaModel, tmp_path_factory) -> list[LlamaAdapter]:
    root = tmp_path_factory.mktemp("adapters")
    return [base.adapter_view(make_lora_adapter(tiny.llama_dir, root / f"a{seed}", seed=seed), f"lora-{seed}", "v1")
            for seed in (3, 4, 5)]


def ids_of(model: LanguageModel, prompt: str) -> list[int]:
    return model.tokenizer.encode(prompt, add_special_tokens=False)


def alone(model: LanguageModel, prompt: str, params: SamplingParams = GREEDY) -> list[int]:
    """The request decoded by itself on a single-sequence session (batch of one)."""
    session = model.new_packed_session() if isinstance(model, LlamaModel) else model.new_session()
    return [p.token_id for p in generate_tokens(session, model.tokenizer, ids_of(model, prompt), params)]


async def collect(runner: BatchingRunner, model: LanguageModel, prompt: str, params: SamplingParams = GREEDY,
                  priority: int = 0) -> list[int]:
    async with aclosing(runner.stream(model, ids_of(model, prompt), params, priority)) as pieces:
        return [piece.token_id async for piece in pieces]


def batching(base: LlamaModel, **overrides) -> BatchingRunner:
    settings = {"max_batch": 16, "max_batch_tokens": 256, "kv_cache_mb": 64.0, "max_queue": 64, **overrides}
    return BatchingRunner(BatchScheduler(base.packed, **settings))


async def test_concurrent_mixed_adapter_requests_match_decoding_each_alone(base, adapters):
    runner = batching(base)
    try:
        models: list[LanguageModel] = [base, *adapters]
        jobs = [(models[i % len(models)], prompt) for i, prompt in enumerate(PROMPTS)]
        batched = await asyncio.gather(*(collect(runner, model, prompt) for model, prompt in jobs))
    finally:
        runner.shutdown()
    assert batched == [alone(model, prompt) for model, prompt in jobs]
    assert runner.scheduler.largest_batch > 1  # the requests really shared forward passes
    assert len({tuple(tokens) for tokens in batched[:4]}) == 4  # adapters change the answers


def test_single_sequence_packed_engine_matches_hf_generate_and_peft(tiny, base, adapters):
    """Batch-of-one on the packed engine = the serialised HF engine (and peft for an adapter)."""
    peft_model = LlamaModel.load(tiny.llama_dir, adapter_dir=adapters[0].adapter_dir, device="cpu")
    for prompt in PROMPTS[:3]:
        serial = [p.token_id for p in generate_tokens(base.new_session(), base.tokenizer, ids_of(base, prompt), GREEDY)]
        assert alone(base, prompt) == serial
        serial = [p.token_id for p in generate_tokens(peft_model.new_session(), base.tokenizer,
                                                      ids_of(base, prompt), GREEDY)]
        assert alone(adapters[0], prompt) == serial == alone(peft_model, prompt)


async def test_each_request_keeps_its_own_sampling_and_stop_conditions(base, adapters):
    params = [SamplingParams(max_new_tokens=10, temperature=0.9, top_k=40, top_p=0.9, seed=seed) for seed in range(4)]
    params.append(SamplingParams(max_new_tokens=3))
    runner = batching(base)
    try:
        batched = await asyncio.gather(*(collect(runner, adapters[i % 2], PROMPTS[i], p) for i, p in enumerate(params)))
    finally:
        runner.shutdown()
    assert batched == [alone(adapters[i % 2], PROMPTS[i], p) for i, p in enumerate(params)]
    assert len(batched[-1]) == 3


async def test_long_prompts_are_prefilled_in_chunks_with_identical_tokens(base):
    long_prompt = " ".join(PROMPTS * 3)
    runner = batching(base, max_batch_tokens=16)
    try:
        got = await asyncio.gather(collect(runner, base, long_prompt), collect(runner, base, PROMPTS[0]))
    finally:
        runner.shutdown()
    assert len(ids_of(base, long_prompt)) > 16
    assert got == [alone(base, long_prompt), alone(base, PROMPTS[0])]


async def test_a_shared_prompt_beginning_is_prefilled_once_with_identical_tokens(base, adapters):
    """Prefix reuse: the second request copies the first's keys and values for their common whole blocks
    and prefills only the rest; every answer is the one decoded alone. Adapters never share blocks."""
    preamble = " ".join(PROMPTS * 2)  # well over two 16-token blocks
    prompts = [f"{preamble} {ending}" for ending in ("hello", "user plane", "hello")]
    runner = batching(base, prefix_cache_mb=4.0)
    prefixes = runner.scheduler.prefixes
    assert prefixes is not None
    try:
        got = [await collect(runner, base, prompt) for prompt in prompts]
        reused_by_base = prefixes.stats.reused_tokens
        on_adapter = await collect(runner, adapters[0], prompts[0])
    finally:
        runner.shutdown()
    assert got == [alone(base, prompt) for prompt in prompts] and on_adapter == alone(adapters[0], prompts[0])
    shared = len(ids_of(base, preamble)) // prefixes.block * prefixes.block
    assert shared >= 32
    # the second and third reuse at least the preamble's whole blocks (the third: all but its last token's block)
    assert reused_by_base >= 2 * shared
    assert prefixes.stats.reused_tokens == reused_by_base  # the adapter's first prompt found nothing of the base's


async def test_the_prefix_cache_stays_within_its_budget(base):
    from cloud_node.prefix_cache import PrefixCache

    budget = PrefixCache(base.packed.cache_shape, 0.01).capacity
    runner = batching(base, prefix_cache_mb=0.01)
    prefixes = runner.scheduler.prefixes
    assert prefixes is not None and budget >= 1
    try:
        for prompt in PROMPTS:
            await collect(runner, base, " ".join([prompt] * 12))
    finally:
        runner.shutdown()
    assert len(prefixes) <= budget and prefixes.stats.evicted_blocks > 0


class HookedPacked(PackedLlama):
    """The real packed engine with a hook after every forward pass (to act between steps deterministically)."""

    after_step: list = []

    def forward(self, segments: list[Segment]) -> torch.Tensor:
        logits = super().forward(segments)
        for hook in self.after_step:
            hook(segments)
        return logits


async def test_cancelled_request_leaves_the_batch_within_one_step(base):
    packed = HookedPacked(base.model, base.torch_device)
    runner = BatchingRunner(BatchScheduler(packed, max_batch=8, max_batch_tokens=64, kv_cache_mb=64.0))
    scheduler = runner.scheduler
    steps_after_cancel: list[int] = []  # per step: running requests already cancelled that still took part

    def count(segments: list[Segment]) -> None:
        caches = {id(segment.cache) for segment in segments}
        steps_after_cancel.append(sum(r.cancel.is_set() and id(r.cache) in caches for r in list(scheduler.running)))

    packed.after_step = [count]
    try:
        other = asyncio.create_task(collect(runner, base, PROMPTS[1], SamplingParams(max_new_tokens=40)))
        pieces = runner.stream(base, ids_of(base, PROMPTS[0]), SamplingParams(max_new_tokens=200))
        await anext(pieces)
        await pieces.aclose()  # the caller went away (deadline or cancel)
        await eventually(lambda: runner.cancelled == 1 and len(scheduler.running) <= 1, "the slot to free")
        assert await other == alone(base, PROMPTS[1], SamplingParams(max_new_tokens=40))
        await eventually(lambda: not scheduler.running and scheduler.budget.reserved == 0, "all reservations freed")
    finally:
        runner.shutdown()
    assert sum(steps_after_cancel) <= 1  # only the step already in flight when the caller left
    assert (runner.active, runner.queued, runner.completed) == (0, 0, 1)


async def test_cancellation_is_checked_during_prefill(base):
    """A caller whose deadline passes while its long prompt is being prefilled stops costing compute."""
    packed = HookedPacked(base.model, base.torch_device)
    runner = BatchingRunner(BatchScheduler(packed, max_batch=4, max_batch_tokens=8, kv_cache_mb=64.0))
    prompt = " ".join(PROMPTS * 4)
    chunks: list[int] = []
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    packed.after_step = [lambda segments: (chunks.append(len(segments[0].ids)),
                                           loop.call_soon_threadsafe(gone.set) if len(chunks) == 1 else None)]
    try:
        task = asyncio.create_task(collect(runner, base, prompt, SamplingParams(max_new_tokens=5)))
        await gone.wait()  # one 8-token chunk of the prompt has run
        task.cancel()
        await eventually(lambda: runner.cancelled == 1 and not runner.scheduler.running, "the prefill to stop")
    finally:
        runner.shutdown()
    assert len(ids_of(base, prompt)) > 8 * 4
    assert len(chunks) <= 2 and sum(chunks) < len(ids_of(base, prompt))  # the rest of the prompt never ran


async def test_higher_qos_priority_is_admitted_first_under_load(base):
    packed = HookedPacked(base.model, base.torch_device)
    release = threading.Event()
    packed.after_step = [lambda _: release.wait(30)]
    runner = BatchingRunner(BatchScheduler(packed, max_batch=1, max_batch_tokens=64, kv_cache_mb=64.0, max_queue=8))
    order: list[str] = []

    async def run(name: str, priority: int) -> None:
        await collect(runner, base, PROMPTS[0], SamplingParams(max_new_tokens=2), priority)
        order.append(name)

    try:
        first = asyncio.create_task(run("first", 0))
        await eventually(lambda: runner.active == 1, "the first request to run")
        later = [asyncio.create_task(run(name, priority)) for name, priority in
                 (("low", 15), ("default", 0), ("high", 1))]
        await eventually(lambda: runner.queued == 3, "three requests to queue")
        release.set()
        await asyncio.gather(first, *later)
    finally:
        release.set()
        runner.shutdown()
    assert order == ["first", "high", "default", "low"]


async def test_kv_budget_bounds_admission_and_oversized_requests_are_refused(base):
    shape = base.packed.cache_shape
    one_request = len(ids_of(base, PROMPTS[0])) + 20
    megabytes = 1.5 * one_request * shape.bytes_per_token / (1 << 20)  # room for one request, not two
    runner = batching(base, kv_cache_mb=megabytes)
    seen: list[int] = []
    try:
        watch = asyncio.create_task(_watch(runner.scheduler, seen))
        params = SamplingParams(max_new_tokens=20)
        got = await asyncio.gather(*(collect(runner, base, PROMPTS[0], params) for _ in range(3)))
        watch.cancel()
        with pytest.raises(ResourceExhausted, match="KV cache budget"):
            await collect(runner, base, PROMPTS[0], SamplingParams(max_new_tokens=10 * one_request))
    finally:
        runner.shutdown()
    assert got == [alone(base, PROMPTS[0], params)] * 3
    assert max(seen) == 1


async def _watch(scheduler: BatchScheduler, seen: list[int]) -> None:
    while True:
        seen.append(len(scheduler.running))
        await asyncio.sleep(0.001)


async def test_batched_bfloat16_matches_its_own_single_sequence_decode(tiny):
    model = LlamaModel.load(tiny.llama_dir, device="cpu", dtype="bfloat16")
    runner = batching(model)
    try:
        got = await asyncio.gather(*(collect(runner, model, p) for p in PROMPTS[:4]))
    finally:
        runner.shutdown()
    assert got == [alone(model, p) for p in PROMPTS[:4]]


def test_serialised_engine_stays_selectable(base):
    serial = cloud_runner(CloudConfig(batching=False), base)
    batched = cloud_runner(CloudConfig(), base)
    try:
        assert type(serial) is GenerationRunner and isinstance(batched, BatchingRunner)
    finally:
        serial.shutdown()
        batched.shutdown()


def comprehensive(prompt: str, tokens: int, priority: int = 0) -> up_pb2.GenerateRequest:
    return up_pb2.GenerateRequest(
        session_id="s-1", kind=up_pb2.PROMPT_KIND_COMPREHENSIVE, prompt=prompt,
        ran=common_pb2.RanContext(cell_id="cell-harbour-1", qos=common_pb2.QoS(priority=priority)),
        params=up_pb2.GenerationParams(max_new_tokens=tokens))


async def test_grpc_requests_share_passes_and_in_flight_ones_keep_their_adapter_across_a_swap(tiny_models, adapters):
    gpt2, llama = tiny_models
    adapter_a, adapter_b = (llama.adapter_view(a.adapter_dir, a.identity.name, "v1") for a in adapters[:2])
    cluster = await start_cluster(gpt2, llama, cloud={"max_batch": 8})
    try:
        slot = cluster.cloud.slot
        slot.swap(type(slot.current)(adapter_a, slot.current.ref))
        async with open_channel(cluster.cloud.address) as channel:
            stub = up_grpc.UserPlaneServiceStub(channel)
            held = stub.Generate(comprehensive(PROMPTS[0], 30), timeout=60)
            first = await held.read()  # running on adapter A
            slot.swap(type(slot.current)(adapter_b, slot.current.ref))
            rest = []
            while (event := await held.read()) != grpc.aio.EOF:
                rest.append(event)
            after = await asyncio.gather(*(_tokens(stub, comprehensive(p, 12)) for p in PROMPTS[:4]))
        on_a = list(first.tokens.token_ids) + [t for e in rest if e.HasField("tokens") for t in e.tokens.token_ids]
        assert on_a == alone(adapter_a, PROMPTS[0], SamplingParams(max_new_tokens=30))
        assert after == [alone(adapter_b, p) for p in PROMPTS[:4]]
        assert isinstance(cluster.cloud.runner, BatchingRunner)
    finally:
        await cluster.stop()


async def _tokens(stub: up_grpc.UserPlaneServiceStub, request: up_pb2.GenerateRequest) -> list[int]:
    try:
        events = [event async for event in stub.Generate(request, timeout=60)]
    except grpc.aio.AioRpcError as exc:  # surfaced with its code in the assertion message
        raise AssertionError(f"{exc.code()}: {exc.details()}") from exc
    return [t for e in events if e.HasField("tokens") for t in e.tokens.token_ids]


async def test_a_start_constraint_runs_on_its_own_and_is_applied(base: LlamaModel) -> None:
    """The batch scheduler applies no start constraint, so a request with one is decoded alone, under it."""
    runner, prompt = batching(base), PROMPTS[0]
    free = await collect(runner, base, prompt)
    forced, steps = [t for t in range(50, 60) if t != free[0]][:2], runner.scheduler.steps
    async with aclosing(runner.stream(base, ids_of(base, prompt), GREEDY, start=StartConstraint([forced]))) as pieces:
        constrained = [piece.token_id async for piece in pieces]
    assert constrained[:2] == forced and runner.scheduler.steps == steps  # decoded, but not by the batch

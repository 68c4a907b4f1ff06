"""Iteration-level (continuous) batching: one thread runs packed forward passes for every request.

At each step boundary the scheduler

1. drops requests whose caller left (deadline, cancel): their cache and slot are free
   before the next pass, so a cancelled request costs at most the step it was in;
2. admits waiting requests, best QoS priority first (then arrival), while fewer than
   ``max_batch`` run and the KV cache budget holds their whole reservation
   (prompt + ``max_new_tokens``; see :mod:`cloud_node.kv_cache`);
3. packs one step: one token for each decoding request, then prompt chunks of the
   prefilling ones, up to ``max_batch_tokens`` tokens in all. A long prompt is prefilled
   over several steps, so running decodes keep flowing and cancellation is checked
   between chunks, not only after the whole prompt. A prompt whose beginning an earlier
   request computed starts from those keys and values (:mod:`cloud_node.prefix_cache`)
   and prefills only the rest.

After the pass each request picks its token with its own sampling parameters and seed
(:class:`~netgpt.generation.TokenPicker`) and leaves the batch at once when it is done.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

import structlog

from cloud_node.kv_cache import KvBudget, RequestCache
from cloud_node.lora_weights import LoraWeights
from cloud_node.packed_forward import PackedLlama, Segment
from cloud_node.prefix_cache import PrefixCache
from netgpt.errors import InvalidArgument, ResourceExhausted, StartupError
from netgpt.generation import SamplingParams, Tokenizer, TokenPicker, TokenPiece

log = structlog.get_logger(__name__)

DEFAULT_PRIORITY = 8  # QoS priority 0 ("unset") ranks between 1 (highest) and 15 (lowest)


class Admitted:
    """Marker sent to a request's consumer when it joins the running batch."""


ADMITTED = Admitted()
Emit = Callable[[TokenPiece | Admitted | BaseException | None], object]  # None: finished; what it returns is ignored


@dataclass(eq=False)
class BatchRequest:
    """One generation inside the scheduler."""

    prompt_ids: list[int]
    params: SamplingParams
    lora: LoraWeights | None
    tokenizer: Tokenizer
    emit: Emit
    priority: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    order: int = 0
    cache: RequestCache | None = None
    prefilled: int = 0  # prompt tokens already in the cache
    next_token: int | None = None  # the token the next decode step feeds
    picker: TokenPicker | None = None
    # the submitter's context (bound session/flow ids, the current span): the scheduler thread logs
    # this request's events inside it
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    @property
    def rank(self) -> tuple[int, int]:
        return (self.priority or DEFAULT_PRIORITY, self.order)

    @property
    def reservation(self) -> int:
        return len(self.prompt_ids) + self.params.max_new_tokens


@dataclass
class _Planned:
    request: BatchRequest
    segment: Segment


class BatchScheduler:
    def __init__(self, packed: PackedLlama, max_batch: int = 16, max_batch_tokens: int = 512,
                 kv_cache_mb: float = 1024.0, max_queue: int = 16, prefix_cache_mb: float = 0.0) -> None:
        if max_batch < 1 or max_batch_tokens < max_batch:
            raise StartupError(f"batching needs max_batch >= 1 and max_batch_tokens >= max_batch "
                                  f"(got {max_batch} and {max_batch_tokens})")
        self.packed = packed
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.budget = KvBudget(packed.cache_shape, kv_cache_mb)
        self.prefixes = PrefixCache(packed.cache_shape, prefix_cache_mb) if prefix_cache_mb > 0 else None
        self.waiting: list[BatchRequest] = []
        self.running: list[BatchRequest] = []
        self.steps = 0
        self.largest_batch = 0
        self._orders = count()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._thread.start()

    def accepts(self, model: object) -> bool:
        """Whether ``model`` runs on this scheduler's base weights (a LlamaModel or an adapter on it)."""
        packed = getattr(model, "packed", None)
        return isinstance(packed, PackedLlama) and packed.hf_model is self.packed.hf_model

    def submit(self, request: BatchRequest) -> None:
        """Queue ``request``; ResourceExhausted when the queue is full or it can never fit the KV budget."""
        if not request.prompt_ids:
            raise InvalidArgument("prompt encodes to zero tokens")
        if request.reservation > self.budget.total_tokens:
            raise ResourceExhausted(f"prompt + max_new_tokens = {request.reservation} tokens exceed this node's KV "
                                    f"cache budget of {self.budget.total_tokens} tokens (kv_cache_mb)")
        with self._wake:
            if self._closed:
                raise ResourceExhausted("the cloud's batch scheduler is shutting down")
            free = self.max_batch - len(self.running)
            if len(self.waiting) + 1 - free > self.max_queue:
                raise ResourceExhausted(f"node is at capacity: {len(self.running)} generating, {len(self.waiting)} "
                                        f"queued (max_batch={self.max_batch}, max_queue={self.max_queue})")
            request.order = next(self._orders)
            request.picker = TokenPicker(request.tokenizer, request.params)
            self.waiting.append(request)
            self._wake.notify()

    def poke(self) -> None:
        """Wake the loop (a request was cancelled): it drops the request before the next pass."""
        with self._wake:
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or bool(self.running or self.waiting))
                if self._closed:
                    break
                self._drop_cancelled()
                self._admit()
                plan = self._plan()
            if plan:
                self._step(plan)
        for request in self.running + self.waiting:
            request.emit(ResourceExhausted("the cloud node is shutting down"))

    def _drop_cancelled(self) -> None:
        for request in [r for r in self.running if r.cancel.is_set()]:
            self._finish(request)
            request.context.run(log.info, "batch.cancelled", prefilled=request.prefilled,
                                produced=_produced(request))
        self.waiting = [r for r in self.waiting if not r.cancel.is_set()]

    def _admit(self) -> None:
        self.waiting.sort(key=lambda r: r.rank)
        while self.waiting and len(self.running) < self.max_batch and self.budget.fits(self.waiting[0].reservation):
            request = self.waiting.pop(0)
            self.budget.reserve(request.reservation)
            request.cache = self.packed.new_cache(request.reservation)
            if self.prefixes is not None:
                request.prefilled = self.prefixes.restore(request.lora, request.prompt_ids, request.cache)
                if request.prefilled:
                    request.context.run(log.info, "batch.prefix_reused", tokens=request.prefilled,
                                        prompt_tokens=len(request.prompt_ids))
            self.running.append(request)
            request.emit(ADMITTED)

    def _plan(self) -> list[_Planned]:
        """This step's segments: every decode first (one token each), then prompt chunks in admission order."""
        plan: list[_Planned] = []
        room = self.max_batch_tokens
        for request in self.running:
            if request.next_token is not None and request.cache is not None:
                plan.append(_Planned(request, Segment(request.cache, [request.next_token], request.lora)))
                room -= 1
        for request in sorted(self.running, key=lambda r: r.rank):
            if request.next_token is None and room > 0 and request.cache is not None:
                chunk = request.prompt_ids[request.prefilled:request.prefilled + room]
                last = request.prefilled + len(chunk) == len(request.prompt_ids)
                plan.append(_Planned(request, Segment(request.cache, chunk, request.lora, wants_logits=last)))
                room -= len(chunk)
        plan.sort(key=lambda p: id(p.request.lora))  # one contiguous row range per adapter
        return plan

    def _step(self, plan: list[_Planned]) -> None:
        try:
            logits = self.packed.forward([p.segment for p in plan]).cpu().numpy()
        except Exception as exc:  # e.g. CUDA out of memory: fail this step's requests, keep serving others
            log.exception("batch.step_failed", requests=len(plan))
            with self._wake:
                for planned in plan:
                    planned.request.emit(exc)
                    self._finish(planned.request)
            return
        self.steps += 1
        self.largest_batch = max(self.largest_batch, len(plan))
        rows = iter(logits)
        with self._wake:
            for planned in plan:
                request, segment = planned.request, planned.segment
                if not segment.wants_logits:
                    request.prefilled += len(segment.ids)
                    continue
                row = next(rows)
                if self.prefixes is not None and request.prefilled + len(segment.ids) == len(request.prompt_ids) \
                        and request.next_token is None:
                    self.prefixes.store(request.lora, request.prompt_ids, segment.cache)
                request.prefilled = len(request.prompt_ids)
                if request.cancel.is_set() or request not in self.running:
                    continue  # dropped at the next boundary; nothing more is sent to a caller who left
                self._pick(request, row)

    def _pick(self, request: BatchRequest, logits: object) -> None:
        assert request.picker is not None
        piece = None if request.picker.done else request.picker.pick(logits)  # type: ignore[arg-type]  # a numpy row
        if piece is not None:
            request.emit(piece)
        if piece is None or request.picker.done:
            request.emit(None)
            self._finish(request)
        else:
            request.next_token = piece.token_id

    def _finish(self, request: BatchRequest) -> None:
        if request in self.running:
            self.running.remove(request)
            self.budget.release(request.reservation)
        request.cache = None  # the KV buffers go back to the allocator now


def _produced(request: BatchRequest) -> int:
    return request.picker.produced if request.picker is not None else 0

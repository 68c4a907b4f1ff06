"""Concurrent edge generations share ONNX Runtime runs: one decode step of several sessions is one
``session.run`` with batch > 1.

Each request still drives its own :class:`BatchedDecodeSession` from its own worker thread
(``generate_tokens`` through :class:`~up.runner.GenerationRunner`). Its ``advance`` hands the
step to the model's :class:`DecodeBatcher` and blocks: the first caller to find no run in flight
becomes the leader, waits a moment (``gather_s``, ended early once every live session has a step
waiting) for the others, runs them all as one batch and hands each its logits. Decode steps of a
small model are memory-bound on the weights, so a batch of 4 costs far less than 4 runs.

Sessions at different lengths share a batch by left padding: the shorter caches are padded with
zeros that the attention mask hides, and position ids stay each session's own. A session's cache
is its row of the batch's ``present`` outputs without its padding (a view, no copy). When the same
sessions step together again, the previous ``present`` tensors are fed back as they are (no
repacking); only a change of membership copies caches into a new padded batch. Prompts (prefill)
run alone: their lengths differ and each happens once per request.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from edge_node.model.onnx_export import ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS, past_names, present_names
from edge_node.model.prefill_gate import OPEN, PrefillGate
from edge_node.model.prefix_cache import EdgePrefixCache, prefill_plan

Cache = list[np.ndarray]  # per layer key, value: (1, kv_heads, length, head_dim)


@dataclass(eq=False)
class _Step:
    session: BatchedDecodeSession
    token_id: int
    logits: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Group:
    """The last batch: who was in it (in order), and its outputs and mask to continue from."""

    members: tuple[int, ...] = ()
    present: list[np.ndarray] = field(default_factory=list)
    mask: np.ndarray | None = None


class DecodeBatcher:
    """Coalesces concurrent ``advance`` steps of one model's sessions into batched runs."""

    def __init__(self, session: ort.InferenceSession, n_layer: int, max_batch: int, gather_s: float = 0.002) -> None:
        self._session = session
        self._past_names = past_names(n_layer)
        self._outputs = [LOGITS, *present_names(n_layer)]
        self.max_batch = max(1, max_batch)
        self._gather_s = gather_s
        self._cond = threading.Condition()
        self._pending: list[_Step] = []
        self._running = False
        self._live = 0  # sessions prefilled and not yet collected: who may have a step coming
        self._group = _Group()
        self.runs = 0  # batched runs so far, and the steps they carried (mean batch = steps / runs)
        self.steps = 0

    def opened(self, session: BatchedDecodeSession) -> None:
        with self._cond:
            self._live += 1
        weakref.finalize(session, self._closed)

    def _closed(self) -> None:
        with self._cond:
            self._live -= 1
            self._cond.notify_all()

    def step(self, session: BatchedDecodeSession, token_id: int) -> np.ndarray:
        """Run one decode step of ``session`` (in whatever batch forms); return its next logits."""
        item = _Step(session, token_id)
        with self._cond:
            self._pending.append(item)
            self._cond.notify_all()
        while True:
            with self._cond:
                while self._running and not item.done:
                    self._cond.wait()
                if item.done:
                    break
                self._running = True
                batch = self._gather(item)
            try:
                self._run(batch)
            except BaseException as exc:  # every waiter of the batch gets it, not just the leader
                for member in batch:
                    member.error = exc
            finally:
                with self._cond:
                    for member in batch:
                        member.done = True
                    self._running = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        assert item.logits is not None
        return item.logits

    def _gather(self, leader: _Step) -> list[_Step]:
        """Called holding the lock: wait briefly for the other live sessions' steps, take up to max_batch."""
        deadline = time.perf_counter() + self._gather_s
        while len(self._pending) < min(self._live, self.max_batch):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._cond.wait(left)
        self._pending.remove(leader)
        batch = [leader, *self._pending[: self.max_batch - 1]]
        del self._pending[: self.max_batch - 1]
        batch.sort(key=lambda s: id(s.session))  # a stable order lets the next step reuse this batch as is
        return batch

    def _run(self, batch: list[_Step]) -> None:
        members = tuple(id(s.session) for s in batch)
        group = self._group
        if members == group.members and all(s.session.group is group for s in batch) and group.mask is not None:
            past, mask = group.present, group.mask
        else:
            past, mask = self._pack([s.session for s in batch])
        mask = np.concatenate([mask, np.ones((len(batch), 1), np.int64)], axis=1)
        positions = np.asarray([[s.session.length] for s in batch], np.int64)
        feed = {INPUT_IDS: np.asarray([[s.token_id] for s in batch], np.int64), ATTENTION_MASK: mask,
                POSITION_IDS: positions, **dict(zip(self._past_names, past, strict=True))}
        logits, *present = self._session.run(self._outputs, feed)
        width = mask.shape[1]
        for row, item in enumerate(batch):
            session = item.session
            start = width - (session.length + 1)  # this row's padding
            session.cache = [p[row : row + 1, :, start:, :] for p in present]
            session.length += 1
            item.logits = np.array(logits[row, -1], dtype=np.float32)
        self._group = _Group(members, present, mask)
        for item in batch:
            item.session.group = self._group
        self.runs += 1
        self.steps += len(batch)

    @staticmethod
    def _pack(sessions: list[BatchedDecodeSession]) -> tuple[list[np.ndarray], np.ndarray]:
        """Left-pad every session's cache to the longest; the mask marks the real positions."""
        if len(sessions) == 1:
            only = sessions[0]
            return only.cache, np.ones((1, only.length), np.int64)
        longest = max(s.length for s in sessions)
        mask = np.zeros((len(sessions), longest), np.int64)
        packed = []
        for layer in range(len(sessions[0].cache)):
            first = sessions[0].cache[layer]
            tensor = np.zeros((len(sessions), first.shape[1], longest, first.shape[3]), first.dtype)
            for row, session in enumerate(sessions):
                tensor[row, :, longest - session.length :, :] = session.cache[layer][0]
            packed.append(tensor)
        for row, session in enumerate(sessions):
            mask[row, longest - session.length :] = 1
        return packed, mask


class BatchedDecodeSession:
    """A single-sequence :class:`~netgpt.generation.DecodeSession` whose decode steps run batched."""

    def __init__(self, session: ort.InferenceSession, batcher: DecodeBatcher, n_layer: int, kv_heads: int,
                 head_dim: int, max_context: int, prefixes: EdgePrefixCache | None = None,
                 gate: PrefillGate = OPEN) -> None:
        self._session = session
        self._prefixes = prefixes
        self._gate = gate
        self._batcher = batcher
        self._names = past_names(n_layer)
        self._outputs = [LOGITS, *present_names(n_layer)]
        self._empty = np.zeros((1, kv_heads, 0, head_dim), np.float32)
        self._max_context = max_context
        self.cache: Cache = []
        self.length = 0  # tokens in the cache
        self.group: _Group | None = None  # the batch whose outputs hold this session's cache
        self._opened = False

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        if not input_ids:
            raise ValueError("prefill needs at least one token")
        seq = len(input_ids)
        if seq > self._max_context:
            raise ValueError(f"context of {seq} tokens exceeds the model's {self._max_context}")
        present, runs = prefill_plan(self._prefixes, input_ids)
        present = present or [self._empty] * len(self._names)
        with self._gate.prefill():
            for start, end in runs:
                feed = {INPUT_IDS: np.asarray([input_ids[start:end]], np.int64),
                        ATTENTION_MASK: np.ones((1, end), np.int64),
                        POSITION_IDS: np.arange(start, end, dtype=np.int64)[None],
                        **dict(zip(self._names, present, strict=True))}
                logits, *present = self._session.run(self._outputs, feed)
        self.cache, self.length, self.group = present, seq, None
        if self._prefixes is not None:
            self._prefixes.store(input_ids, lambda: present)
        if not self._opened:
            self._opened = True
            self._batcher.opened(self)
        return np.array(logits[0, -1], dtype=np.float32)

    def advance(self, token_id: int) -> np.ndarray:
        if not self.cache:
            raise RuntimeError("advance() called before prefill()")
        if self.length + 1 > self._max_context:
            raise ValueError(f"context of {self.length + 1} tokens exceeds the model's {self._max_context}")
        self._gate.before_step()
        return self._batcher.step(self, token_id)


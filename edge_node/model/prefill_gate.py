"""Prompts first: while a prompt is being prefilled, the decode steps of the same model's other requests wait.

On a CPU every forward pass of the edge model shares the same cores. Four requests decoding at once leave a
new request's prefill a quarter of them, so its first token waits behind the others' next tokens (issue 29:
a full-size int8 edge's first token p95 at 4 concurrent requests). Holding decode steps back while a prefill
runs gives the prefill the whole CPU and delays each running request by about one prefill, the trade vLLM's
scheduler makes too (prompts ahead of decode steps). Prefills are bounded by the node's admission
(``max_concurrency``), so decoding cannot starve. A step already running finishes; the next one waits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PrefillGate:
    """``enabled = False``: a gate that never holds anything back (``prefill_first = false``), so sessions call
    it the same way either way."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._changed = threading.Condition()
        self._prefilling = 0
        self.held_steps = 0  # decode steps that waited for a prefill (for tests and logs)

    @contextmanager
    def prefill(self) -> Iterator[None]:
        """Around a prompt's prefill: decode steps that start meanwhile wait until it is done."""
        if not self.enabled:
            yield
            return
        with self._changed:
            self._prefilling += 1
        try:
            yield
        finally:
            with self._changed:
                self._prefilling -= 1
                if not self._prefilling:
                    self._changed.notify_all()

    def before_step(self) -> None:
        """Before a decode step: wait while any prefill runs."""
        if not self.enabled:
            return
        with self._changed:
            if self._prefilling:
                self.held_steps += 1
                self._changed.wait_for(lambda: not self._prefilling)


OPEN = PrefillGate(enabled=False)  # holds nothing: it keeps no state, so every session may share it

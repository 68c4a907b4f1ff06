"""Driving several decode sessions at once, as the edge's worker threads do, so their steps can batch."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from netgpt.generation import DecodeSession


def step_together(sessions: Sequence[DecodeSession], tokens: Sequence[Sequence[int]],
                  timeout_s: float = 60) -> list[list[np.ndarray]]:
    """Each (prefilled) session advances through its tokens on its own thread, all at once; the logits of
    every step, per session."""
    got: list[list[np.ndarray]] = [[] for _ in sessions]

    def decode(i: int) -> None:
        for token in tokens[i]:
            got[i].append(sessions[i].advance(token))

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    return got

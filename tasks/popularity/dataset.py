"""The trainer's JSONL for the popularity model (``{"prompt", "completion"}`` per line).

Per labelled window: the prompt is the title line (``<|movie|>Title``); the completion is the
title's history lines and the question line, ending with the appear label::

    prompt:     <|movie|>Iron Man 2
    completion: <|interval|>9<|morning|><|appear|>1<|views|>3 ... <|interval|>21<|morning|><|appear|>1

The trainer puts the loss on the completion only, so with the history in the completion every
appear flag of the window is a next-token target (teacher forcing): 13 labelled predictions per
example for the compute of one, each from the history before it. At serving time the predictor
feeds :func:`edge_node.netmgmt.popularity.render_prompt` (the same text up to the last ``<|appear|>``) and
reads the two label logits, so training and serving see identical token sequences.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from edge_node.netmgmt.popularity import DEFAULT_LAGS, LABELS, ViewLog, render_header, render_history, render_question
from tasks.popularity.intervals import LabelledWindow, chronological_split, training_windows

TARGET_STRIDE = 3  # every 3rd training target of a log (3 is coprime with the 4 day parts)


def record(window: LabelledWindow) -> dict[str, str]:
    completion = (render_history(window.views, window.first_interval) + render_question(window.target)
                  + LABELS[window.label])
    return {"prompt": render_header(window.title), "completion": completion}


def write_dataset(path: Path, items: Iterable[LabelledWindow]) -> int:
    """Write the JSONL; returns the number of examples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as stream:
        for item in items:
            stream.write(json.dumps(record(item), ensure_ascii=False) + "\n")
            count += 1
    return count



def log_training_windows(view_log: ViewLog, stride: int = TARGET_STRIDE) -> list[LabelledWindow]:
    """The labelled windows of a log's training 95 % (every ``stride``-th target), as the recipe takes
    them from each synthetic log; a user's own log (``ViewLog.from_csv``) goes through the same."""
    split = chronological_split(view_log.num_intervals, DEFAULT_LAGS)
    return list(training_windows(view_log, split.train_targets[::stride], DEFAULT_LAGS))

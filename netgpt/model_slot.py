"""The model a node serves, swappable while requests run: the heart of an atomic hot swap.

A request reads the slot once when it starts and keeps that :class:`Served` to its end,
so a swap (one attribute assignment on the event loop) sends only *new* requests to the
new model while requests already running finish on the old object, which is freed once
the last of them lets go. The slot also keeps the version served before the last swap,
loaded and ready, so a rollback is as instant as a deploy.

Requests pin the model explicitly: the servicer reads ``slot.current`` once and passes
that :class:`Served` down (the edge's ``EdgeRequest.served``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic

from typing_extensions import TypeVar

from netgpt.engine import LanguageModel
from netgpt.errors import FailedPrecondition
from netgpt.v1 import common_pb2

# What a slot holds: a language model, or another deployable artifact (the edge's learned router)
M = TypeVar("M", default=LanguageModel)


@dataclass(frozen=True, eq=False)
class Served(Generic[M]):
    """A loaded model and the reference nodes report for it (name, version, sha256, kind).

    Compared and hashed by identity: two loads of the same version are two objects.
    """

    model: M
    ref: common_pb2.ModelRef


class ModelSlot(Generic[M]):
    def __init__(self, served: Served[M]) -> None:
        self.current = served
        self.previous: Served[M] | None = None

    def swap(self, served: Served[M]) -> Served[M]:
        """Serve ``served`` to new requests; the old one becomes the rollback target. Returns the old one."""
        old, self.previous, self.current = self.current, self.current, served
        return old

    def rollback(self) -> Served[M]:
        """Serve the previous version again; the one rolled back is dropped. Returns the one restored."""
        if self.previous is None:
            raise FailedPrecondition("no previous version to roll back to: the node serves the version it "
                                     "started with, or a rollback already happened")
        self.current, self.previous = self.previous, None
        return self.current

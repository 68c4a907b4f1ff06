"""OpenAI ``stop`` sequences over streamed text: the text is released up to (not including) the first
stop sequence, and a tail that may be the start of one is held back until the next piece shows."""

from __future__ import annotations

from collections.abc import Sequence


class StopScan:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.stopped = False
        self._held = ""

    def feed(self, text: str) -> str:
        """What of ``text`` (after what was held back) may be shown now."""
        if self.stopped:
            return ""
        buffer = self._held + text
        cuts = [i for i in (buffer.find(stop) for stop in self.stops) if i >= 0]
        if cuts:
            self.stopped, self._held = True, ""
            return buffer[:min(cuts)]
        held = max((k for stop in self.stops for k in range(1, len(stop)) if buffer.endswith(stop[:k])), default=0)
        self._held = buffer[len(buffer) - held:] if held else ""
        return buffer[:len(buffer) - held]

    def flush(self) -> str:
        """The held-back tail, once the text is over (it never became a stop sequence)."""
        held, self._held = self._held, ""
        return held

"""Erasing a user at the edge (DeleteProfile): their profile and everything derived from their requests.

What derives from a user's requests at the edge: the profile's recent prompts, cloud
answers cached for them, their distillation samples (the cloud's answers kept for the edge to learn
from), and the sharing of their cloud calls in flight (coalescing).
The knowledge base holds no user data; logs hold no prompts (desensitised counts only).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_node.serving.cloud_calls import CloudGateway, Forgotten
from edge_node.serving.profiles import ProfileStore
from netgpt.errors import NotFound


@dataclass(frozen=True)
class Erasure:
    profile: bool
    prompts: int
    cached_answers: int
    shared_calls: int
    distill_samples: int = 0

    @property
    def anything(self) -> bool:
        return self.profile or bool(self.prompts or self.cached_answers or self.shared_calls or self.distill_samples)


class UserData:
    def __init__(self, profiles: ProfileStore, gateway: CloudGateway | None = None) -> None:
        self.profiles = profiles
        self.gateway = gateway

    def erase(self, user_id: str) -> Erasure:
        """Erase all the edge holds for ``user_id``; NotFound when it held nothing."""
        erased = self.profiles.delete(user_id)
        forgotten = self.gateway.forget(user_id) if self.gateway is not None else Forgotten()
        erasure = Erasure(erased.profile, erased.prompts, forgotten.cached_answers, forgotten.shared_calls,
                          forgotten.distill_samples)
        if not erasure.anything:
            raise NotFound(f"no profile or data for user {user_id!r} at this edge")
        return erasure

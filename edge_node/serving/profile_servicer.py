"""ProfileService on the edge: thin gRPC layer over :class:`ProfileStore` and :class:`UserData` (erasure)."""

from __future__ import annotations

import grpc
import structlog

from edge_node.serving.erasure import UserData
from edge_node.serving.profiles import Profile, ProfileStore
from netgpt.v1 import profile_pb2, profile_pb2_grpc

log = structlog.get_logger(__name__)


def to_proto(profile: Profile) -> profile_pb2.UserProfile:
    message = profile_pb2.UserProfile(user_id=profile.user_id, preferences=profile.preferences,
                                      recent_prompts=profile.recent_prompts)
    message.updated_at.FromNanoseconds(int(profile.updated_at * 1e9))
    return message


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, store: ProfileStore, user_data: UserData | None = None) -> None:
        self.store = store
        self.user_data = user_data if user_data is not None else UserData(store)

    async def GetProfile(self, request: profile_pb2.GetProfileRequest,
                         context: grpc.aio.ServicerContext) -> profile_pb2.GetProfileResponse:
        return profile_pb2.GetProfileResponse(profile=to_proto(self.store.get(request.user_id)))

    async def UpdateProfile(self, request: profile_pb2.UpdateProfileRequest,
                            context: grpc.aio.ServicerContext) -> profile_pb2.UpdateProfileResponse:
        profile = self.store.update(request.user_id, list(request.preferences), request.merge)
        log.info("profile.updated", user_id=request.user_id, preferences=len(profile.preferences))
        return profile_pb2.UpdateProfileResponse(profile=to_proto(profile))

    async def DeleteProfile(self, request: profile_pb2.DeleteProfileRequest,
                            context: grpc.aio.ServicerContext) -> profile_pb2.DeleteProfileResponse:
        erased = self.user_data.erase(request.user_id)
        log.info("profile.erased", user_id=request.user_id, profile=erased.profile, prompts=erased.prompts,
                 cached_answers=erased.cached_answers, shared_calls=erased.shared_calls,
                 distill_samples=erased.distill_samples)
        return profile_pb2.DeleteProfileResponse(profile_erased=erased.profile, prompts_erased=erased.prompts,
                                                 cached_answers_erased=erased.cached_answers,
                                                 shared_calls_detached=erased.shared_calls)

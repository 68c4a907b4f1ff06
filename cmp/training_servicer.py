"""TrainingService: fine-tuning jobs on the compute plane. Thin: decode the request, call the
:class:`~cmp.training_jobs.JobBook`, encode the reply (``cmp.convert``); domain errors become
status codes in the server's interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from cmp.convert import job_to_proto
from cmp.training_jobs import JobBook
from netgpt.v1 import training_pb2 as tr_pb2
from netgpt.v1 import training_pb2_grpc as tr_grpc

log = structlog.get_logger(__name__)


class TrainingServicer(tr_grpc.TrainingServiceServicer):
    def __init__(self, jobs: JobBook) -> None:
        self.jobs = jobs

    async def StartTrainingJob(self, request: tr_pb2.StartTrainingJobRequest,
                               context: grpc.aio.ServicerContext) -> tr_pb2.StartTrainingJobResponse:
        return tr_pb2.StartTrainingJobResponse(job=job_to_proto(self.jobs.start(request.spec)))

    async def GetTrainingJob(self, request: tr_pb2.GetTrainingJobRequest,
                             context: grpc.aio.ServicerContext) -> tr_pb2.GetTrainingJobResponse:
        return tr_pb2.GetTrainingJobResponse(job=job_to_proto(self.jobs.get(request.job_id)))

    async def WatchTrainingJob(self, request: tr_pb2.WatchTrainingJobRequest,
                               context: grpc.aio.ServicerContext) -> AsyncIterator[tr_pb2.WatchTrainingJobResponse]:
        async for job in self.jobs.watch(request.job_id):
            yield tr_pb2.WatchTrainingJobResponse(job=job_to_proto(job))

    async def CancelTrainingJob(self, request: tr_pb2.CancelTrainingJobRequest,
                                context: grpc.aio.ServicerContext) -> tr_pb2.CancelTrainingJobResponse:
        return tr_pb2.CancelTrainingJobResponse(job=job_to_proto(self.jobs.cancel(request.job_id)))

    async def ListTrainingJobs(self, request: tr_pb2.ListTrainingJobsRequest,
                               context: grpc.aio.ServicerContext) -> tr_pb2.ListTrainingJobsResponse:
        return tr_pb2.ListTrainingJobsResponse(jobs=[job_to_proto(j) for j in self.jobs.list()])

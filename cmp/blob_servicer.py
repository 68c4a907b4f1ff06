"""BlobService: verified blobs served by sha256 and range, within an upload budget. The core
serves it from its model store, every node from its shelf of fetched blobs (``BlobCache``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cmp.transfer_server import BlobShelf, blob_responses
from cmp.upload_budget import UploadBudget
from netgpt.server import Service
from netgpt.v1 import blob_pb2
from netgpt.v1 import blob_pb2_grpc as blob_grpc

SERVICE_NAME = "netgpt.v1.BlobService"


class BlobServicer(blob_grpc.BlobServiceServicer):
    def __init__(self, shelf: BlobShelf, budget: UploadBudget) -> None:
        self.shelf = shelf
        self.budget = budget

    async def FetchBlob(self, request: blob_pb2.FetchBlobRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[blob_pb2.FetchBlobResponse]:
        async for response in blob_responses(self.shelf, self.budget, request):
            yield response


def blob_service(shelf: BlobShelf, budget: UploadBudget) -> Service:
    """The BlobService entry of a ``start_server`` list."""
    return Service(SERVICE_NAME, BlobServicer(shelf, budget), blob_grpc.add_BlobServiceServicer_to_server)

"""The one table from domain errors to gRPC status codes (``netgpt.status``)."""

import inspect

import grpc
import pytest

import netgpt.access  # noqa: F401  (defines no errors of its own, raises the table's)
from netgpt import errors, interceptors
from netgpt.engine import ModelLoadError
from netgpt.status import STATUS_CODES, status_code
from netgpt.training.trainer import TrainingCancelled, TrainingFailed

Code = grpc.StatusCode


def subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


def test_every_domain_error_has_a_row():
    domain = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.NetGptError)]
    assert len(domain) > 10
    assert [c.__name__ for c in domain if c not in STATUS_CODES] == []
    # the ones defined elsewhere (interceptors, trainer, ...) inherit a row that says more than UNKNOWN
    assert [c.__name__ for c in subclasses(errors.NetGptError) if status_code(c("x")) == Code.UNKNOWN] == []


def test_domain_errors_know_nothing_of_grpc():
    assert "grpc" not in inspect.getsource(errors)
    assert not any(hasattr(c, "code") for c in [errors.NetGptError, *subclasses(errors.NetGptError)])


@pytest.mark.parametrize(("exc", "code"), [
    (errors.InvalidArgument("x"), Code.INVALID_ARGUMENT),
    (errors.DataLoss("x"), Code.DATA_LOSS),
    (errors.NetGptError("x"), Code.UNKNOWN),
    (interceptors.UndecodableRequest("x"), Code.INVALID_ARGUMENT),
    (errors.Unauthenticated("x"), Code.UNAUTHENTICATED),
    (errors.PermissionDenied("x"), Code.PERMISSION_DENIED),
    (TrainingCancelled("x"), Code.CANCELLED),
    (TrainingFailed("x"), Code.ABORTED),
    (ModelLoadError("x"), Code.FAILED_PRECONDITION),  # a node's failed deploy or training job
    (ValueError("x"), Code.UNKNOWN),
    (grpc.aio.AioRpcError(Code.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata()), Code.RESOURCE_EXHAUSTED),
])
def test_status_code(exc, code):
    assert status_code(exc) == code

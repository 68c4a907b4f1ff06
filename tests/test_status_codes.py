"""The one table from domain errors to gRPC status codes (``netgpt.status``)."""

import inspect

import grpc
import pytest

import netgpt.access  # noqa: F401  (defines no errors of its own, raises the table's)
from netgpt import errors, interceptors
from netgpt.engine import ModelLoadError
from netgpt.status import HTTP_STATUSES, STATUS_CODES, http_status, status_code
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


def test_every_status_code_has_an_http_row():
    """Every code an error can map to (every domain error's row, and any code a peer's call fails with)
    has its HTTP status and OpenAI error type in the one table."""
    assert {code for code in Code if code != Code.OK} == set(HTTP_STATUSES)
    domain = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.NetGptError)]
    assert [c.__name__ for c in domain if status_code(c("x")) not in HTTP_STATUSES] == []


def test_only_server_faults_are_5xx_and_user_mistakes_are_4xx():
    server_faults = {Code.UNKNOWN, Code.INTERNAL, Code.DATA_LOSS, Code.UNIMPLEMENTED, Code.UNAVAILABLE,
                     Code.DEADLINE_EXCEEDED}
    assert {code for code, row in HTTP_STATUSES.items() if row.status >= 500} == server_faults
    assert all(400 <= row.status < 500 for code, row in HTTP_STATUSES.items() if code not in server_faults)


@pytest.mark.parametrize(("exc", "status", "error_type"), [
    (errors.InvalidArgument("x"), 400, "invalid_request_error"),
    (errors.OutOfRange("x"), 400, "invalid_request_error"),
    (errors.FailedPrecondition("x"), 400, "invalid_request_error"),  # e.g. a session of a cell this edge lacks
    (interceptors.UndecodableRequest("x"), 400, "invalid_request_error"),
    (errors.Unauthenticated("x"), 401, "authentication_error"),
    (errors.PermissionDenied("x"), 403, "permission_error"),
    (errors.NotFound("x"), 404, "not_found_error"),
    (errors.ResourceExhausted("x"), 429, "rate_limit_error"),
    (errors.Unavailable("x"), 503, "unavailable_error"),
    (errors.DeadlineExceeded("x"), 504, "timeout_error"),
    (errors.Internal("x"), 500, "server_error"),
    (ValueError("x"), 500, "server_error"),  # a bug, not the caller's
    (grpc.aio.AioRpcError(Code.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata()), 404, "not_found_error"),
])
def test_http_status(exc, status, error_type):
    row = http_status(exc)
    assert (row.status, row.error_type) == (status, error_type)


def test_overload_and_draining_say_when_to_retry():
    assert http_status(errors.ResourceExhausted("x")).retry_after_s == 1
    assert http_status(errors.Unavailable("x")).retry_after_s == 1
    assert http_status(errors.InvalidArgument("x")).retry_after_s is None

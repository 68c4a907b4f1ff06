"""Bounds every request field, in one generic pass over the message driven by its descriptor.

The error-mapping interceptor runs :func:`check_request` on every request message a server
decodes (each message of a request stream too), before any servicer or access check sees it.
Domain code checks what only it can know (is the session known, is the prompt short enough
for this node); this pass checks what holds for every RPC:

==============================  =================================================================
field                           limit
==============================  =================================================================
every enum field                a value its enum defines (``task = 99`` is refused)
every ``float``/``double``      a finite number (NaN and the infinities are refused)
identifiers: ``*_id``/``*_ids``  at most 128 characters of ``[A-Za-z0-9._:@+-]``, starting with a
                                letter or digit (empty means "not given"; the RPC says if required)
names: ``name``, ``version``,   at most 128 characters (the model store, workflows and training
``sha256``, ``id``, ...         jobs check their own, stricter, charsets)
``address``                     at most 256 characters
other text                      at most 64 Ki characters (``prompt`` has its own, smaller limit)
repeated fields and maps        at most 4096 entries; map keys at most 256 characters
``QoS``                         ``priority`` 0..15 (0: unset, 1 highest), ``latency_budget_ms``
                                0..600000
==============================  =================================================================

Every message quotes the field's path (``load.deployments[0].command_id``) and at most a short,
escaped excerpt of the value (:func:`netgpt.errors.excerpt`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from netgpt.errors import InvalidArgument, excerpt
from netgpt.v1 import common_pb2

MAX_ID_CHARS = 128
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
ID_CHARSET = "[A-Za-z0-9._:@+-] (starting with a letter or digit)"
MAX_NAME_CHARS = 128
NAME_FIELDS = frozenset({"name", "version", "sha256", "base_model", "output_name", "output_version", "id",
                         "function", "after", "target_modules", "blobs", "accelerator", "runtime", "region"})
MAX_ADDRESS_CHARS = 256
MAX_TEXT_CHARS = 64 * 1024
MAX_ENTRIES = 4096
MAX_KEY_CHARS = 256
MAX_QOS_PRIORITY = 15
MAX_LATENCY_BUDGET_MS = 600_000


def is_id_field(name: str) -> bool:
    return name.endswith(("_id", "_ids"))


def check_id(value: str, where: str, required: bool = False) -> str:
    """``value`` if it is a well-formed identifier (or empty and not ``required``); InvalidArgument otherwise."""
    if not value:
        if required:
            raise InvalidArgument(f"{where} is required")
        return value
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{where} is {len(value)} characters; identifiers are at most {MAX_ID_CHARS}")
    if not ID_RE.fullmatch(value):
        raise InvalidArgument(f"{where} must be characters of {ID_CHARSET}; got {excerpt(value)}")
    return value


def check_length(value: str, where: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{where} is {len(value)} characters; the limit is {limit}")
    return value


def check_qos(priority: int, latency_budget_ms: int, where: str = "qos") -> None:
    if priority > MAX_QOS_PRIORITY:
        raise InvalidArgument(f"{where}.priority must be within 0..{MAX_QOS_PRIORITY} "
                              f"(0: unset, 1: highest); got {priority}")
    if latency_budget_ms > MAX_LATENCY_BUDGET_MS:
        raise InvalidArgument(f"{where}.latency_budget_ms must be within 0..{MAX_LATENCY_BUDGET_MS}; "
                              f"got {latency_budget_ms}")


def _qos_rule(message: Message, path: str) -> None:
    qos = cast(common_pb2.QoS, message)
    check_qos(qos.priority, qos.latency_budget_ms, path or "qos")


# checks of whole messages, by full name, wherever the message appears in a request
MESSAGE_RULES: dict[str, Callable[[Message, str], None]] = {"netgpt.v1.QoS": _qos_rule}


def check_request(message: Message) -> None:
    """InvalidArgument naming the first field of ``message`` (at any depth) that breaks a limit above."""
    _check_message(message, "")


def _check_message(message: Message, path: str) -> None:
    descriptor = message.DESCRIPTOR
    rule = MESSAGE_RULES.get(descriptor.full_name)
    if rule is not None:
        rule(message, path)
    for field, value in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if not field.is_repeated:
            _check_value(field, value, where)
            continue
        if len(value) > MAX_ENTRIES:
            raise InvalidArgument(f"{where} has {len(value)} entries; the limit is {MAX_ENTRIES}")
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _check_map(field.message_type, value, where)
        else:
            for index, item in enumerate(value):
                _check_value(field, item, f"{where}[{index}]")


def _check_map(entry: Descriptor, mapping: object, where: str) -> None:
    value_field = entry.fields_by_name["value"]
    for key, item in mapping.items():  # type: ignore[attr-defined]
        if isinstance(key, str):
            check_length(key, f"{where} key", MAX_KEY_CHARS)
        _check_value(value_field, item, f"{where}[{excerpt(key, 24)}]")


def _check_value(field: FieldDescriptor, value: object, where: str) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _check_message(value, where)  # type: ignore[arg-type]
    elif field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        if enum is not None and value not in enum.values_by_number:
            known = ", ".join(f"{v.name}={v.number}" for v in enum.values)
            raise InvalidArgument(f"{where} = {value} is not a {enum.name} value; known: {known}")
    elif field.type == FieldDescriptor.TYPE_STRING:
        _check_text(field.name, value, where)  # type: ignore[arg-type]
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        check_finite(value, where)  # type: ignore[arg-type]


def check_finite(value: float, where: str) -> float:
    """``value`` if it is a finite number; InvalidArgument naming ``where`` for NaN and the infinities."""
    if not math.isfinite(value):
        raise InvalidArgument(f"{where} = {value} is not a finite number")
    return value


def _check_text(name: str, value: str, where: str) -> None:
    if is_id_field(name):
        check_id(value, where)
    elif name in NAME_FIELDS:
        check_length(value, where, MAX_NAME_CHARS)
    elif name == "address":
        check_length(value, where, MAX_ADDRESS_CHARS)
    else:
        check_length(value, where, MAX_TEXT_CHARS)

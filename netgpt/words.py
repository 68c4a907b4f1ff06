"""Protobuf enum values as short words for messages and tables: ``NODE_ROLE_EDGE`` → ``edge``."""

from __future__ import annotations

import re

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


def enum_word(enum: EnumTypeWrapper, value: int, sep: str = "_") -> str:
    """The value's name without the enum's prefix (STANDARD lint guarantees it), lower case."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"
    return enum.Name(value).removeprefix(prefix).lower().replace("_", sep)

"""Settings dataclasses from plain values (TFX custom_config, Kubeflow parameters, metadata)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

Config = TypeVar("Config")
_CONVERTERS = {"int": int, "float": float, "str": str, "bool": bool}


def from_plain_values(cls: type[Config], values: Mapping[str, Any], what: str) -> Config:
    """``cls(**values)``, where unknown keys fail loudly and each number takes its field's type.

    Protobuf Structs carry every number as a float and JSON writes whole floats as ints, so a
    round trip would otherwise hand an ``int`` field ``3.0``. Fields of other types (nested
    settings, tuples) pass through for the caller to rebuild.
    """
    fields = {field.name: field.type for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {what} settings: {sorted(unknown)}")
    return cls(
        **{
            name: _CONVERTERS[fields[name]](value) if fields[name] in _CONVERTERS else value
            for name, value in values.items()
        }
    )

"""Building pydantic models from values already known to be valid, without validating them
again: for hot paths that assemble a result from parts they produced themselves (a parsed
report's fields, cached check objects). Never use it for values from outside."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def build_unchecked(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of ``cls`` holding exactly ``values`` (every field must be present).

    What ``model_construct`` does, without its per-field default handling: the caller
    supplies every field, typed as the model declares it."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


_set = object.__setattr__

"""Public models whose bad input raises :class:`~cocopart.errors.InputError`, not pydantic's
``ValidationError``.

The models a caller builds directly — operations, :class:`~cocopart.model.PartitionConfig`,
:class:`~cocopart.model.GpaRange`, :class:`~cocopart.attest.evidence.Evidence`,
:class:`~cocopart.attest.policy.Policy`, :class:`~cocopart.attest.verifier.TrustStore` —
derive from :class:`InputModel`: constructing one, ``model_validate`` and
``model_validate_json`` raise :class:`InputError` (a :class:`~cocopart.errors.ConfigError`,
so a ``ValueError`` too) naming the first wrong field, with every problem in ``.errors``.
Only :class:`~cocopart.errors.CocopartError` subclasses escape the library.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ValidationError

from cocopart.errors import InputError

__all__ = ["InputModel", "input_error"]


def input_error(model: str, err: ValidationError, source: str | None = None) -> InputError:
    """An :class:`InputError` for the first problem of ``err`` (all of them in ``errors``)."""
    problems = err.errors(include_url=False)
    first = problems[0] if problems else {"loc": (), "msg": str(err)}
    field = ".".join(str(p) for p in first["loc"]) or None
    return InputError(
        f"{first['msg']} ({model})", field=field, source=source, errors=[dict(p) for p in problems]
    )


class InputModel(BaseModel):
    """A pydantic model crossing the public API: validation failures are InputErrors."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise input_error(type(self).__name__, err) from None

    # pydantic calls a model's own __init__ while validating it as a field of another model
    # (or in model_validate) unless the __init__ is marked as the base one; this one only
    # translates the error of a direct construction, so nested validation keeps raising
    # ValidationError with the full field path, which the outermost layer translates once.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as err:
            raise input_error(cls.__name__, err) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as err:
            raise input_error(cls.__name__, err) from None

"""Domain values from data validated already (rows the store reads back), without pydantic's
per-field work.

`model_construct` skips validation but still walks every field of the model on each call
(aliases, defaults, the fields set), which made building the five segments of a customer's
list cost more than their SQL row decoding. `Trusted(Model)` makes the same instance
`model_construct` makes from all the fields, by setting what it sets; tests/unit/test_trusted.py
pins that equality, so a pydantic release that changes what an instance holds fails there.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)

_new = object.__new__
_set = object.__setattr__


class Trusted(Generic[Model]):
    """`Trusted(Model)(**every_field)`: what `Model.model_construct(**every_field)` returns.
    Every field must be given (there are no defaults to fill in); nothing is checked."""

    def __init__(self, model: type[Model]) -> None:
        if (
            model.__private_attributes__
            or model.__pydantic_post_init__
            or model.__pydantic_root_model__
            or model.model_config.get("extra") == "allow"
        ):
            raise TypeError(f"{model.__name__}: model_construct does more than Trusted does")
        self._model = model

    def __call__(self, **values: Any) -> Model:
        instance = _new(self._model)
        _set(instance, "__dict__", values)
        _set(instance, "__pydantic_fields_set__", set(values))
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        return instance

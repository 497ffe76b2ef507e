"""The envelope every fact travels in: collected, absent (with why), or failed (with why)."""

from __future__ import annotations

from collections.abc import Callable
from copy import copy
from enum import StrEnum
from functools import partial
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field


class FactModel(BaseModel):
    """Base of every fact model: tool JSON grows fields between versions, so extras are ignored."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """An instance of values a parser already checked, without validating them again.

        For the hot paths that build thousands of models per node from values they made
        themselves (iptables rules, nft statements): pydantic's `model_construct` resolves
        every default per call, which costs more than the parse itself. Pass only field
        names, with values of the declared types; defaults are filled from a plan per class
        and given fields (factories called). A JSON object is cheaper to check and build in
        one `model_validate(obj, strict=True)`: pydantic's validator is not Python.
        """
        return cls.trusted_dict(values)

    @classmethod
    def trusted_dict(cls, values: dict[str, Any]) -> Self:
        """`trusted(**values)` for a dict the caller gives up (it is not copied)."""
        key = (cls, *values)
        plan = _TRUSTED_PLANS.get(key) or _trusted_plan(key, values)
        fields_set, defaults, factories = plan
        values.update(defaults)
        for name, factory in factories:
            values[name] = factory()
        model = _new(cls)
        _set(model, "__dict__", values)
        _set(model, "__pydantic_fields_set__", fields_set)
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model


_set = object.__setattr__
_new = object.__new__
_Factories = tuple[tuple[str, Callable[[], Any]], ...]
#: (model class, the field names given) -> (the `model_fields_set` those instances share,
#: the immutable defaults of the other fields, (field, factory) for the mutable ones)
_TRUSTED_PLANS: dict[tuple[Any, ...], tuple[set[str], dict[str, Any], _Factories]] = {}


def _trusted_plan(
    key: tuple[Any, ...], values: dict[str, Any]
) -> tuple[set[str], dict[str, Any], _Factories]:
    """Resolved once per combination of given fields, so a model costs no per-field work.

    One shared fields set per combination: a set per model was a third of a node's facts
    in memory."""
    cls = key[0]
    if cls.__pydantic_post_init__ or cls.__private_attributes__:
        raise TypeError(
            f"{cls.__name__}: trusted() cannot build models with post-init or private state"
        )
    defaults: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    for name, field in cls.model_fields.items():
        if name in values or field.is_required():
            continue
        if field.default_factory is not None:
            factories.append((name, field.default_factory))  # type: ignore[arg-type]
        elif isinstance(field.default, list | dict | set):
            factories.append((name, partial(copy, field.default)))
        else:
            defaults[name] = field.default
    plan = _TRUSTED_PLANS[key] = (set(values), defaults, tuple(factories))
    return plan


class FactStatus(StrEnum):
    OK = "ok"
    #: a precondition is not met (no nft binary, no k3s directory): a fact, not an error
    ABSENT = "absent"
    #: the fact could not be collected (timeout, garbage output, permission)
    ERROR = "error"


class Fact(BaseModel):
    """One fact of one node. `value` is set only when status is ok."""

    name: str
    status: FactStatus
    value: Any = None
    reason: str | None = Field(default=None, description="why the fact is absent or failed")
    sources: list[str] = Field(default_factory=list, description="the commands it came from")

    @property
    def ok(self) -> bool:
        return self.status is FactStatus.OK

    def describe(self) -> str:
        if self.ok:
            return f"{self.name}: collected"
        state = "not present" if self.status is FactStatus.ABSENT else "could not collect"
        return f"{self.name}: {state}: {self.reason}"

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

        For the hot paths that build thousands of models per node (iptables rules, nft
        statements, neighbours): pydantic's `model_construct` resolves every default per
        call, which costs more than the parse itself. Pass only field names, with values of
        the declared types; defaults are filled from a per-class plan (factories called).
        """
        return cls.trusted_dict(values)

    @classmethod
    def trusted_dict(cls, values: dict[str, Any]) -> Self:
        """`trusted(**values)` for a dict the caller gives up (it is not copied)."""
        static, factories = _PLANS.get(cls) or _plan(cls)
        key = (cls, *values)
        fields_set = _FIELDS_SETS.get(key)
        if fields_set is None:  # one shared set per combination: a set per model was a
            fields_set = _FIELDS_SETS[key] = set(values)  # third of a node's facts in memory
        for name, value in static.items():
            if name not in values:
                values[name] = value
        for name, factory in factories:
            if name not in values:
                values[name] = factory()
        model = _new(cls)
        _set(model, "__dict__", values)
        _set(model, "__pydantic_fields_set__", fields_set)
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model


_set = object.__setattr__
#: (model class, the field names given) -> the `model_fields_set` those instances share
_FIELDS_SETS: dict[tuple[Any, ...], set[str]] = {}
_new = object.__new__
#: per model class: (immutable defaults, (field, factory) for the others)
_PLANS: dict[type, tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]] = {}


def _plan(cls: type[FactModel]) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]:
    if cls.__pydantic_post_init__ or cls.__private_attributes__:
        raise TypeError(
            f"{cls.__name__}: trusted() cannot build models with post-init or private state"
        )
    static: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    for name, field in cls.model_fields.items():
        if field.default_factory is not None:
            factories.append((name, field.default_factory))  # type: ignore[arg-type]
        elif field.is_required():
            continue
        elif isinstance(field.default, list | dict | set):
            factories.append((name, partial(copy, field.default)))
        else:
            static[name] = field.default
    plan = (static, tuple(factories))
    _PLANS[cls] = plan
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

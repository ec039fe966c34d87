"""Answers as objects: every JSON object the API returns is a `Model`, whose fields are
attributes (`endpoint.id`) and items (`endpoint["id"]`). The classes below name the fields
of the answers used most, for editors and type checkers; every other field is there too."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class Model:
    """A JSON object from the API: fields as attributes (`ep.id`) or items (`ep["id"]`).
    Not a dict, so a field named `keys` or `items` is never shadowed by a dict method."""

    __slots__ = ("_data",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, data: Dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Any:
        return iter(self._data)

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, Model) else other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def to_dict(self) -> Dict[str, Any]:
        """The plain JSON object."""
        return {k: _unwrap(v) for k, v in self._data.items()}

    @staticmethod
    def wrap(value: Any) -> Any:
        if isinstance(value, dict):
            return Model({k: Model.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [Model.wrap(v) for v in value]
        return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


class Endpoint(Model):
    id: str
    url: str
    description: Optional[str]
    event_types: List[str]
    status: str
    failure_count: int
    #: Only on create: the signing secret, shown once.
    secret: str


class Delivery(Model):
    id: str
    event_id: str
    endpoint_id: str
    status: str
    attempt_count: int
    attempts: List[Dict[str, Any]]


class Event(Model):
    id: str
    type: str
    created_at: str
    delivery_count: int
    payload: Dict[str, Any]


class ApiKey(Model):
    id: str
    name: str
    prefix: str
    scopes: List[str]
    status: str
    #: Only on create: the key itself, shown once.
    key: str


class Tenant(Model):
    id: str
    name: str
    status: str


class Job(Model):
    id: str
    queue: str
    status: str
    attempts: int

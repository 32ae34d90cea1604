"""orjson as Flask's JSON provider: UTC times end in ``Z``, UUIDs are strings."""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import JSONProvider
from pydantic import BaseModel

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_bytes(value: Any) -> bytes:
    """``value`` as JSON bytes."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


class OrjsonProvider(JSONProvider):
    """Flask JSON provider backed by orjson."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps_bytes(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dumps_bytes(obj), mimetype=self.mimetype)  # type: ignore[arg-type]

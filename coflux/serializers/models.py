"""pydantic models as their JSON, with the model's import path to rebuild them.

``model_dump_json(round_trip=True)`` then ``Model.model_validate_json``: nested
models, dates and sets come back as they were. A model the reading process
can't import by name (defined in ``__main__`` or inside a function) raises
``Unsuitable`` and goes to cloudpickle.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from . import PREVIEW_LIMIT, Unsuitable


def _is_model(value: Any) -> bool:
    return any(
        c.__name__ == "BaseModel" and c.__module__.startswith("pydantic")
        for c in type(value).__mro__
    )


class PydanticModels:
    format = "pydantic"

    def claims(self, value: Any) -> bool:
        return _is_model(value)

    def dump(self, value: Any) -> tuple[bytes, dict[str, Any]]:
        kind = type(value)
        if kind.__module__ == "__main__" or "<locals>" in kind.__qualname__:
            raise Unsuitable(f"{kind.__qualname__} can't be imported by name")
        try:
            data = value.model_dump_json(round_trip=True).encode()
        except Exception as e:  # a field pydantic can't write as JSON
            raise Unsuitable(str(e)) from None
        return data, {"model": f"{kind.__module__}:{kind.__qualname__}"}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        module, _, qualname = str(meta["model"]).partition(":")
        model: Any = importlib.import_module(module)
        for part in qualname.split("."):
            model = getattr(model, part)
        return model.model_validate_json(data)

    def preview(self, value: Any) -> dict[str, Any]:
        data = json.loads(value.model_dump_json())
        shown: dict[str, Any] = {"kind": "model", "model": type(value).__qualname__, "json": data}
        if len(json.dumps(shown)) > PREVIEW_LIMIT:
            shown["json"] = None
            shown["truncated"] = True
        return shown

"""pandas DataFrames and Series as Parquet (pyarrow), with their index and dtypes.

Parquet through pyarrow keeps the index (named or not, a RangeIndex too),
column order, categoricals, datetimes with their time zone and nullable
dtypes. Frames it can't keep exactly (non-string column names, object
columns of mixed types) raise ``Unsuitable`` and go to cloudpickle.
"""

from __future__ import annotations

import io
from typing import Any

from . import PREVIEW_LIMIT, Unsuitable, module_of

#: Rows of a frame shown in its preview.
HEAD_ROWS = 5
#: Columns described in a preview; a wider frame says how many more there are.
PREVIEW_COLUMNS = 50
_SERIES_COLUMN = "__coflux_series__"


class PandasFrames:
    format = "parquet"

    def claims(self, value: Any) -> bool:
        if module_of(value) != "pandas":
            return False
        import pandas as pd

        return type(value) in (pd.DataFrame, pd.Series)

    def dump(self, value: Any) -> tuple[bytes, dict[str, Any]]:
        import pandas as pd

        try:
            import pyarrow  # noqa: F401
        except ImportError:
            # Without the extra (pip install 'coflux[pandas]') frames are pickled.
            raise Unsuitable("pyarrow is not installed") from None
        meta: dict[str, Any] = {"kind": "frame"}
        frame = value
        if isinstance(value, pd.Series):
            meta = {"kind": "series", "name": _json_name(value.name)}
            frame = value.to_frame(_SERIES_COLUMN)
        if not all(isinstance(c, str) for c in frame.columns) or frame.columns.has_duplicates:
            raise Unsuitable("Parquet needs unique string column names")
        if frame.columns.name is not None or frame.attrs:
            raise Unsuitable("Parquet doesn't keep the columns' name or attrs")
        freq = getattr(frame.index, "freqstr", None)
        if freq is not None:  # Parquet keeps a DatetimeIndex's values, not its frequency
            meta["index_freq"] = freq
        buffer = io.BytesIO()
        try:
            frame.to_parquet(buffer, engine="pyarrow", index=True)
        except Exception as e:  # mixed object columns and other things Arrow can't type
            raise Unsuitable(str(e)) from None
        return buffer.getvalue(), meta

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        import pandas as pd

        frame = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        if meta.get("index_freq"):
            frame.index.freq = meta["index_freq"]
        if meta.get("kind") == "series":
            series = frame[_SERIES_COLUMN]
            series.name = meta.get("name")
            return series
        return frame

    def preview(self, value: Any) -> dict[str, Any]:
        import json

        import pandas as pd

        frame = value.to_frame() if isinstance(value, pd.Series) else value
        columns = [
            {"name": str(name), "dtype": str(dtype)}
            for name, dtype in list(frame.dtypes.items())[:PREVIEW_COLUMNS]
        ]
        shown: dict[str, Any] = {
            "kind": "series" if isinstance(value, pd.Series) else "dataframe",
            "shape": list(value.shape),
            "columns": columns,
            "index": {"name": _json_name(frame.index.name), "dtype": str(frame.index.dtype)},
        }
        if len(frame.columns) > PREVIEW_COLUMNS:
            shown["more_columns"] = len(frame.columns) - PREVIEW_COLUMNS
        head = frame.iloc[:HEAD_ROWS, :PREVIEW_COLUMNS]
        rows = json.loads(head.to_json(orient="split", date_format="iso", default_handler=str))
        shown["head"] = {"index": rows["index"], "rows": rows["data"]}
        while len(json.dumps(shown)) > PREVIEW_LIMIT and shown["head"]["rows"]:
            shown["head"]["rows"].pop()
            shown["head"]["index"].pop()
        return shown


def _json_name(name: Any) -> Any:
    return name if name is None or isinstance(name, (str, int, float, bool)) else str(name)

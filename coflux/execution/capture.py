"""An execution's stdout and stderr, captured line by line as log messages.

While a target runs, ``sys.stdout`` and ``sys.stderr`` are a ``Capture`` each:
every line written becomes one message on the execution's ``Channel``, which
keeps the output budget (I9)."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .channel import Channel

#: The longest line kept whole (longer ones are cut into pieces of this size).
LINE_LIMIT = 64 * 1024


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes stored (UTF-8): the output budget is bytes, and a line
    of replacement characters is three times its length."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Capture:
    """Stands in for sys.stdout/sys.stderr during an execution: each line becomes
    a log message. A line longer than ``LINE_LIMIT`` is cut into pieces, so a
    task writing without newlines holds no more than that in memory."""

    def __init__(self, channel: Channel, stream: str) -> None:
        self._channel = channel
        self._stream = stream
        self._partial = ""
        self.encoding = "utf-8"
        self.errors = "replace"
        #: For code that writes bytes (``sys.stdout.buffer.write``): decoded,
        #: with invalid UTF-8 replaced rather than failing the task.
        self.buffer = BytesCapture(self)

    def write(self, text: str) -> int:
        if self._channel.over_budget():  # counted, not kept: nothing more can be shown
            self._channel.drop(utf8_size(text))
            return len(text)
        self._partial += text
        if "\n" in self._partial:
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._channel.output(self._stream, line)
        while len(self._partial) > LINE_LIMIT:
            piece, self._partial = self._partial[:LINE_LIMIT], self._partial[LINE_LIMIT:]
            self._channel.output(self._stream, piece)
        return len(text)

    def flush(self) -> None:
        pass

    def close_partial(self) -> None:
        if self._partial:
            self._channel.output(self._stream, self._partial)
            self._partial = ""

    def isatty(self) -> bool:
        return False


class BytesCapture:
    def __init__(self, text: Capture) -> None:
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> int:
        self._text.write(self._decoder.decode(bytes(data)))
        return len(data)

    def flush(self) -> None:
        pass

"""The tap's Singer output: every message, its framing, its order, and signals while writing.

The one ordering rule: RECORD lines written by the page loop go to stdout's binary buffer
without a flush; every other message (SCHEMA, STATE, and RECORDs the SDK writes itself) goes
through `write_message`, which writes to the text layer and flushes. A flush pushes out the
RECORD bytes written before it, so a STATE always reaches the target after every record it
covers, and the text layer is empty whenever bytes are written below it.

SIGTERM/SIGINT arriving while a message is written are handled once the write is done
(`signals.GATE`): a signal interrupts a large write to a full pipe part-way, and the STATE
written on the way out would otherwise land in the middle of a RECORD line. One lock keeps
writers from different threads (log lines, under the Airbyte protocol) from interleaving:
every line is whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import threading
from typing import TYPE_CHECKING, Any

import orjson
from singer_sdk.io_base import SingerWriter
from typing_extensions import override

from tap_clevertap.signals import GATE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk.singerlib import Message

# RECORD lines per write: orjson gives each line a 4 KB buffer whatever its length, so a whole
# page's lines at once would hold thousands of them, where a chunk's lines stay in the CPU
# cache.
LINES_PER_WRITE = 64


class SingerOutput(SingerWriter):
    """Writes the tap's Singer messages to stdout (the tap's `message_writer_class`)."""

    def __init__(self) -> None:
        """Nothing being written."""
        super().__init__()
        self._lock = threading.RLock()

    @override
    def write_message(self, message: Message) -> None:
        with self.whole_lines():
            super().write_message(message)

    def record_framing(self, stream: str) -> tuple[bytes, bytes]:
        """What goes before and after a record's JSON on a RECORD line of `stream`."""
        prefix = b'{"type":"RECORD","stream":%s,"record":' % orjson.dumps(stream)
        extracted = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        return prefix, b',"time_extracted":"%s"}\n' % extracted.encode()

    def write_record_lines(self, stream: str, records: list[dict[str, Any]]) -> None:
        """The RECORD messages of a page, unflushed.

        The same messages as the SDK writes (tests/test_sdk_contract.py compares them),
        except that text goes out as UTF-8 where the SDK escapes non-ASCII characters.
        """
        if not records:
            return
        prefix, suffix = self.record_framing(stream)
        between = suffix + prefix
        dumps = orjson.dumps
        with self.whole_lines():
            for start in range(0, len(records), LINES_PER_WRITE):
                chunk = records[start : start + LINES_PER_WRITE]
                try:
                    lines = [dumps(record) for record in chunk]
                except TypeError:
                    lines = [_record_json(record) for record in chunk]
                write_bytes(prefix + between.join(lines) + suffix)

    @contextlib.contextmanager
    def whole_lines(self) -> Iterator[None]:
        """One writer at a time; signals arriving inside the block are handled after it."""
        with GATE.deferred(), self._lock:
            yield


def _record_json(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def write_bytes(data: bytes) -> None:
    """To stdout's binary buffer, without a flush (see the ordering rule above)."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # stdout replaced by a text stream (tests, embedding)
        sys.stdout.write(data.decode())
        return
    view = memoryview(data)
    while view:
        # A signal handled in the middle of a large write to a full pipe makes
        # BufferedWriter.write return early, with what it wrote: write the rest.
        view = view[out.write(view) :]

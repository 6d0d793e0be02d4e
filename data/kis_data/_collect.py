"""From recorded messages to batches of typed Arrow tables, one table per TR and era, in bounded memory.

Every message goes through kis_proto's `MessageDecoder` (acks teach it the AES keys, so notices
decrypt; drift, unknown TRs and broken frames are decided there), except the common case, which
is read without building records: a plain data frame of a TR and width kis_proto knows, with a
three-digit count, is exactly the records ``payload.split("^")`` cut into equal parts, so its
payload goes to the table's buffer as it is. Buffers hold record lines (bytes) and arrival times;
a buffer becomes an Arrow table when it has `batch_rows` records, or, when all of them together
hold more than `buffer_bytes`, the largest one does.
"""

from __future__ import annotations

import logging
import re
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kis_proto import LayoutDrift, MessageDecoder, Record, UndecodableMessage
from kis_proto.layouts import TRS, Layout
from kis_proto.recording import parse_recording_line

from ._arrow import pa, pc
from ._tables import Invalid, TableSpec, convert, quote, raw_table, read_lines, typed_table

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import BinaryIO

__all__ = ["BATCH_ROWS", "BUFFER_BYTES", "Collector", "ExportSummary"]

logger = logging.getLogger("kis_data")

#: Records per batch (a batch ends with the frame that fills it): each is one Parquet row group.
#: Smaller batches pipeline better and hold less memory; 32768 was the fastest measured.
BATCH_ROWS = 32768
#: The record text buffered over all tables before the largest table's batch is cut short.
BUFFER_BYTES = 16 << 20

_PREFIX = b'{"t": '
_MESSAGE = b', "m": "'
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\Z")
# What a JSON string holds only escaped: a message with none of these is the string's content as it is.
_ESCAPED = bytes(range(32)) + b'"\\'

_NEEDS_QUOTES = re.compile('["\\n\\r]')
# KIS writes the record count with three digits; other spellings take the decoder's path.
_COUNTS = {f"{n:03d}".encode(): n for n in range(1, 1000)}


@dataclass
class ExportSummary:
    """What an export or a Parquet recording wrote, and what it could not type."""

    #: Recorded messages read (data frames, acks, PINGPONGs, errors).
    messages: int = 0
    #: Data records written, over all tables.
    records: int = 0
    #: Rows per table (``H0STCNT0``, ``H0STCNT0-2026-08``, ``FOO00000-w3.raw``).
    rows: dict[str, int] = field(default_factory=dict)
    #: The files written (an export: one per table; a recording: every part).
    files: list[Path] = field(default_factory=list)
    #: Lines of the recording that are not recording lines (skipped).
    skipped_lines: int = 0
    #: Messages kis_proto could not decode (bad frames, no key, ...), by `DecodeFailure` name.
    undecodable: dict[str, int] = field(default_factory=dict)
    #: Values exported as null because they do not convert to the column's type: table → column → count.
    invalid: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def raw_tables(self) -> list[str]:
        """The tables of strings: TRs kis_proto does not know, and widths no era has."""
        return [name for name in self.rows if name.endswith(".raw")]


class _Buffer:
    """One table's records not yet handed out: frame payloads grouped by their record count."""

    __slots__ = (
        "groups",
        "multiline",
        "nbytes",
        "order",
        "records",
        "single",
        "single_times",
        "spec",
        "times",
    )

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.clear()

    def clear(self) -> None:
        #: Record count → the payloads of the frames with that many records (one record per line
        #: in group 1: single-record frames, and records that went through the decoder).
        self.groups: dict[int, list[bytes]] = {1: []}
        #: Record count → the arrival time of each of those frames.
        self.times: dict[int, array[float]] = {1: array("d")}
        #: Group 1 and its times, the common case, without the lookup.
        self.single = self.groups[1]
        self.single_times = self.times[1]
        #: The record count of each frame, in arrival order (to put the records back in order).
        self.order = array("H")
        self.records = 0
        self.nbytes = 0
        self.multiline = False


class _Batch:
    """A buffer's content, detached, for conversion (possibly in the worker thread)."""

    __slots__ = ("groups", "multiline", "order", "spec", "times")

    def __init__(self, buffer: _Buffer) -> None:
        self.spec = buffer.spec
        self.groups = buffer.groups
        self.times = buffer.times
        self.order = buffer.order
        self.multiline = buffer.multiline


class Collector:
    """Decodes recorded messages into per-table buffers and hands out typed tables as they fill.

    `emit(spec, table)` receives each batch (a `pyarrow.Table` in `spec.schema`), in order. With
    `background=True`, one worker thread parses each batch's text and runs `emit` (for a file:
    encoding and compression), the long Arrow calls that release the GIL, while the caller goes
    on reading and types the batches in between (many short calls, which would each wait for the
    GIL in a thread). At most a batch or two wait at each stage, so memory stays bounded. Not
    thread-safe: one caller.
    """

    def __init__(
        self,
        emit: Callable[[TableSpec, Any], None],
        *,
        batch_rows: int = BATCH_ROWS,
        buffer_bytes: int = BUFFER_BYTES,
        summary: ExportSummary | None = None,
        background: bool = False,
    ) -> None:
        self._emit = emit
        self._batch_rows = batch_rows
        self._buffer_bytes = buffer_bytes
        self._decoder = MessageDecoder()
        self._buffers: dict[tuple[bytes, int], _Buffer] = {}
        self._pending = 0
        self.summary = summary if summary is not None else ExportSummary()
        self._known: dict[bytes, dict[int, Layout]] = {
            tr_id.encode(): {layout.width: layout for layout in spec.layouts}
            for spec in TRS.values()
            for tr_id in spec.tr_ids
        }
        self._warned: set[tuple[str, str]] = set()
        self._background = background
        # Started with the first full batch: a small recording is done before a thread would help.
        self._worker: ThreadPoolExecutor | None = None
        self._parsing: deque[tuple[_Batch, Future[_Parsed]]] = deque()
        self._emitting: deque[Future[None]] = deque()

    def feed(self, source: BinaryIO, on_skip: Callable[[int, str], None] | None = None) -> None:
        """Take every message of a recording opened in binary, as `kis_proto.recording.replay_lines` reads it.

        A line exactly as `kis_proto.recording.recording_line` writes it, whose message needs no JSON
        unescaping, is cut out of the line as it is; any other line goes through
        `parse_recording_line`. Lines that are not a recording's are skipped, and
        `on_skip(line_number, line)` hears of each. Raises `UnicodeDecodeError` for a file that is
        not UTF-8, as `read_recording` does.
        """
        frame, decoded, number_form, escaped = self._frame, self._add_decoded, _JSON_NUMBER.match, _ESCAPED
        messages = 0
        try:
            for number, line in enumerate(source, 1):
                if line[:6] == _PREFIX:
                    end = -3 if line[-3:] == b'"}\n' else -2 if line[-2:] == b'"}' else 0
                    split = line.find(_MESSAGE, 6)
                    if end and split > 0:
                        message = line[split + 8 : end]
                        if len(message.translate(None, escaped)) == len(message):
                            seconds = line[6:split]
                            if number_form(seconds) is not None:
                                if not message.isascii():
                                    message.decode("utf-8")  # not UTF-8: fails as read_recording does
                                messages += 1
                                t = float(seconds)
                                if not frame(t, message):
                                    decoded(t, message.decode("utf-8"))
                                continue
                text = line.decode("utf-8")
                parsed = parse_recording_line(text)
                if parsed is not None:
                    messages += 1
                    self._add(*parsed)
                    continue
                stripped = text.strip()
                if stripped and not stripped.startswith("#"):
                    self.summary.skipped_lines += 1
                    if on_skip is not None:
                        on_skip(number, text)
        finally:
            self.summary.messages += messages

    def add(self, t: float, message: str) -> None:
        """Take one message as received (`t`: when it arrived, unix seconds). Never raises on content."""
        self.summary.messages += 1
        self._add(t, message)

    def _add(self, t: float, message: str) -> None:
        # A data frame of text may take the fast path too, unless a field would need quoting.
        if message[:2] == "0|" and not _NEEDS_QUOTES.search(message):
            try:
                if self._frame(t, message.encode("utf-8")):
                    return
            except UnicodeEncodeError:
                pass
        self._add_decoded(t, message)

    def _frame(self, t: float, message: bytes) -> bool:
        """Buffer a plain data frame of a known TR and width as it is; False for any other message.

        A frame of a TR and width that already has a buffer (a raw one too: the decoder opened it)
        is cut into the same records the decoder would give.
        """
        if message[:2] != b"0|":
            return False
        parts = message.split(b"|", 3)
        if len(parts) != 4:
            return False
        tr_id, count_text, payload = parts[1], parts[2], parts[3]
        count = _COUNTS.get(count_text)
        if count is None:
            return False
        total = payload.count(b"^") + 1
        width, rest = divmod(total, count)
        if rest:
            return False
        buffer = self._buffers.get((tr_id, width))
        if buffer is None:
            if width not in self._known.get(tr_id, ()):
                return False
            buffer = self._open(tr_id, width)
        if count == 1:
            buffer.single.append(payload)
            buffer.single_times.append(t)
        else:
            group = buffer.groups.get(count)
            if group is None:
                group = buffer.groups[count] = []
                buffer.times[count] = array("d")
            group.append(payload)
            buffer.times[count].append(t)
        buffer.order.append(count)
        buffer.records += count
        size = len(payload) + 1
        buffer.nbytes += size
        self._pending += size
        if buffer.records >= self._batch_rows or self._pending >= self._buffer_bytes:
            self._check(buffer)
        return True

    def _add_decoded(self, t: float, text: str) -> None:
        for event in self._decoder.decode(text):
            if isinstance(event, Record):
                raw = event.raw
                tr_id = event.tr_id.encode()
                buffer = self._buffers.get((tr_id, len(raw))) or self._open(tr_id, len(raw))
                line = "^".join([quote(f) for f in raw]).encode("utf-8")
                buffer.multiline = buffer.multiline or b"\n" in line or b"\r" in line
                buffer.single.append(line)
                buffer.single_times.append(t)
                buffer.order.append(1)
                buffer.records += 1
                buffer.nbytes += len(line) + 1
                self._pending += len(line) + 1
                self._check(buffer)
            elif isinstance(event, UndecodableMessage):
                failure = event.failure.name
                undecodable = self.summary.undecodable
                undecodable[failure] = undecodable.get(failure, 0) + 1
                if ("", failure) not in self._warned:
                    self._warned.add(("", failure))
                    logger.warning("a message could not be decoded (%s): %s; skipped", failure, event.reason)
            elif isinstance(event, LayoutDrift):
                pass  # its records follow, and go to a raw table (logged when it opens)

    def _open(self, tr_id: bytes, width: int) -> _Buffer:
        name = tr_id.decode()
        layout = self._known.get(tr_id, {}).get(width)
        if layout is not None:
            spec = typed_table(name, layout)
        else:
            spec = raw_table(name, width)
            logger.warning(
                "%s records of %d fields: %s; exported as strings to %s",
                name,
                width,
                "no known layout of this TR has that width"
                if tr_id in self._known
                else "a TR this version does not know",
                spec.name,
            )
        buffer = self._buffers[(tr_id, width)] = _Buffer(spec)
        return buffer

    def _check(self, buffer: _Buffer) -> None:
        if buffer.records >= self._batch_rows:
            self._flush(buffer)
        elif self._pending >= self._buffer_bytes:
            self._flush(max(self._buffers.values(), key=lambda b: b.nbytes))

    def flush(self) -> None:
        """Hand out every buffered record now, and wait until every batch has been emitted."""
        for buffer in list(self._buffers.values()):
            self._flush(buffer, final=True)
        while self._parsing:
            self._type(*self._parsing.popleft())
        while self._emitting:
            self._emitting.popleft().result()

    def close(self) -> None:
        """Flush, then stop the worker thread."""
        try:
            self.flush()
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True, cancel_futures=True)
                self._worker = None

    def _flush(self, buffer: _Buffer, *, final: bool = False) -> None:
        if not buffer.order:
            return
        batch = _Batch(buffer)
        self._pending -= buffer.nbytes
        buffer.clear()
        if self._worker is None and self._background and not final:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="kis_data")
        if self._worker is None:
            self._type(batch, _parse(batch))
            return
        # A pipeline: the worker parses this batch while the previous one is typed here.
        self._parsing.append((batch, self._worker.submit(_parse, batch)))
        while len(self._parsing) > 1:
            self._type(*self._parsing.popleft())

    def _type(self, batch: _Batch, parsed: Future[_Parsed] | _Parsed) -> None:
        """Type a parsed batch (here: many short Arrow calls) and have it emitted."""
        if isinstance(parsed, Future):
            parsed = parsed.result()
        spec = batch.spec
        table, invalid = convert(spec, parsed.columns, parsed.times, maybe_hex=parsed.maybe_hex)
        if parsed.counts != [1]:
            table = table.take(_arrival_order(batch, parsed.counts))
        self._note_invalid(spec, invalid)
        summary = self.summary
        summary.rows[spec.name] = summary.rows.get(spec.name, 0) + table.num_rows
        summary.records += table.num_rows
        if self._worker is None:
            self._emit(spec, table)
            return
        while len(self._emitting) >= 2:
            self._emitting.popleft().result()
        self._emitting.append(self._worker.submit(self._emit, spec, table))

    def _note_invalid(self, spec: TableSpec, invalid: dict[str, Invalid]) -> None:
        if not invalid:
            return
        counts = self.summary.invalid.setdefault(spec.name, {})
        for column, found in invalid.items():
            counts[column] = counts.get(column, 0) + found.count
            if (spec.name, column) not in self._warned:
                self._warned.add((spec.name, column))
                assert spec.layout is not None
                kind = next(f.type.name for f in spec.layout.fields if f.name == column)
                logger.warning(
                    "%s %s: %r is not a valid %s; exported as null (this column's count is in the summary)",
                    spec.name,
                    column,
                    found.example[:24],
                    kind,
                )


def _arrival_order(batch: _Batch, counts: list[int]) -> Any:
    """The permutation that puts a batch's records, read group by group, back in arrival order.

    Group k's frames are read as rows of k records, so its records come out record 0 of every
    frame, then record 1 of every frame, and so on. Each record's place is its frame's place in
    arrival order and its own within the frame: sorting by it gives the permutation (in Arrow).
    """
    order = pa.Array.from_buffers(pa.uint16(), len(batch.order), [None, pa.py_buffer(batch.order)])
    keys = []
    for count in counts:
        frames = pc.multiply(pc.cast(pc.indices_nonzero(pc.equal(order, count)), pa.int64()), 1000)
        keys += [pc.add(frames, record) for record in range(count)]
    return pc.sort_indices(pa.chunked_array(keys, pa.int64()))


class _Parsed:
    """A batch's text split into columns (records in group order) and their arrival times."""

    __slots__ = ("columns", "counts", "maybe_hex", "times")

    def __init__(self, columns: list[Any], times: Any, counts: list[int], maybe_hex: bool) -> None:
        self.columns = columns
        self.times = times
        self.counts = counts
        self.maybe_hex = maybe_hex


def _parse(batch: _Batch) -> _Parsed:
    """Split a batch's record text into columns: group k's frames are read as rows of k records.

    Arrow types the integer, decimal and string columns as it parses when every value of the
    batch converts (and no ``x`` could make a hex number); otherwise everything is read as strings
    and `convert` does the careful casts.
    """
    spec, width = batch.spec, batch.spec.width
    counts = sorted(k for k, group in batch.groups.items() if group)
    joined = {count: b"\n".join(batch.groups[count]) + b"\n" for count in counts}
    maybe_hex = any(b"x" in data or b"X" in data for data in joined.values())
    types = None if maybe_hex else spec.parse_types
    while True:
        parts: list[list[Any]] = []  # columns, one list per (group, record of the frame)
        times: list[Any] = []
        try:
            for count in counts:
                table = read_lines(
                    joined[count],
                    width * count,
                    nullable=not spec.raw,
                    multiline=batch.multiline,
                    longest=max(map(len, batch.groups[count])),
                    types=types * count if types is not None else None,
                )
                frame_times = batch.times[count]
                stamps = pa.Array.from_buffers(
                    pa.float64(), len(frame_times), [None, pa.py_buffer(frame_times)]
                )
                for record in range(count):
                    parts.append(table.columns[record * width : (record + 1) * width])
                    times.append(stamps)
        except pa.ArrowInvalid:
            if types is None:
                raise
            types = None  # a value that does not convert: read the text as strings
            continue
        break
    del joined
    columns = [
        pa.chunked_array([c for part in parts for c in part[i].chunks], parts[0][i].type)
        for i in range(width)
    ]
    return _Parsed(columns, pa.chunked_array(times, pa.float64()), counts, maybe_hex)

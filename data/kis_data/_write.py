"""Where the tables go: an export's files, a live recording's parts, or memory; and reading them back.

Recordings and exports hold the user's own execution notices (account number, orders), so every
file is created readable by its owner only (0o600) and every directory created here is 0o700.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._arrow import pa, pq
from ._collect import BATCH_ROWS, BUFFER_BYTES, Collector, ExportSummary

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._tables import TableSpec

__all__ = ["ParquetRecorder", "export", "read_export", "read_recording_arrow"]


def make_private_dir(path: Path) -> None:
    """Create `path` and its missing parents, each readable by the owner only (0o700)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)  # mkdir's mode went through the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")


def open_private(path: Path) -> Any:
    """Open `path` for writing (a native Arrow file), created or truncated readable by the owner only.

    The file is created with mode 0o600 first, then opened by Arrow itself: writes through a
    Python file object would take the GIL for every page.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return pa.OSFile(str(path), mode="w")


def _options(schema: Any, compression: str) -> dict[str, Any]:
    strings = [f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
    return {"compression": compression, "use_dictionary": strings or False}


class _Files:
    """An export's sink: one Parquet file per table, each row group a batch; renamed into place at the end."""

    def __init__(self, directory: Path, compression: str, overwrite: bool) -> None:
        self._directory = directory
        self._compression = compression
        self._overwrite = overwrite
        self._open: dict[str, tuple[Any, Any, Path, Path]] = {}

    def write(self, spec: TableSpec, table: Any) -> None:
        entry = self._open.get(spec.name)
        if entry is None:
            final = self._directory / f"{spec.name}.parquet"
            if final.exists() and not self._overwrite:
                raise FileExistsError(f"{final} exists (overwrite=True replaces it)")
            temporary = self._directory / f".{spec.name}.parquet.tmp"
            file = open_private(temporary)
            writer = pq.ParquetWriter(file, spec.schema, **_options(spec.schema, self._compression))
            entry = self._open[spec.name] = (writer, file, temporary, final)
        entry[0].write_table(table, row_group_size=max(1, table.num_rows))

    def close(self) -> list[Path]:
        done = []
        for writer, file, temporary, final in self._open.values():
            writer.close()
            file.close()
            temporary.replace(final)
            done.append(final)
        self._open.clear()
        return done

    def abort(self) -> None:
        for writer, file, temporary, _ in self._open.values():
            with contextlib.suppress(Exception):
                writer.close()
            file.close()
            temporary.unlink(missing_ok=True)
        self._open.clear()


class _Parts:
    """A live recording's sink: each batch of a table is a complete Parquet file of its own.

    A part is written under a hidden temporary name, flushed to disk and only then linked to its
    final name, so a reader (or a crash) never sees half a part: a recorder killed at any moment
    leaves only complete parts, and at most a ``.…tmp`` file to delete.
    """

    def __init__(self, directory: Path, compression: str, files: list[Path]) -> None:
        self._directory = directory
        self._compression = compression
        self._sequence = 0
        self._files = files

    def write(self, spec: TableSpec, table: Any) -> None:
        folder = self._directory / spec.name
        make_private_dir(folder)
        stamp = table.column("t")[0].as_py().strftime("%Y%m%dT%H%M%SZ")
        self._sequence += 1
        temporary = folder / f".{stamp}-{self._sequence:05d}.parquet.tmp"
        with open_private(temporary) as file:
            pq.write_table(
                table, file, row_group_size=max(1, table.num_rows), **_options(spec.schema, self._compression)
            )
        _sync(temporary)
        while True:
            final = folder / f"{stamp}-{self._sequence:05d}.parquet"
            try:
                os.link(temporary, final)  # never replaces a part already there
            except FileExistsError:
                self._sequence += 1
                continue
            except OSError:  # a file system without hard links
                if final.exists():
                    self._sequence += 1
                    continue
                temporary.replace(final)
            break
        temporary.unlink(missing_ok=True)
        _sync_directory(folder)
        self._files.append(final)


def _sync(path: Path) -> None:
    """Have the file's data on disk before it gets its final name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def export(
    recording: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    compression: str = "zstd",
    on_skip: Callable[[int, str], None] | None = None,
    batch_rows: int = BATCH_ROWS,
    buffer_bytes: int = BUFFER_BYTES,
) -> ExportSummary:
    """Export a `kis-ws record` file to Parquet: one file per TR and era in `out_dir`.

    ``H0STCNT0.parquet`` holds the records of today's layout, ``H0STCNT0-2026-08.parquet`` those
    of an older era, ``FOO00000-w3.raw.parquet`` strings of a TR or width kis_proto does not know
    (see docs/howto/backtesting.md). Streams: memory stays bounded by `buffer_bytes` and one
    batch, whatever the recording's size. Execution notices are decrypted with the keys of their
    recorded acks; acks, keys and PINGPONGs are never written.

    Files are written under hidden temporary names and renamed into place at the end. Raises
    `FileExistsError` when `out_dir` already holds Parquet files (unless `overwrite`: files of the
    same names are then replaced, others are left), `OSError` when the recording cannot be read
    and `UnicodeDecodeError` when it is not text. `on_skip(line_number, line)` hears of each line
    that is not a recording line.
    """
    out = Path(out_dir)
    if out.is_dir() and not overwrite and any(out.glob("*.parquet")):
        raise FileExistsError(f"{out} already holds Parquet files")
    summary = ExportSummary()
    with Path(recording).open("rb") as source:
        make_private_dir(out)
        files = _Files(out, compression, overwrite)
        collector = Collector(
            files.write, batch_rows=batch_rows, buffer_bytes=buffer_bytes, summary=summary, background=True
        )
        try:
            collector.feed(source, on_skip)
            collector.close()
        except BaseException:
            with contextlib.suppress(BaseException):
                collector.close()
            files.abort()
            raise
        summary.files = files.close()
    return summary


def read_recording_arrow(
    recording: str | Path, *, on_skip: Callable[[int, str], None] | None = None
) -> dict[str, Any]:
    """A recording's records as Arrow tables in memory, by table name (as `export` names files).

    The same tables `export` writes, without the files: ``tables["H0STCNT0"].to_pandas()``.
    """
    batches: dict[str, list[Any]] = {}
    schemas: dict[str, Any] = {}

    def keep(spec: TableSpec, table: Any) -> None:
        batches.setdefault(spec.name, []).append(table)
        schemas[spec.name] = spec.schema

    collector = Collector(keep, background=True)
    try:
        with Path(recording).open("rb") as source:
            collector.feed(source, on_skip)
    finally:
        collector.close()
    return {name: pa.concat_tables(tables) for name, tables in batches.items()}


def read_export(directory: str | Path) -> dict[str, Any]:
    """Every table of an export (``NAME.parquet``) or of a Parquet recording (``NAME/*.parquet``).

    A recording's parts are read in name order, which is time order. Hidden and temporary files
    are skipped.
    """
    folder = Path(directory)
    tables: dict[str, Any] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.name.endswith(".parquet"):
            tables[entry.name.removesuffix(".parquet")] = pq.read_table(entry)
        elif entry.is_dir():
            parts = sorted(p for p in entry.glob("*.parquet") if not p.name.startswith((".", "_")))
            if parts:
                tables[entry.name] = pa.concat_tables([pq.read_table(p) for p in parts])
    return tables


class ParquetRecorder:
    """Writes a live session's records as Parquet while it records (``kis-ws record --parquet``).

    Each table gets a folder of parts (``DIR/H0STCNT0/20260914T000001Z-00001.parquet``), and each
    part is a complete file: a recorder killed at any moment (even SIGKILL) leaves every part
    written so far readable and loses only what it had buffered, the records since the last
    roll. A roll writes every buffered table as a part: when `roll_seconds` have passed since the
    first record of the roll (`roll_if_due`), and, for the largest table, when more than
    `roll_bytes` of record text are buffered (which also bounds memory). `close()` rolls a last
    time. Not thread-safe.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        roll_seconds: float = 300.0,
        roll_bytes: int = BUFFER_BYTES,
        compression: str = "zstd",
    ) -> None:
        self.directory = Path(directory)
        make_private_dir(self.directory)
        self.roll_seconds = roll_seconds
        self.summary = ExportSummary()
        parts = _Parts(self.directory, compression, self.summary.files)
        self._collector = Collector(parts.write, buffer_bytes=roll_bytes, summary=self.summary)
        self._started: float | None = None
        self._closed = False

    def add(self, t: float, message: str) -> None:
        """Take one received message (`t`: when it arrived, unix seconds), as a recording line holds it."""
        if self._closed:
            raise ValueError("the recorder is closed")
        t = round(t, 6)  # to the microsecond, as the recording line of the same message holds it
        if self._started is None:
            self._started = t
        self._collector.add(t, message)

    def roll_if_due(self, now: float) -> bool:
        """Roll when `roll_seconds` have passed since the first record of this roll; True if it did."""
        if self._started is not None and now - self._started >= self.roll_seconds:
            self.roll()
            return True
        return False

    def roll(self) -> None:
        """Write every buffered table as a part now."""
        self._started = None
        self._collector.flush()

    def close(self) -> ExportSummary:
        """Roll a last time; what was written is in the returned summary."""
        if not self._closed:
            self._closed = True
            self.roll()
        return self.summary

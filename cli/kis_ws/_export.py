"""``kis-ws export`` and the Parquet side of ``kis-ws record --parquet``: recordings as data.

kis_data (and pyarrow, the ``data`` extra) is imported only when one of them runs, so the other
subcommands never load it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kis_proto.recording import parse_recording_line

from ._errors import CLIError
from ._files import not_ours, readable

if TYPE_CHECKING:
    from types import ModuleType

    from kis_data.parquet import ExportSummary, ParquetRecorder

__all__ = ["duration", "export", "open_recorder", "size", "summary_lines"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?", re.IGNORECASE)
_BYTES = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def duration(text: str) -> float:
    """``--roll``: a time such as ``30s``, ``5m``, ``1h`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: give e.g. 30s, 5m or 1h")
    return float(match[1]) * _SECONDS[(match[2] or "s").lower()]


def size(text: str) -> int:
    """``--roll-size``: a size such as ``16MB``, ``512KB`` or plain bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give e.g. 16MB or 512KB")
    return max(1, int(float(match[1]) * _BYTES[(match[2] or "b").lower()]))


def _kis_data(command: str) -> ModuleType:
    try:
        import kis_data.parquet
    except ImportError:
        raise CLIError(
            f"{command} needs pyarrow, which is not installed",
            hint="install the data extra: pip install 'kis-proto[data]'",
        ) from None
    return kis_data


def _first_line_problem(path: Path) -> CLIError | None:
    """Why `path` is not a recording, judged by its first line that is not blank or a comment."""
    with path.open("rb") as source:
        for number, line in enumerate(source, 1):
            text = line.decode("utf-8", "replace").strip()
            if not text or text.startswith("#"):
                continue
            if parse_recording_line(text) is None:
                return not_ours(str(path), number, text, "not a kis-ws recording")
            return None
    return None


def export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write a recording's records as Parquet, one file per TR and era (and with ``--bars`` its
    bars, one file per trade TR and interval), and say what was written."""
    kis_data = _kis_data("kis-ws export")
    path, target = Path(args.file), Path(args.to)
    with readable(str(path)):
        problem = _first_line_problem(path)
    if problem is not None:
        raise problem
    if target.exists() and not target.is_dir():
        raise CLIError(f"{target} is not a directory", hint="--to names the folder the files go to")
    try:
        summary = kis_data.parquet.export(path, target, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise CLIError(str(exc), hint="choose an empty folder, or add --overwrite") from None
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not text: a kis-ws recording is UTF-8, one JSON object per line") from None
    except OSError as exc:
        raise CLIError(f"cannot export to {target}: {exc.strerror or exc}") from None
    out.writelines(
        f"{file}  {summary.rows.get(file.name.removesuffix('.parquet'), 0):,} rows\n"
        for file in summary.files
    )
    for every in dict.fromkeys(getattr(args, "bars", None) or []):
        try:
            written = kis_data.parquet.export_bars(path, target, every=every, overwrite=args.overwrite)
        except FileExistsError as exc:
            raise CLIError(str(exc), hint="choose an empty folder, or add --overwrite") from None
        except OSError as exc:
            raise CLIError(f"cannot export to {target}: {exc.strerror or exc}") from None
        out.writelines(f"{file}  {rows:,} bar{'s' if rows != 1 else ''}\n" for file, rows in written.items())
        if not written:
            err.write(
                f"{path} holds no trades of a trade TR: no {kis_data.parquet.interval_label(every)} bars\n"
            )
    err.writelines(line + "\n" for line in summary_lines(summary))
    if not summary.messages:
        err.write(f"{path} holds no recorded messages\n")
    return 0


def summary_lines(summary: ExportSummary) -> list[str]:
    """What an export or a Parquet recording could not type or decode, in a few lines."""
    lines = []
    for table, columns in summary.invalid.items():
        counted = ", ".join(f"{column} {count:,}" for column, count in columns.items())
        lines.append(f"{table}: values that do not convert, written as null: {counted}")
    if summary.raw_tables:
        lines.append(f"kept as strings (no known layout): {', '.join(summary.raw_tables)}")
    if summary.undecodable:
        counted = ", ".join(f"{failure} {count:,}" for failure, count in summary.undecodable.items())
        lines.append(f"messages that could not be decoded, skipped: {counted}")
    if summary.skipped_lines:
        lines.append(f"{summary.skipped_lines:,} lines skipped: not recording lines")
    return lines


def open_recorder(args: argparse.Namespace) -> ParquetRecorder:
    """The Parquet recorder of ``kis-ws record --parquet DIR``."""
    kis_data = _kis_data("kis-ws record --parquet")
    folder = Path(args.parquet)
    try:
        recorder: ParquetRecorder = kis_data.parquet.ParquetRecorder(
            folder, roll_seconds=args.roll, roll_bytes=args.roll_size
        )
    except OSError as exc:
        raise CLIError(f"cannot write Parquet to {folder}: {exc.strerror or exc}") from None
    return recorder

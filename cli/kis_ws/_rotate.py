"""``kis-ws record --rotate``: one recording per KST day (or per interval), each one readable alone.

A recording of a session that stays up for days is cut at KST midnight (``--rotate day``) or on
KST clock multiples of an interval (``--rotate 1h``). The file name is a template: ``{date}``
(YYYYMMDD, KST) and ``{time}`` (HHMM) are filled in; a name without them gets ``-YYYYMMDD``
(``-YYYYMMDD-HHMM`` for intervals under a day) before its suffix. Every file starts with the
header and with the subscription acks that carry AES keys, so the execution notices of a later
file still decrypt when it is replayed alone. Files are created readable by their owner only.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from kis_proto import KST
from kis_proto.recording import RECORDING_HEADER, recording_line

from ._errors import CLIError

__all__ = ["Recording", "rotation"]

_DAY = 86_400.0


def rotation(text: str) -> float:
    """``--rotate``: ``day`` or an interval (``1h``, ``30m``) that divides a day."""
    from ._export import duration

    seconds = _DAY if text.strip().lower() == "day" else duration(text)
    if seconds < 60 or _DAY % seconds:
        raise argparse.ArgumentTypeError(
            f"{text!r} does not cut a day into equal files: give day, or e.g. 1h, 30m, 6h"
        )
    return seconds


class Recording:
    """The file (or files, rotated) a ``record`` run appends to, line by line."""

    def __init__(self, template: Path, *, every: float | None) -> None:
        self.template = template
        self.every = every
        self.paths: list[Path] = []
        self._out: TextIO | None = None
        self._until = -float("inf")  # when the current file ends (rotated runs)
        self._keys: dict[tuple[str, str], str] = {}  # the acks with AES keys, by (tr_id, tr_key)

    def path_for(self, t: float) -> Path:
        """The file of a message received at `t` (unix seconds)."""
        if self.every is None:
            return self.template
        start = self._start(t)
        date, clock = start.strftime("%Y%m%d"), start.strftime("%H%M")
        name = self.template.name
        if "{date}" in name or "{time}" in name:
            name = name.replace("{date}", date).replace("{time}", clock)
        else:
            stamp = date if self.every >= _DAY else f"{date}-{clock}"
            path = Path(name)
            name = f"{path.stem}-{stamp}{path.suffix}"
        return self.template.with_name(name)

    def _start(self, t: float) -> datetime:
        assert self.every is not None
        now = datetime.fromtimestamp(t, KST)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        into = (now - midnight).total_seconds()
        return midnight + timedelta(seconds=into - into % self.every)

    def open(self, t: float) -> None:
        """Open (or create) the file of `t`; `CLIError` when it cannot be written."""
        path = self.path_for(t)
        if path.is_dir():
            raise CLIError(f"{path} is a directory", hint="give the recording's file name, e.g. day.kisrec")
        new_file = not path.exists() or path.stat().st_size == 0
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
        # Line-buffered: a killed recorder loses no line it wrote.
        out = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        if new_file:
            out.write(RECORDING_HEADER + "\n")
        if self.paths:  # a rotation: the keys the notices of this file need, first
            for text in self._keys.values():
                out.write(recording_line(t, text) + "\n")
        if self._out is not None:
            self._out.close()
        self._out = out
        self.paths.append(path)
        if self.every is not None:
            self._until = self._start(t).timestamp() + self.every

    def write(self, t: float, text: str) -> None:
        """Append one message received at `t`, in the file of its time."""
        if t >= self._until and self.every is not None:
            self.open(t)
        assert self._out is not None
        self._out.write(recording_line(t, text) + "\n")
        if text.startswith("{") and '"key"' in text:
            self._keep_key(text)

    def _keep_key(self, text: str) -> None:
        try:
            message = json.loads(text)
            header, output = message["header"], message["body"]["output"]
            if output.get("key"):
                self._keys[(header["tr_id"], header["tr_key"])] = text
        except (ValueError, KeyError, TypeError, AttributeError):
            return

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def describe(self) -> str:
        """Where the run's messages went, for the summary line."""
        if len(self.paths) <= 1:
            return str(self.paths[0] if self.paths else self.template)
        return f"{len(self.paths)} files, {self.paths[0]} to {self.paths[-1]}"

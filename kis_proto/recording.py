"""The recording format of ``kis-ws record``: JSON lines of what arrived and when.

`recording_line` writes one line, `parse_recording_line` reads one back, `replay_lines` turns a
recording's lines into events with their arrival times (decrypting notices with their recorded
acks). Reading files is not the core's: `kis_data.read_recording(path)` opens one.
"""

from __future__ import annotations

from ._recording import RECORDING_HEADER, parse_recording_line, recording_line, replay_lines

__all__ = ["RECORDING_HEADER", "parse_recording_line", "recording_line", "replay_lines"]

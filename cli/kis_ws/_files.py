"""``kis-ws decode`` and ``kis-ws replay``: messages from files, read back with the live decoder."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import anyio
from kis_data import read_recording

from kis_proto import MessageDecoder, Record
from kis_proto.recording import parse_recording_line

from ._errors import CLIError
from ._output import describe, json_line

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Iterator

    from kis_proto import Event

__all__ = ["decode", "decode_lines", "not_ours", "readable", "replay"]

_SHOWN = 60  # characters of a bad line quoted in an error


def decode_lines(
    lines: Iterable[str], decoder: MessageDecoder, *, name: str = "the input"
) -> Iterator[Event]:
    """Decode each line as one KIS message; a `kis-ws record` line gives its recorded message.

    The file is judged by its first message line, as `replay` judges a recording: one that is
    neither a KIS message nor a recording line means this is not such a file (`CLIError`, exit 2).
    """
    first = True
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r\n")
        if not text or text.startswith("#"):
            continue
        recorded = parse_recording_line(text)
        if first and recorded is None and not text.startswith(_MESSAGE_STARTS):
            raise not_ours(name, number, text, "neither KIS messages nor a kis-ws recording")
        first = False
        yield from decoder.decode(recorded[1] if recorded is not None else text)


# How every KIS real-time message starts: a frame (0|: plain, 1|: encrypted) or a JSON object.
_MESSAGE_STARTS = ("0|", "1|", "{")


def not_ours(name: str, number: int, line: str, what: str) -> CLIError:
    """The one refusal of `decode` and `replay` for a file that is not what they read (exit 2)."""
    return CLIError(
        f"{name} is {what}: line {number} is {line.strip()[:_SHOWN]!r}",
        hint='a recording line is {"t": <seconds>, "m": <message>}, as kis-ws record writes them; '
        "decode also reads raw KIS messages, one per line",
    )


@contextmanager
def readable(path: str) -> Iterator[None]:
    """Turn a file that cannot be read into a `CLIError` saying why."""
    try:
        yield
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise CLIError(
            f"{path} is not text: kis-ws reads UTF-8 text, one KIS message or recording line per line"
        ) from None
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None


def decode(args: argparse.Namespace, out: TextIO) -> int:
    """Print what the codec makes of each message of a file (raw messages or a recording)."""
    decoder = MessageDecoder()
    for tr_id, key, iv in args.key:
        decoder.set_key(tr_id, key, iv)
    with readable(args.file):
        source = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
        with source:
            out.writelines(
                (json_line(event) if args.jsonl else describe(event)) + "\n"
                for event in decode_lines(source, decoder, name=args.file)
            )
    return 0


async def replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print a recording's records as watch does, at the recorded pace (or `--speed`, `--fast`)."""
    skipped: list[int] = []
    seen_any = False

    def skip(number: int, line: str) -> None:
        if not seen_any and not skipped:
            raise not_ours(args.file, number, line, "not a kis-ws recording")
        skipped.append(number)

    previous: float | None = None
    with readable(args.file):
        for t, event in read_recording(args.file, on_skip=skip):
            seen_any = True
            if not isinstance(event, Record):
                continue
            if not args.fast and previous is not None and t > previous:
                await anyio.sleep((t - previous) / args.speed)
            previous = t
            out.write((json_line(event) if args.jsonl else describe(event)) + "\n")
    if skipped:
        err.write(
            f"{len(skipped)} line{'s' if len(skipped) > 1 else ''} skipped: not recording lines "
            f"(the first is line {skipped[0]})\n"
        )
    if not seen_any:
        err.write(f"{args.file} holds no recorded messages\n")
    return 0

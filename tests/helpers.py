"""Test helpers: the sample frames file and an independent encoder of KIS data frames.

The encoder is written from the wire format of PROTOCOL.md §6–§7 with pycryptodome directly, not
with kis_proto, so a round trip through `decode_message` checks the codec against a second reading
of the protocol rather than against itself.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

if TYPE_CHECKING:
    from collections.abc import Sequence

DATA = Path(__file__).resolve().parent / "data"
FRAMES_TXT = DATA / "frames.txt"

# The synthetic AES vector of frames.txt (PROTOCOL.md §7).
VECTOR_KEY = "iuheqrmvfxoceaxeyqgjwesozgizmmgx"
VECTOR_IV = "d59d91fcf9fd0044"
VECTOR_PLAINTEXT = (
    "myhtsid^5012345601^0000012345^0000000000^02^0^00^0^005930^10^71500^093015^0^2^2^06010^10^홍길동"
    "^^1^N^^^^삼성전자^71500"
)


@dataclass(frozen=True)
class SampleLine:
    """One message line of frames.txt with the comment heading it."""

    section: str
    text: str


def sample_lines() -> list[SampleLine]:
    """Every message line of frames.txt (comment lines only set the section)."""
    section = ""
    out: list[SampleLine] = []
    for line in FRAMES_TXT.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ---"):
            section = line[5:].strip()
        elif line and not line.startswith("#"):
            out.append(SampleLine(section, line))
    return out


def sample(prefix: str, nth: int = 0) -> str:
    """The nth message line of frames.txt that starts with `prefix`."""
    matches = [s.text for s in sample_lines() if s.text.startswith(prefix)]
    return matches[nth]


def fields_of(frame: str) -> list[str]:
    """The payload fields of a plain one-record frame."""
    return frame.split("|", 3)[3].split("^")


def encode_frame(
    tr_id: str, records: Sequence[Sequence[str]], *, key: str | None = None, iv: str = ""
) -> str:
    """Build a data frame ``E|TR_ID|NNN|payload`` the way KIS does; encrypted when `key` is given."""
    payload = "^".join("^".join(record) for record in records)
    if key is None:
        return f"0|{tr_id}|{len(records):03d}|{payload}"
    cipher = AES.new(key.encode(), AES.MODE_CBC, iv.encode())
    blob = base64.b64encode(cipher.encrypt(pad(payload.encode(), 16))).decode()
    return f"1|{tr_id}|{len(records):03d}|{blob}"

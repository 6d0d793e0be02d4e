"""The fast path (frames split and decoded without wsproto) against wsproto on the same byte streams.

Two clients get identical server bytes after their handshakes: one with `fast_path=True`, one
with every byte going through wsproto (`fast_path=False`, the reference). They must produce the
same events and send the same replies (echoes, pongs, close codes), however the bytes are cut,
for valid streams and for broken ones (bad UTF-8, masked or reserved frames, oversize headers,
bad control frames, fragments, garbage).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from kis_proto import ConnectionClosed, Event, KISConfig, KISConnection

from .helpers import sample_lines
from .peers import HOST, PORT, WsprotoServer

MESSAGES = [line.text for line in sample_lines()]


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
    length_bytes: int | None = None,
) -> bytes:
    """One frame, built by hand so that the tests can also build the frames a server must not send.

    `length_bytes` (0, 2 or 8) forces the length's encoding; RFC 6455 §5.2 requires the shortest.
    """
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    if length_bytes == 0:
        head += bytes([mask_bit | n])
    elif length_bytes == 2:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


text_frames = st.sampled_from(MESSAGES).map(lambda t: frame(1, t.encode()))
fragmented = st.sampled_from(MESSAGES).map(
    lambda t: (
        frame(1, t.encode()[:7], fin=False)
        + frame(0, t.encode()[7:20], fin=False)
        + frame(0, t.encode()[20:])
    )
)
control = st.one_of(
    st.binary(max_size=125).map(lambda b: frame(9, b)),  # ping
    st.binary(max_size=125).map(lambda b: frame(10, b)),  # pong
)
# A control frame between the fragments of a message (allowed: RFC 6455 §5.4).
interleaved = st.tuples(st.sampled_from(MESSAGES), control).map(
    lambda pair: frame(1, pair[0].encode()[:9], fin=False) + pair[1] + frame(0, pair[0].encode()[9:])
)
# Lengths in a longer form than needed: wsproto refuses them (1002), so the fast path must too.
non_minimal = st.one_of(
    st.sampled_from(MESSAGES)
    .filter(lambda t: len(t.encode()) < 126)
    .map(lambda t: frame(1, t.encode(), length_bytes=2)),
    st.sampled_from(MESSAGES).map(lambda t: frame(1, t.encode(), length_bytes=8)),
    st.binary(max_size=125).map(lambda b: frame(9, b, length_bytes=2)),  # and on a control frame
)
# Headers wsproto refuses, announcing more than the 4096-byte limit of these tests: the refusal
# (1002) and the size check (1009) must not depend on how the bytes are cut.
bad_and_big = st.sampled_from(
    [
        bytes([0x03, 126]) + (4097).to_bytes(2, "big"),  # a reserved opcode
        bytes([0xC1, 126]) + (4097).to_bytes(2, "big"),  # a reserved bit
        bytes([0x81, 0x80 | 126]) + (4097).to_bytes(2, "big") + b"mask",  # masked
        bytes([0x81, 127]) + (5000).to_bytes(8, "big"),  # 8 bytes for a 2-byte length
        bytes([0x81, 127]) + (2**63 + 5).to_bytes(8, "big"),  # the 64-bit length's top bit set
        bytes([0x00, 126]) + (4097).to_bytes(2, "big"),  # a continuation of nothing
    ]
)
faults = st.one_of(
    st.just(frame(1, b"\xc3\x28")),  # invalid UTF-8
    st.just(frame(1, "0|H0STCNT0|001|가".encode()[:-1])),  # cut inside a character
    st.sampled_from(MESSAGES).map(lambda t: frame(1, t.encode(), mask=True)),  # a masked server frame
    st.sampled_from(MESSAGES).map(lambda t: frame(1, t.encode(), rsv=4)),  # a reserved bit
    st.just(frame(3, b"x")),  # a reserved opcode
    st.just(frame(9, b"x" * 126)),  # a control frame over 125 bytes
    st.just(frame(9, b"x", fin=False)),  # a fragmented control frame
    st.just(frame(0, b"orphan")),  # a continuation with nothing to continue
    st.just(bytes([0x81, 127]) + (2**40).to_bytes(8, "big")),  # an oversize header
    st.just(frame(2, b"\x00\x01")),  # binary
    st.just(frame(8, (1000).to_bytes(2, "big") + b"bye")),  # close
    st.just(frame(8, b"\x03")),  # a close frame with a 1-byte payload
    st.binary(min_size=1, max_size=40),  # garbage
)
streams = st.lists(
    st.one_of(text_frames, text_frames, fragmented, interleaved, control, faults, non_minimal, bad_and_big),
    max_size=10,
).map(b"".join)


@dataclass
class Outcome:
    events: list[Event]
    texts: list[str]
    pongs: list[bytes]
    close_code: int | None


def run(stream: bytes, cuts: list[int], *, fast: bool) -> Outcome:
    client = KISConnection(
        approval_key="k",
        host=HOST,
        port=PORT,
        now=0.0,
        config=KISConfig(fast_path=fast, max_message_size=4096),
    )
    server = WsprotoServer()
    server.receive(client.data_to_send())
    client.receive_data(server.accept(), now=0.0)
    events = client.events()
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(stream)), len(stream)]:
        client.receive_data(stream[start:cut], now=1.0)
        start = cut
        events += client.events()
    out = client.data_to_send()
    # After a close both ways, wsproto refuses further bytes; what it parsed before counts.
    with contextlib.suppress(WSLocalProtocolError):
        server.receive(out)
    return Outcome(events, server.texts, server.pongs, server.close.code if server.close else None)


@given(streams, st.lists(st.integers(0, 3000), max_size=8))
def test_fast_path_matches_wsproto(stream: bytes, cuts: list[int]) -> None:
    fast = run(stream, cuts, fast=True)
    reference = run(stream, cuts, fast=False)
    assert fast == reference
    closes = [e for e in fast.events if isinstance(e, ConnectionClosed)]
    assert len(closes) <= 1
    if closes:
        assert fast.events[-1] is closes[0]


def normalised(outcome: Outcome) -> Outcome:
    """The outcome with close reasons reduced to their codes: wsproto words a UTF-8 error by the
    position where its incremental decoder stopped, which depends on how the bytes were cut."""
    events: list[Event] = [
        ConnectionClosed(code=e.code, clean=e.clean, by_peer=e.by_peer)
        if isinstance(e, ConnectionClosed)
        else e
        for e in outcome.events
    ]
    return Outcome(events, outcome.texts, outcome.pongs, outcome.close_code)


@given(streams)
def test_fast_path_byte_by_byte(stream: bytes) -> None:
    one_by_one = run(stream, list(range(len(stream))), fast=True)
    whole = run(stream, [], fast=True)
    assert normalised(one_by_one) == normalised(whole)


def test_non_minimal_lengths_close_at_the_first_frame() -> None:
    # A hostile server: thousands of text frames whose 7-bit length is sent in 16 bits.
    short = next(t for t in MESSAGES if len(t.encode()) < 126)
    one = frame(1, short.encode(), length_bytes=2)
    for fast in (True, False):
        outcome = run(one * 3600, [], fast=fast)
        assert [type(e).__name__ for e in outcome.events] == ["Connected", "ConnectionClosed"]
        assert outcome.close_code == 1002


def test_the_fast_path_is_the_default() -> None:
    assert KISConfig().fast_path

"""Property tests of KISConnection: peer bytes never raise, chunking never matters, closing is final."""

from __future__ import annotations

from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from kis_proto import ConnectionClosed, Event, KISConnection

from .helpers import sample_lines
from .peers import HOST, PORT, WsprotoServer, connected_pair

EVENT_TYPES = get_args(Event)
MESSAGES = [line.text for line in sample_lines()]


def check_stream(events: list[Event]) -> None:
    assert all(isinstance(e, EVENT_TYPES) for e in events)
    closes = [i for i, e in enumerate(events) if isinstance(e, ConnectionClosed)]
    assert closes in ([], [len(events) - 1]), "ConnectionClosed must be the last event, once"


@given(st.lists(st.binary(max_size=300), max_size=8), st.booleans(), st.floats(0, 1000))
def test_arbitrary_bytes_never_raise(chunks: list[bytes], handshake_done: bool, later: float) -> None:
    if handshake_done:
        client, _ = connected_pair()
    else:
        client = KISConnection(approval_key="k", host=HOST, port=PORT, now=0.0)
    events: list[Event] = []
    for chunk in chunks:
        client.receive_data(chunk, now=1.0)
        assert isinstance(client.data_to_send(), bytes)
        events += client.events()
    client.handle_timer(later)
    client.receive_eof(now=later)
    events += client.events()
    check_stream(events)
    assert isinstance(events[-1], ConnectionClosed)
    assert client.closed
    assert client.timer() is None


def server_stream(server: WsprotoServer, script: list[tuple[str, str]]) -> bytes:
    """The bytes of a scripted server: text messages (some fragmented), pings, and maybe a close."""
    data = server.accept()
    for action, text in script:
        if action == "text":
            data += server.text(text)
        elif action == "fragmented":
            cut = len(text) // 2
            data += server.text(text[:cut], finished=False) + server.text(text[cut:])
        elif action == "ping":
            data += server.ping(text.encode()[:100])
        else:
            data += server.close_with(1000, "bye")
            break
    return data


scripts = st.lists(
    st.tuples(st.sampled_from(["text", "text", "fragmented", "ping", "close"]), st.sampled_from(MESSAGES)),
    max_size=12,
)


@given(scripts, st.lists(st.integers(0, 20_000), max_size=20), st.data())
def test_chunking_never_changes_the_events(
    script: list[tuple[str, str]], cuts: list[int], data: st.DataObject
) -> None:
    client = KISConnection(approval_key="k", host=HOST, port=PORT, now=0.0)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    stream = server_stream(server, script)
    # wsproto's accept depends on the request's Sec-WebSocket-Key, so each feed needs its own
    # client whose key matches: reuse this client for the whole stream, and a byte-by-byte twin.
    client.receive_data(stream, now=1.0)
    whole = client.events()
    check_stream(whole)

    twin = KISConnection(approval_key="k", host=HOST, port=PORT, now=0.0)
    twin_server = WsprotoServer()
    twin_server.receive(twin.data_to_send())
    twin_stream = server_stream(twin_server, script)
    points = sorted({min(c, len(twin_stream)) for c in cuts})
    if data.draw(st.booleans()):
        points = list(range(len(twin_stream)))  # one byte at a time
    start = 0
    pieces: list[Event] = []
    for point in [*points, len(twin_stream)]:
        twin.receive_data(twin_stream[start:point], now=1.0)
        start = point
        pieces += twin.events()
    check_stream(pieces)
    assert pieces == whole

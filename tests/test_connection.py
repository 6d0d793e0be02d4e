"""KISConnection against an independent server peer (wsproto's server role), no sockets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from kis_proto import (
    Connected,
    ConnectionClosed,
    ConnState,
    KISConfig,
    KISConnection,
    LocalProtocolError,
    PingPong,
    RemoteProtocolError,
    Subscribed,
    SubscribeFailed,
    UndecodableMessage,
    Unsubscribed,
    records,
)

from .helpers import VECTOR_IV, VECTOR_KEY, VECTOR_PLAINTEXT, encode_frame, fields_of, sample
from .peers import HOST, PORT, WsprotoServer, ack, connected_pair, pump

if TYPE_CHECKING:
    from collections.abc import Sequence

APPROVAL = "approval-key-0123"


def only_closed(events: Sequence[object]) -> ConnectionClosed:
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, ConnectionClosed)
    assert not any(isinstance(e, ConnectionClosed) for e in events[:-1])
    return last


# -- handshake ---------------------------------------------------------------------------------------


def test_upgrade_request_and_connected() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    assert client.state.value == "connecting"  # (not `is`: mypy would narrow the property)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    assert server.request is not None
    assert server.request.target == "/tryitout"
    assert server.request.host == f"{HOST}:{PORT}"
    client.receive_data(server.accept(), now=1.0)
    assert client.events() == [Connected(path="/tryitout")]
    assert client.state is ConnState.OPEN
    assert client.data_to_send() == b""


def test_custom_path() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0, config=KISConfig(path="/"))
    server = WsprotoServer()
    server.receive(client.data_to_send())
    assert server.request is not None
    assert server.request.target == "/"


def test_refused_upgrade_ends_with_the_reason() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    client.receive_data(server.reject(403), now=0.5)
    closed = only_closed(client.events())
    assert closed.code == 1006
    assert "403" in closed.reason
    assert isinstance(closed.error, RemoteProtocolError)
    assert client.closed
    assert client.timer() is None


def test_garbage_instead_of_an_upgrade_response() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    client.data_to_send()
    client.receive_data(b"\x00\x01garbage\r\n\r\n", now=0.1)
    closed = only_closed(client.events())
    assert closed.error is not None
    assert client.closed


def test_open_timeout() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=100.0)
    assert client.timer() == 110.0
    client.handle_timer(109.999)
    assert client.events() == []
    client.handle_timer(110.0)
    closed = only_closed(client.events())
    assert "handshake" in closed.reason


# -- subscriptions -----------------------------------------------------------------------------------


def test_subscribe_sends_the_request_and_the_ack_comes_back() -> None:
    client, server = connected_pair()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    server.receive(client.data_to_send())
    assert server.requests == [
        {
            "header": {"approval_key": APPROVAL, "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
            "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}},
        }
    ]
    assert client.subscriptions == {("H0STCNT0", "005930"): "pending"}
    events = pump(client, server, server.text(ack("H0STCNT0", "005930")), now=1.2)
    assert [type(e) for e in events] == [Subscribed]
    assert client.subscriptions == {("H0STCNT0", "005930"): "active"}


def test_subscribe_before_the_handshake_is_sent_on_open() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    client.subscribe("H0STASP0", "005930", now=0.0)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    assert server.texts == []
    client.receive_data(server.accept(), now=0.5)
    server.receive(client.data_to_send())
    assert [r["body"]["input"] for r in server.requests] == [{"tr_id": "H0STASP0", "tr_key": "005930"}]
    assert client.timer() == 10.5  # the ack deadline


def test_duplicate_subscribe_sends_nothing() -> None:
    client, server = connected_pair()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    client.subscribe("H0STCNT0", "005930", now=1.0)
    server.receive(client.data_to_send())
    assert len(server.requests) == 1


def test_unsubscribe_sends_tr_type_2_and_frees_the_slot() -> None:
    client, server = connected_pair()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    pump(client, server, server.text(ack("H0STCNT0", "005930")), now=1.0)
    client.unsubscribe("H0STCNT0", "005930", now=2.0)
    server.receive(client.data_to_send())
    assert server.requests[-1]["header"]["tr_type"] == "2"
    assert server.requests[-1]["header"]["approval_key"] == APPROVAL
    reply = json.dumps(
        {
            "header": {"tr_id": "H0STCNT0", "tr_key": "005930", "encrypt": "N"},
            "body": {"rt_cd": "0", "msg_cd": "OPSP0001", "msg1": "UNSUBSCRIBE SUCCESS"},
        }
    )
    events = pump(client, server, server.text(reply), now=2.1)
    assert [type(e) for e in events] == [Unsubscribed]
    assert client.subscriptions == {}


def test_unsubscribe_before_the_request_went_out_forgets_it() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    client.subscribe("H0STCNT0", "005930", now=0.0)
    client.unsubscribe("H0STCNT0", "005930", now=0.0)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    client.receive_data(server.accept(), now=0.1)
    server.receive(client.data_to_send())
    assert server.texts == []
    assert client.subscriptions == {}


def test_second_unsubscribe_while_releasing_sends_nothing() -> None:
    client, server = connected_pair()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    client.unsubscribe("H0STCNT0", "005930", now=1.0)
    client.unsubscribe("H0STCNT0", "005930", now=1.0)
    server.receive(client.data_to_send())
    assert [r["header"]["tr_type"] for r in server.requests] == ["1", "2"]
    assert client.subscriptions == {("H0STCNT0", "005930"): "releasing"}


def test_the_42nd_registration_is_refused_locally() -> None:
    client, _ = connected_pair()
    for n in range(41):
        client.subscribe("H0STCNT0", f"{n:06d}", now=1.0)
    with pytest.raises(LocalProtocolError, match="41") as info:
        client.subscribe("H0STCNT0", "999999", now=1.0)
    assert APPROVAL not in str(info.value)
    client.subscribe("H0STCNT0", "000000", now=1.0)  # a duplicate is not a new registration


def test_malformed_requests_are_refused_locally() -> None:
    client, _ = connected_pair()
    with pytest.raises(LocalProtocolError, match="tr_id"):
        client.subscribe("bad", "005930", now=1.0)
    with pytest.raises(LocalProtocolError, match="not subscribed"):
        client.unsubscribe("H0STCNT0", "005930", now=1.0)
    assert client.data_to_send() == b""


def test_subscribe_timeout() -> None:
    client, server = connected_pair()
    client.subscribe("H0STCNT0", "005930", now=5.0)
    server.receive(client.data_to_send())
    assert client.timer() == 15.0
    client.handle_timer(14.9)
    assert client.events() == []
    client.handle_timer(15.0)
    [failed] = client.events()
    assert isinstance(failed, SubscribeFailed)
    assert failed.timed_out
    assert (failed.tr_id, failed.tr_key) == ("H0STCNT0", "005930")
    assert client.subscriptions == {}
    assert client.timer() == 150.0  # back to the idle deadline (connected at 0)


def test_refusal_frees_the_registration() -> None:
    client, server = connected_pair()
    client.subscribe("H0STCNT0", "005930", now=1.0)
    reply = json.dumps(
        {
            "header": {"tr_id": "H0STCNT0", "tr_key": "005930", "encrypt": "N"},
            "body": {"rt_cd": "1", "msg_cd": "OPSP0008", "msg1": "MAX SUBSCRIBE OVER"},
        }
    )
    [event] = pump(client, server, server.text(reply), now=1.1)
    assert isinstance(event, SubscribeFailed)
    assert client.subscriptions == {}


# -- data ----------------------------------------------------------------------------------------------


def test_every_record_of_a_frame_becomes_an_event() -> None:
    client, server = connected_pair()
    rows = [fields_of(sample("0|H0STCNT0", 0)), fields_of(sample("0|H0STCNT0", 1))] * 2
    events = pump(client, server, server.text(encode_frame("H0STCNT0", rows)), now=1.0)
    assert [e.price for e in events if isinstance(e, records.H0STCNT0)] == [62700, 250500, 62700, 250500]


def test_encrypted_notice_uses_the_key_of_its_ack() -> None:
    client, server = connected_pair()
    client.subscribe("H0STCNI0", "myhtsid", now=1.0)
    pump(
        client,
        server,
        server.text(ack("H0STCNI0", "myhtsid", key=VECTOR_KEY, iv=VECTOR_IV, encrypt="Y")),
        now=1.0,
    )
    frame = encode_frame("H0STCNI0", [VECTOR_PLAINTEXT.split("^")], key=VECTOR_KEY, iv=VECTOR_IV)
    [rec] = pump(client, server, server.text(frame), now=2.0)
    assert isinstance(rec, records.H0STCNI0)
    assert rec.acnt_name == "홍길동"


def test_fragmented_message_is_reassembled() -> None:
    client, server = connected_pair()
    frame = sample("0|H0STCNT0")
    data = server.text(frame[:10], finished=False) + server.text(frame[10:])
    [rec] = pump(client, server, data, now=1.0)
    assert isinstance(rec, records.H0STCNT0)
    assert rec.price == 62700


# -- automatic replies ---------------------------------------------------------------------------------


def test_pingpong_is_echoed_verbatim_as_text() -> None:
    client, server = connected_pair()
    keepalive = '{"header":{"tr_id":"PINGPONG","datetime":"20230502221924"}}'
    events = pump(client, server, server.text(keepalive), now=100.0)
    assert events == [PingPong(text=keepalive)]
    assert server.texts == [keepalive]
    assert server.pongs == []


def test_websocket_ping_gets_a_pong() -> None:
    client, server = connected_pair()
    assert pump(client, server, server.ping(b"abc"), now=1.0) == []
    assert server.pongs == [b"abc"]


def test_server_close_is_answered() -> None:
    client, server = connected_pair()
    client.receive_data(server.close_with(1001, "going away"), now=3.0)
    closed = only_closed(client.events())
    assert (closed.code, closed.reason, closed.clean, closed.by_peer, closed.error) == (
        1001,
        "going away",
        True,
        True,
        None,
    )
    server.receive(client.data_to_send())
    assert server.close is not None
    assert server.close.code == 1001
    assert client.closed


def test_client_close_handshake() -> None:
    client, server = connected_pair()
    client.close(now=5.0)
    assert client.state is ConnState.CLOSING
    assert client.timer() == 15.0
    reply = server.receive(client.data_to_send())
    assert server.close is not None
    assert server.close.code == 1000
    client.receive_data(reply, now=5.1)
    closed = only_closed(client.events())
    assert (closed.code, closed.clean, closed.by_peer) == (1000, True, False)


def test_close_timeout() -> None:
    client, _ = connected_pair()
    client.close(now=5.0)
    client.data_to_send()
    client.handle_timer(15.0)
    closed = only_closed(client.events())
    assert not closed.clean
    assert "close" in closed.reason


def test_close_is_idempotent_and_commands_after_it_are_refused() -> None:
    client, _ = connected_pair()
    client.close(now=1.0)
    client.close(now=1.0)
    with pytest.raises(LocalProtocolError, match="closing"):
        client.subscribe("H0STCNT0", "005930", now=1.0)
    client.receive_eof(now=2.0)
    only_closed(client.events())
    with pytest.raises(LocalProtocolError, match="closed"):
        client.unsubscribe("H0STCNT0", "005930", now=2.0)
    with pytest.raises(LocalProtocolError, match="receive_eof"):
        client.receive_data(b"x", now=2.0)


def test_close_while_connecting() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    client.data_to_send()
    client.close(now=0.1)
    assert only_closed(client.events()).code == 1000
    assert client.data_to_send() == b""


def test_bad_close_code_is_refused() -> None:
    client, _ = connected_pair()
    with pytest.raises(LocalProtocolError, match="close code"):
        client.close(1006, now=0.0)


# -- liveness, limits, faults ---------------------------------------------------------------------------


def test_idle_timeout_counts_from_the_last_bytes() -> None:
    client, server = connected_pair(now=0.0)
    assert client.timer() == 150.0
    pump(client, server, server.ping(), now=100.0)
    assert client.timer() == 250.0
    client.handle_timer(249.0)
    assert client.events() == []
    client.handle_timer(250.0)
    closed = only_closed(client.events())
    assert closed.code == 1011
    assert isinstance(closed.error, RemoteProtocolError)
    server.receive(client.data_to_send())
    assert server.close is not None
    assert server.close.code == 1011


def test_eof_ends_the_connection() -> None:
    client, _ = connected_pair()
    client.receive_eof(now=1.0)
    client.receive_eof(now=1.0)
    closed = only_closed(client.events())
    assert (closed.code, closed.clean) == (1006, False)


@pytest.mark.parametrize("announced", [2**40, 2**20 + 1, 2**63 - 1])
def test_oversize_frame_header_closes_at_once(announced: int) -> None:
    client, server = connected_pair()
    header = bytes([0x81, 127]) + announced.to_bytes(8, "big")  # FIN + TEXT, 64-bit length, no payload
    client.receive_data(header, now=1.0)
    closed = only_closed(client.events())
    assert closed.code == 1009
    server.receive(client.data_to_send())
    assert server.close is not None
    assert server.close.code == 1009


def test_frame_at_the_limit_is_fine() -> None:
    config = KISConfig(max_message_size=200)
    client, server = connected_pair(config=config)
    head, tail = '{"header":{"tr_id":"PINGPONG","datetime":"', '"}}'
    text = head + "1" * (200 - len(head) - len(tail)) + tail
    assert len(text) == 200
    events = pump(client, server, server.text(text), now=1.0)
    assert events == [PingPong(text=text)]


def test_fragments_over_the_limit_close_with_1009() -> None:
    client, server = connected_pair(config=KISConfig(max_message_size=100))
    data = b"".join(server.text("x" * 60, finished=False) for _ in range(2))
    closed = only_closed(pump(client, server, data, now=1.0))
    assert closed.code == 1009


def test_invalid_utf8_closes_with_1007() -> None:
    client, _ = connected_pair()
    client.receive_data(bytes([0x81, 2, 0xC3, 0x28]), now=1.0)
    closed = only_closed(client.events())
    assert closed.code == 1007


def test_binary_message_is_reported_not_fatal() -> None:
    client, server = connected_pair()
    [event] = pump(client, server, server.binary(b"\x01\x02"), now=1.0)
    assert isinstance(event, UndecodableMessage)
    assert not client.closed


def test_nothing_after_connection_closed() -> None:
    client, server = connected_pair()
    trade = server.text(sample("0|H0STCNT0"))
    data = server.close_with(1000) + trade  # a frame after the close frame, in the same read
    client.receive_data(data, now=1.0)
    only_closed(client.events())
    client.receive_data(trade, now=2.0)
    client.handle_timer(1e9)
    assert client.events() == []


def test_frames_right_behind_the_upgrade_response() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    data = server.accept() + server.text(sample("0|H0STCNT0"))
    events = client.events() + pump(client, server, data, now=0.1)
    assert [type(e).__name__ for e in events] == ["Connected", "H0STCNT0_2026_08"]  # a 46-field frame of 2023


def test_oversize_frame_right_behind_the_upgrade_response() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    server = WsprotoServer()
    server.receive(client.data_to_send())
    client.receive_data(server.accept() + bytes([0x81, 127]) + (2**40).to_bytes(8, "big"), now=0.1)
    events = client.events()
    assert isinstance(events[0], Connected)
    assert only_closed(events).code == 1009


def test_secrets_stay_out_of_reprs() -> None:
    client, _ = connected_pair()
    assert APPROVAL not in repr(client)
    assert APPROVAL not in repr(client.config)
    with pytest.raises(LocalProtocolError) as info:
        KISConnection(approval_key="bad\nkey", host=HOST, port=PORT, now=0.0)
    assert "bad\nkey" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "tryitout"},
        {"custtype": "X"},
        {"max_message_size": 0},
        {"idle_timeout": 0.0},
        {"close_timeout": float("nan")},
    ],
)
def test_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        KISConfig(**kwargs)  # type: ignore[arg-type]


def test_binary_message_over_the_limit() -> None:
    client, server = connected_pair(config=KISConfig(max_message_size=100))
    data = server.binary(b"x" * 60)  # 60 bytes, fine
    assert len(pump(client, server, data, now=1.0)) == 1
    from wsproto.events import Message

    data = server.ws.send(Message(data=b"x" * 60, message_finished=False)) + server.ws.send(
        Message(data=b"y" * 60)
    )
    closed = only_closed(pump(client, server, data, now=1.0))
    assert closed.code == 1009


def test_an_endless_upgrade_response_is_bounded() -> None:
    client = KISConnection(approval_key=APPROVAL, host=HOST, port=PORT, now=0.0)
    client.data_to_send()
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n", now=0.0)
    for _ in range(40):  # 40 KiB of header lines; h11 refuses an incomplete head past 16 KiB
        if client.closed:
            break
        client.receive_data(b"X-Filler: " + b"a" * 1012 + b"\r\n", now=0.0)
    closed = only_closed(client.events())
    assert closed.error is not None
    assert len(client._handshake_bytes) < 64 * 1024

"""The connection's state machine: the transition table, and random sessions against the server role."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kis_proto import ConnectionClosed, ConnState, Event, KISConfig, KISConnection, LocalProtocolError
from kis_proto._connection import _TRANSITIONS, _Input
from kis_proto.server import KISServerConnection

from .helpers import fields_of, sample


def test_table_is_total_over_its_own_states_and_closed_is_terminal() -> None:
    states = {state for state, _ in _TRANSITIONS} | set(_TRANSITIONS.values())
    assert states == set(ConnState)
    assert not [key for key in _TRANSITIONS if key[0] is ConnState.CLOSED]
    # Every state can reach CLOSED.
    for state in ConnState:
        seen, frontier = {state}, [state]
        while frontier:
            current = frontier.pop()
            for (source, _), target in _TRANSITIONS.items():
                if source is current and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert ConnState.CLOSED in seen, state


@pytest.mark.parametrize("state", list(ConnState))
@pytest.mark.parametrize("event", list(_Input))
def test_missing_transitions_are_bugs_not_silent(state: ConnState, event: _Input) -> None:
    client = KISConnection(approval_key="k", host="h", port=1, now=0.0)
    client._state = state
    if (state, event) in _TRANSITIONS:
        client._fire(event)
        assert client.state is _TRANSITIONS[(state, event)]
    else:
        with pytest.raises(AssertionError, match="no transition"):
            client._fire(event)
        assert client.state is state


TRADE = fields_of(sample("0|H0STCNT0"))


class Session(RuleBasedStateMachine):
    """Random interleavings of commands, server actions, time and faults."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.client = KISConnection(
            approval_key="key", host="h", port=1, now=0.0, config=KISConfig(max_subscriptions=3)
        )
        self.server = KISServerConnection(
            now=0.0, approval_ok=lambda key: key == "key", random_bytes=random.Random(1).randbytes
        )
        self.events: list[Event] = []
        self.ended = False

    def pump(self) -> None:
        for _ in range(20):
            a, b = self.client.data_to_send(), self.server.data_to_send()
            if not a and not b:
                break
            if a and not self.server.closed:
                self.server.receive_data(a, now=self.now)
            if b and not self.client.closed:
                self.client.receive_data(b, now=self.now)
        self.server.events()
        self.events += self.client.events()

    def command(self, action: str, *args: str) -> None:
        before = self.client.state
        try:
            getattr(self.client, action)(*args, now=self.now)
        except LocalProtocolError:
            assert self.client.state is before  # misuse changes nothing
        self.pump()

    @rule(key=st.sampled_from(["000001", "000002", "000003", "000004"]))
    def subscribe(self, key: str) -> None:
        self.command("subscribe", "H0STCNT0", key)

    @rule(key=st.sampled_from(["000001", "000002", "000003", "000004"]))
    def unsubscribe(self, key: str) -> None:
        self.command("unsubscribe", "H0STCNT0", key)

    @rule()
    def close(self) -> None:
        self.command("close")

    @precondition(lambda self: not self.server.closed and self.server.subscriptions)
    @rule(count=st.integers(1, 5))
    def records(self, count: int) -> None:
        try:
            self.server.send_records("H0STCNT0", [TRADE] * count)
        except LocalProtocolError:
            return  # the server is closing
        self.pump()

    @rule()
    def server_closes(self) -> None:
        self.server.close(now=self.now)
        self.pump()

    @rule(seconds=st.sampled_from([0.5, 5.0, 11.0, 101.0, 151.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.server.handle_timer(self.now)
        self.client.handle_timer(self.now)
        self.pump()

    @precondition(lambda self: not self.ended)  # bytes after EOF would be the transport's bug
    @rule(data=st.binary(min_size=1, max_size=20))
    def garbage(self, data: bytes) -> None:
        self.client.receive_data(data, now=self.now)
        self.pump()

    @rule()
    def eof(self) -> None:
        self.ended = True
        self.client.receive_eof(now=self.now)
        self.pump()

    @invariant()
    def closed_is_final_and_last(self) -> None:
        closes = [i for i, e in enumerate(self.events) if isinstance(e, ConnectionClosed)]
        assert closes in ([], [len(self.events) - 1])
        if self.client.closed:
            assert closes
            assert self.client.timer() is None
            assert self.client.data_to_send() == b""
        else:
            timer = self.client.timer()
            assert timer is not None
            assert timer > self.now - 200  # a deadline is never left far behind

    @invariant()
    def within_the_cap(self) -> None:
        assert len(self.client.subscriptions) <= 3


TestSession = Session.TestCase
TestSession.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)

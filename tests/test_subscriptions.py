"""The subscription registry: dedup, the 41 cap, server replies, and restore after a reconnect."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kis_proto._errors import LocalProtocolError
from kis_proto._subscriptions import KIS_MAX_SUBSCRIPTIONS, SubscriptionRegistry, SubState

WANTED, PENDING, ACTIVE, REJECTED = SubState.WANTED, SubState.PENDING, SubState.ACTIVE, SubState.REJECTED
SAMSUNG = ("H0STCNT0", "005930")
HYNIX = ("H0STCNT0", "000660")
BOOK = ("H0STASP0", "005930")
APPLE = ("HDFSCNT0", "DNASAAPL")


def registry_with(state: SubState | None, key: tuple[str, str] = SAMSUNG) -> SubscriptionRegistry:
    """A registry holding `key` in `state` (None: not holding it), reached through the public API."""
    registry = SubscriptionRegistry()
    if state is None:
        return registry
    assert registry.add(*key) is True
    if state is not WANTED:
        registry.mark_sent(*key)
    if state is ACTIVE:
        assert registry.on_subscribed(*key) is True
    if state is REJECTED:
        assert registry.on_failed(*key, "OPSP0008") is True
    assert registry.state(*key) is state
    return registry


def test_add_records_the_desire_once_and_keeps_the_order() -> None:
    registry = SubscriptionRegistry()
    assert registry.add(*HYNIX) is True
    assert registry.add(*SAMSUNG) is True
    assert registry.add(*HYNIX) is False  # a duplicate: nothing to send
    assert registry.add(*BOOK) is True
    assert list(registry) == [HYNIX, SAMSUNG, BOOK]
    assert len(registry) == 3
    assert SAMSUNG in registry
    assert APPLE not in registry
    assert "H0STCNT0" not in registry
    assert registry.state(*SAMSUNG) is WANTED
    assert registry.state(*APPLE) is None
    # Not connected yet: the next connection subscribes all of them, in the order asked.
    assert registry.to_restore() == [HYNIX, SAMSUNG, BOOK]
    assert registry.registrations == 3


def test_lifecycle_wanted_pending_active() -> None:
    registry = SubscriptionRegistry()
    registry.add(*SAMSUNG)
    registry.add(*APPLE)
    registry.mark_sent(*SAMSUNG)
    assert registry.state(*SAMSUNG) is PENDING
    assert registry.pending() == [SAMSUNG]
    assert registry.to_restore() == [APPLE]
    assert registry.on_subscribed(*SAMSUNG) is True
    assert registry.state(*SAMSUNG) is ACTIVE
    assert registry.active() == [SAMSUNG]
    assert registry.pending() == []
    # A repeated ack (OPSP0002 after OPSP0000) changes nothing.
    assert registry.on_subscribed(*SAMSUNG) is False
    assert registry.state(*SAMSUNG) is ACTIVE
    # Duplicates of a pending or active key need no request.
    registry.mark_sent(*APPLE)
    assert registry.add(*APPLE) is False
    assert registry.add(*SAMSUNG) is False
    assert registry.state(*APPLE) is PENDING


def test_a_rejected_key_stays_rejected_until_added_again() -> None:
    registry = SubscriptionRegistry()
    for key in (SAMSUNG, HYNIX, APPLE):
        registry.add(*key)
        registry.mark_sent(*key)
    assert registry.on_failed(*HYNIX, "OPSP0008") is True
    assert registry.state(*HYNIX) is REJECTED
    assert registry.rejected() == {HYNIX: "OPSP0008"}
    assert registry.registrations == 2
    assert len(registry) == 3
    # A reconnect does not retry it...
    registry.connection_lost()
    assert registry.to_restore() == [SAMSUNG, APPLE]
    assert registry.state(*HYNIX) is REJECTED
    # ...adding it again does, and it keeps its place in the order.
    assert registry.add(*HYNIX) is True
    assert registry.state(*HYNIX) is WANTED
    assert registry.rejected() == {}
    assert registry.to_restore() == [SAMSUNG, HYNIX, APPLE]


def test_connection_lost_makes_pending_and_active_wanted() -> None:
    registry = SubscriptionRegistry()
    for key in (SAMSUNG, HYNIX, BOOK, APPLE):
        registry.add(*key)
    registry.mark_sent(*HYNIX)
    registry.mark_sent(*BOOK)
    registry.on_subscribed(*BOOK)
    registry.mark_sent(*APPLE)
    registry.on_failed(*APPLE, "OPSP0009")
    assert [registry.state(*k) for k in registry] == [WANTED, PENDING, ACTIVE, REJECTED]
    registry.connection_lost()
    assert [registry.state(*k) for k in registry] == [WANTED, WANTED, WANTED, REJECTED]
    assert registry.to_restore() == [SAMSUNG, HYNIX, BOOK]
    assert registry.rejected() == {APPLE: "OPSP0009"}
    # On the new connection each is sent again; OPSP0002 (already in subscribe) is an ack too.
    for key in registry.to_restore():
        registry.mark_sent(*key)
        assert registry.on_subscribed(*key) is True
    assert registry.active() == [SAMSUNG, HYNIX, BOOK]
    assert registry.to_restore() == []


def test_the_cap_is_41_and_the_error_says_what_to_do() -> None:
    registry = SubscriptionRegistry()
    assert registry.max_subscriptions == KIS_MAX_SUBSCRIPTIONS == 41
    keys = [("H0STCNT0", f"{n:06d}") for n in range(41)]
    for key in keys:
        assert registry.add(*key) is True
    assert registry.registrations == 41
    with pytest.raises(LocalProtocolError, match=r"limit is 41 per session") as info:
        registry.add("H0STCNT0", "999999")
    assert "unsubscribe something first" in str(info.value)
    assert "OPSP0008" in str(info.value)
    assert ("H0STCNT0", "999999") not in registry
    # A duplicate at the cap is no new registration: no error.
    assert registry.add(*keys[0]) is False
    # A rejected key frees its slot; re-adding it needs one again.
    registry.mark_sent(*keys[5])
    registry.on_failed(*keys[5], "OPSP0008")
    assert registry.registrations == 40
    assert registry.add("H0STCNT0", "999999") is True
    with pytest.raises(LocalProtocolError, match="limit is 41"):
        registry.add(*keys[5])
    assert registry.state(*keys[5]) is REJECTED
    # Removing one makes room.
    assert registry.remove(*keys[0]) is False  # it was only WANTED: nothing to unsubscribe
    assert registry.add(*keys[5]) is True


def test_a_smaller_cap() -> None:
    registry = SubscriptionRegistry(max_subscriptions=2)
    registry.add(*SAMSUNG)
    registry.add(*HYNIX)
    with pytest.raises(LocalProtocolError, match=r"limit is 2 per session \(KIS allows 41 per appkey"):
        registry.add(*APPLE)


@pytest.mark.parametrize(
    ("state", "sent_to_server"),
    [(None, False), (WANTED, False), (PENDING, True), (ACTIVE, True), (REJECTED, False)],
)
def test_remove_forgets_and_says_whether_to_unsubscribe(state: SubState | None, sent_to_server: bool) -> None:
    registry = registry_with(state)
    assert registry.remove(*SAMSUNG) is sent_to_server
    assert SAMSUNG not in registry
    assert registry.rejected() == {}
    assert registry.remove(*SAMSUNG) is False  # idempotent


@pytest.mark.parametrize(
    ("state", "hint"),
    [
        (None, "add\\(\\) it first"),
        (PENDING, "already sent on this connection"),
        (ACTIVE, "already holds it"),
        (REJECTED, "add\\(\\) it again"),
    ],
)
def test_mark_sent_only_from_wanted(state: SubState | None, hint: str) -> None:
    registry = registry_with(state)
    with pytest.raises(LocalProtocolError, match=hint):
        registry.mark_sent(*SAMSUNG)
    assert registry.state(*SAMSUNG) is state


# The whole table, written out by hand: the state a key starts in, then for each call the return
# value and the state after. The server's replies never raise.
Call = Callable[[SubscriptionRegistry], bool]
CALLS: dict[str, Call] = {
    "add": lambda r: r.add(*SAMSUNG),
    "remove": lambda r: r.remove(*SAMSUNG),
    "on_subscribed": lambda r: r.on_subscribed(*SAMSUNG),
    "on_failed": lambda r: r.on_failed(*SAMSUNG, "OPSP0009"),
    "on_unsubscribed": lambda r: r.on_unsubscribed(*SAMSUNG),
}
TABLE: dict[tuple[SubState | None, str], tuple[bool, SubState | None]] = {
    (None, "add"): (True, WANTED),
    (WANTED, "add"): (False, WANTED),
    (PENDING, "add"): (False, PENDING),
    (ACTIVE, "add"): (False, ACTIVE),
    (REJECTED, "add"): (True, WANTED),
    (None, "remove"): (False, None),
    (WANTED, "remove"): (False, None),
    (PENDING, "remove"): (True, None),
    (ACTIVE, "remove"): (True, None),
    (REJECTED, "remove"): (False, None),
    (None, "on_subscribed"): (False, None),
    (WANTED, "on_subscribed"): (False, WANTED),  # not requested here: asked again, KIS says OPSP0002
    (PENDING, "on_subscribed"): (True, ACTIVE),
    (ACTIVE, "on_subscribed"): (False, ACTIVE),
    (REJECTED, "on_subscribed"): (False, REJECTED),
    (None, "on_failed"): (False, None),
    (WANTED, "on_failed"): (False, WANTED),
    (PENDING, "on_failed"): (True, REJECTED),
    (ACTIVE, "on_failed"): (False, ACTIVE),
    (REJECTED, "on_failed"): (False, REJECTED),
    (None, "on_unsubscribed"): (False, None),
    (WANTED, "on_unsubscribed"): (False, WANTED),
    (PENDING, "on_unsubscribed"): (False, PENDING),
    (ACTIVE, "on_unsubscribed"): (True, WANTED),  # KIS no longer holds what the user wants
    (REJECTED, "on_unsubscribed"): (False, REJECTED),
}


@pytest.mark.parametrize(("start", "call"), list(TABLE))
def test_every_transition(start: SubState | None, call: str) -> None:
    registry = registry_with(start)
    result, after = TABLE[start, call]
    assert CALLS[call](registry) is result
    assert registry.state(*SAMSUNG) is after
    # The reason is the code of the refusal that rejected the key; a later one does not replace it.
    reason = "OPSP0009" if start is PENDING else "OPSP0008"
    assert registry.rejected() == ({SAMSUNG: reason} if after is REJECTED else {})


def test_a_refused_unsubscribe_never_rejects_a_re_added_key() -> None:
    # remove() sends an unsubscribe; add() again sends a subscribe; the unsubscribe's OPSP0003
    # arrives while the new subscribe is pending and must not be taken as its refusal.
    registry = registry_with(ACTIVE)
    assert registry.remove(*SAMSUNG) is True
    assert registry.add(*SAMSUNG) is True
    registry.mark_sent(*SAMSUNG)
    assert registry.on_failed(*SAMSUNG, "OPSP0003") is False
    assert registry.on_unsubscribed(*SAMSUNG) is False
    assert registry.state(*SAMSUNG) is PENDING
    assert registry.on_subscribed(*SAMSUNG) is True
    assert registry.active() == [SAMSUNG]


def test_replies_about_other_keys_do_not_touch_this_one() -> None:
    registry = registry_with(PENDING)
    assert registry.on_subscribed(*HYNIX) is False
    assert registry.on_failed(*BOOK, "OPSP0008") is False
    assert registry.on_unsubscribed(*APPLE) is False
    assert list(registry) == [SAMSUNG]
    assert registry.state(*SAMSUNG) is PENDING


@pytest.mark.parametrize(
    ("tr_id", "tr_key", "match"),
    [
        ("h0stcnt0", "005930", "tr_id"),
        ("H0STCNT", "005930", "tr_id"),
        ("H0STCNT0", "", "tr_key"),
        ("H0STCNT0", "005930^000660", "tr_key"),
        ("H0STCNT0", "x" * 33, "tr_key"),
    ],
)
def test_malformed_keys_are_refused_before_they_are_stored(tr_id: str, tr_key: str, match: str) -> None:
    registry = SubscriptionRegistry()
    with pytest.raises(LocalProtocolError, match=match):
        registry.add(tr_id, tr_key)
    assert len(registry) == 0


@pytest.mark.parametrize("bad", [0, -1, True, 41.0, "41"])
def test_max_subscriptions_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="max_subscriptions"):
        SubscriptionRegistry(bad)  # type: ignore[arg-type]


def test_repr_gives_counts_not_keys() -> None:
    registry = SubscriptionRegistry()
    registry.add("H0STCNI0", "my-hts-id")
    registry.add(*SAMSUNG)
    registry.mark_sent(*SAMSUNG)
    registry.add(*APPLE)
    registry.mark_sent(*APPLE)
    registry.on_failed(*APPLE, "OPSP0009")
    text = repr(registry)
    assert text == "<SubscriptionRegistry 2/41 registrations: 0 active, 1 pending, 1 wanted, 1 rejected>"
    assert "my-hts-id" not in text


def test_iteration_is_over_a_snapshot() -> None:
    registry = registry_with(WANTED)
    registry.add(*HYNIX)
    for key in registry:
        registry.remove(*key)
    assert len(registry) == 0


# -- a model-based test: random call sequences against a plain dict ---------------------------------

TR_IDS = ["H0STCNT0", "H0STASP0"]
TR_KEYS = ["005930", "000660", "DNASAAPL"]
keys = st.tuples(st.sampled_from(TR_IDS), st.sampled_from(TR_KEYS))
codes = st.sampled_from(["OPSP0008", "OPSP0009", "OPSP8991", "OPSP0003", "XXXX0000"])


class RegistryMachine(RuleBasedStateMachine):
    """The registry against a dict key -> (state, reason), with a small cap so it is hit often."""

    def __init__(self) -> None:
        super().__init__()
        self.cap = KIS_MAX_SUBSCRIPTIONS
        self.registry = SubscriptionRegistry()
        self.model: dict[tuple[str, str], tuple[SubState, str]] = {}

    @initialize(cap=st.integers(1, 4))
    def start(self, cap: int) -> None:
        self.cap = cap
        self.registry = SubscriptionRegistry(max_subscriptions=cap)

    def held(self) -> int:
        return sum(1 for state, _ in self.model.values() if state is not REJECTED)

    @rule(key=keys)
    def add(self, key: tuple[str, str]) -> None:
        old = self.model.get(key)
        fresh = old is None or old[0] is REJECTED
        if fresh and self.held() >= self.cap:
            with pytest.raises(LocalProtocolError, match=f"limit is {self.cap}"):
                self.registry.add(*key)
            return
        assert self.registry.add(*key) is fresh
        if fresh:
            self.model[key] = (WANTED, "")

    @rule(key=keys)
    def remove(self, key: tuple[str, str]) -> None:
        old = self.model.pop(key, None)
        assert self.registry.remove(*key) is (old is not None and old[0] in (PENDING, ACTIVE))

    @rule(key=keys)
    def mark_sent(self, key: tuple[str, str]) -> None:
        old = self.model.get(key)
        if old is not None and old[0] is WANTED:
            self.registry.mark_sent(*key)
            self.model[key] = (PENDING, "")
        else:
            with pytest.raises(LocalProtocolError):
                self.registry.mark_sent(*key)

    @rule(key=keys)
    def server_ack(self, key: tuple[str, str]) -> None:
        old = self.model.get(key)
        moved = old is not None and old[0] is PENDING
        assert self.registry.on_subscribed(*key) is moved
        if moved:
            self.model[key] = (ACTIVE, "")

    @rule(key=keys, code=codes)
    def server_reject(self, key: tuple[str, str], code: str) -> None:
        old = self.model.get(key)
        moved = old is not None and old[0] is PENDING and code != "OPSP0003"
        assert self.registry.on_failed(*key, code) is moved
        if moved:
            self.model[key] = (REJECTED, code)

    @rule(key=keys)
    def server_unsubscribed(self, key: tuple[str, str]) -> None:
        old = self.model.get(key)
        moved = old is not None and old[0] is ACTIVE
        assert self.registry.on_unsubscribed(*key) is moved
        if moved:
            self.model[key] = (WANTED, "")

    @rule()
    def connection_lost(self) -> None:
        self.registry.connection_lost()
        for key, (state, reason) in self.model.items():
            if state in (PENDING, ACTIVE):
                self.model[key] = (WANTED, reason)

    @invariant()
    def matches_the_model(self) -> None:
        assert list(self.registry) == list(self.model)
        assert len(self.registry) == len(self.model)
        for key, (state, _) in self.model.items():
            assert self.registry.state(*key) is state
            assert key in self.registry

    @invariant()
    def never_over_the_cap(self) -> None:
        assert self.registry.registrations == self.held() <= self.cap

    @invariant()
    def views_in_insertion_order(self) -> None:
        def of(state: SubState) -> list[tuple[str, str]]:
            return [key for key, (s, _) in self.model.items() if s is state]

        assert self.registry.to_restore() == of(WANTED)
        assert self.registry.pending() == of(PENDING)
        assert self.registry.active() == of(ACTIVE)
        assert self.registry.rejected() == {
            key: reason for key, (s, reason) in self.model.items() if s is REJECTED
        }


TestRegistryMachine = RegistryMachine.TestCase

"""The subscription registry: the registrations a user wants, which outlive any one socket.

A `KISConnection` lives for one socket; what the user asked for must survive a reconnect and be
restored on the next connection. `SubscriptionRegistry` keeps that set, deduplicated and in the
order it was asked for, with where each key stands on the current connection. It enforces KIS's
limit of 41 registrations per appkey session (PROTOCOL.md §9; each (tr_id, tr_key) pair counts
one), so the 42nd fails at once in the caller's code rather than as ``OPSP0008 MAX SUBSCRIBE OVER``
from the server a round trip later.

The registry sends nothing: it answers "must a request be sent?" and is told what was sent and
what the server replied. Like the rest of the core it does no I/O and raises `LocalProtocolError`
only for the caller's own mistakes; a server reply it cannot place is ignored, never raised.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from ._codec import check_subscription
from ._codes import MsgCode
from ._errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["KIS_MAX_SUBSCRIPTIONS", "SubState", "SubscriptionRegistry"]

#: Registrations KIS accepts per appkey session; the 42nd is refused with ``OPSP0008`` (PROTOCOL.md §9).
KIS_MAX_SUBSCRIPTIONS = 41

Key = tuple[str, str]


class SubState(enum.Enum):
    """Where one desired (tr_id, tr_key) registration stands."""

    #: Desired, but not requested on the current connection (before the first connection, or after
    #: a reconnect): `SubscriptionRegistry.to_restore` lists these.
    WANTED = "wanted"
    #: The subscribe request was sent on this connection; no reply yet.
    PENDING = "pending"
    #: The server holds it: ``OPSP0000 SUBSCRIBE SUCCESS`` or ``OPSP0002 ALREADY IN SUBSCRIBE``.
    ACTIVE = "active"
    #: The server refused it (``OPSP0008 MAX SUBSCRIBE OVER`` or another code). It is not retried,
    #: not even after a reconnect, until the user removes it or adds it again.
    REJECTED = "rejected"


class _Input(enum.Enum):
    ADD = "add"  # the user wants the key
    SEND = "send"  # the subscribe request was queued on the current connection
    REMOVE = "remove"  # the user no longer wants the key
    SUBSCRIBED = "subscribed"  # the server: OPSP0000 or OPSP0002
    FAILED = "failed"  # the server refused the subscribe
    UNSUBSCRIBED = "unsubscribed"  # the server: OPSP0001
    LOST = "lost"  # the connection ended


WANTED, PENDING, ACTIVE, REJECTED = SubState.WANTED, SubState.PENDING, SubState.ACTIVE, SubState.REJECTED

# Theory of operation. Each key has a state; None means "not in the registry". The table below is
# every legal (state, input) -> new state; nothing else in this module moves a key. Inputs come
# from three places, and a missing entry means something different for each:
#
# * the user (ADD, SEND, REMOVE): a missing entry is API misuse and raises LocalProtocolError;
# * the server (SUBSCRIBED, FAILED, UNSUBSCRIBED): a missing entry is a reply the registry cannot
#   place (late, duplicated, about a key already removed) and is ignored: peer input never raises;
# * the socket (LOST): every state has an entry.
#
# Server replies only move keys the registry is waiting on. Ignoring a success for a key it is not
# waiting on is safe (the key is requested again and KIS answers OPSP0002, itself a success);
# ignoring a loss is not, so an ACTIVE key that KIS says it released goes back to WANTED.
_TRANSITIONS: dict[tuple[SubState | None, _Input], SubState | None] = {
    # The user.
    (None, _Input.ADD): WANTED,
    (REJECTED, _Input.ADD): WANTED,  # the one way to retry a refused key
    (WANTED, _Input.ADD): WANTED,  # duplicates: already desired, nothing to send
    (PENDING, _Input.ADD): PENDING,
    (ACTIVE, _Input.ADD): ACTIVE,
    (WANTED, _Input.SEND): PENDING,
    **{(state, _Input.REMOVE): None for state in (None, *SubState)},
    # The server.
    (PENDING, _Input.SUBSCRIBED): ACTIVE,
    (ACTIVE, _Input.SUBSCRIBED): ACTIVE,
    (PENDING, _Input.FAILED): REJECTED,
    (ACTIVE, _Input.UNSUBSCRIBED): WANTED,
    # The socket: what the server held is gone with the session; a refusal stands.
    (WANTED, _Input.LOST): WANTED,
    (PENDING, _Input.LOST): WANTED,
    (ACTIVE, _Input.LOST): WANTED,
    (REJECTED, _Input.LOST): REJECTED,
}

# What to do instead, for each illegal (state, SEND): the only user input that can be illegal.
_SEND_ERRORS: dict[SubState | None, str] = {
    None: "it is not in the registry; add() it first",
    PENDING: "its request was already sent on this connection; wait for the reply "
    "(after a reconnect, call connection_lost() first)",
    ACTIVE: "the server already holds it; there is nothing to send",
    REJECTED: "the server refused it; add() it again to retry",
}


class SubscriptionRegistry:
    """The desired subscriptions of one appkey session, kept across reconnects.

    Keys are ``(tr_id, tr_key)`` pairs, deduplicated and kept in the order they were first added.
    The transport (or the connection) drives it:

    * `add` / `remove` when the user subscribes or unsubscribes; each says whether a request must
      go to the server;
    * `mark_sent` once the subscribe request is queued on the current connection;
    * `on_subscribed`, `on_failed`, `on_unsubscribed` with the server's replies;
    * `connection_lost` when the socket ends, then `to_restore` on the next connection to learn
      what to subscribe again.

    At most `max_subscriptions` keys (41 by default, the KIS limit) may be WANTED, PENDING or
    ACTIVE at once; REJECTED keys do not count, since the server holds nothing for them.
    """

    __slots__ = ("_reasons", "_states", "max_subscriptions")

    def __init__(self, max_subscriptions: int = KIS_MAX_SUBSCRIPTIONS) -> None:
        if isinstance(max_subscriptions, bool) or not isinstance(max_subscriptions, int):
            raise LocalProtocolError(
                f"max_subscriptions must be an int, not {type(max_subscriptions).__name__}; "
                f"KIS allows {KIS_MAX_SUBSCRIPTIONS}"
            )
        if max_subscriptions < 1:
            raise LocalProtocolError(
                f"max_subscriptions must be at least 1, not {max_subscriptions}; KIS allows {KIS_MAX_SUBSCRIPTIONS}"
            )
        self.max_subscriptions = max_subscriptions
        # A dict keeps insertion order; a REJECTED key re-added keeps its place.
        self._states: dict[Key, SubState] = {}
        self._reasons: dict[Key, str] = {}

    def __repr__(self) -> str:
        # Counts only: a tr_key can be the user's HTS ID.
        counts = dict.fromkeys(SubState, 0)
        for state in self._states.values():
            counts[state] += 1
        return (
            f"<SubscriptionRegistry {self.registrations}/{self.max_subscriptions} registrations: "
            f"{counts[ACTIVE]} active, {counts[PENDING]} pending, {counts[WANTED]} wanted, "
            f"{counts[REJECTED]} rejected>"
        )

    def __len__(self) -> int:
        """Every key in the registry, rejected ones included."""
        return len(self._states)

    def __contains__(self, key: object) -> bool:
        return key in self._states

    def __iter__(self) -> Iterator[Key]:
        """The keys, rejected ones included, in the order they were first added."""
        return iter(list(self._states))

    # -- the transition table ---------------------------------------------------------------------

    def _apply(self, key: Key, event: _Input) -> tuple[SubState | None, SubState | None] | None:
        """Move `key` by `event`; (old, new) states, or None when the table has no entry."""
        old = self._states.get(key)
        try:
            new = _TRANSITIONS[old, event]
        except KeyError:
            return None
        if new is None:
            self._states.pop(key, None)
        else:
            self._states[key] = new
        if new is not REJECTED:
            self._reasons.pop(key, None)
        return old, new

    # -- the user ---------------------------------------------------------------------------------

    def add(self, tr_id: str, tr_key: str) -> bool:
        """Record that the user wants `(tr_id, tr_key)`.

        Returns True when a subscribe request is needed: the key is new, or it was REJECTED and is
        being retried. It is then WANTED: send the request now if connected (then `mark_sent`),
        otherwise `to_restore` lists it for the next connection. Returns False for a key already
        wanted, pending or active (a duplicate: nothing to send).

        Raises `LocalProtocolError` for a malformed tr_id or tr_key, and when the key would exceed
        `max_subscriptions` (41 per session, the KIS limit).
        """
        check_subscription(tr_id, tr_key)
        key = (tr_id, tr_key)
        old = self._states.get(key)
        if old in (None, REJECTED) and self.registrations >= self.max_subscriptions:
            raise LocalProtocolError(
                f"cannot subscribe {tr_id} {tr_key}: {self.registrations} registrations are already held "
                f"and the limit is {self.max_subscriptions} per session (KIS allows {KIS_MAX_SUBSCRIPTIONS} "
                "per appkey and refuses the next with OPSP0008 MAX SUBSCRIBE OVER); unsubscribe something first"
            )
        transition = self._apply(key, _Input.ADD)
        assert transition is not None  # every state has an ADD entry
        return transition[0] is not transition[1]

    def mark_sent(self, tr_id: str, tr_key: str) -> None:
        """The subscribe request for a WANTED key was queued on the current connection: now PENDING.

        Raises `LocalProtocolError` for a key that is not WANTED (unknown, already sent, active or
        rejected); the message says what to do instead.
        """
        key = (tr_id, tr_key)
        old = self._states.get(key)
        if self._apply(key, _Input.SEND) is None:
            raise LocalProtocolError(f"cannot mark {tr_id} {tr_key} as sent: {_SEND_ERRORS[old]}")

    def remove(self, tr_id: str, tr_key: str) -> bool:
        """Forget `(tr_id, tr_key)`, whatever its state.

        Returns True when the key was PENDING or ACTIVE, that is registered (or being registered)
        on the server, so an unsubscribe request must be sent. Returns False for a key that was
        WANTED or REJECTED (the server holds nothing) and for a key the registry does not know:
        removing is idempotent, like `set.discard`, so a double unsubscribe is harmless.
        """
        transition = self._apply((tr_id, tr_key), _Input.REMOVE)
        assert transition is not None  # every state has a REMOVE entry
        return transition[0] in (PENDING, ACTIVE)

    # -- the server -------------------------------------------------------------------------------

    def on_subscribed(self, tr_id: str, tr_key: str) -> bool:
        """The server holds the key (``OPSP0000``, or ``OPSP0002 ALREADY IN SUBSCRIBE``).

        A PENDING key becomes ACTIVE and the call returns True. Any other reply (a key removed
        since, one not requested on this connection, a repeated ack) is ignored: False.
        """
        transition = self._apply((tr_id, tr_key), _Input.SUBSCRIBED)
        return transition is not None and transition[0] is not transition[1]

    def on_failed(self, tr_id: str, tr_key: str, msg_cd: str) -> bool:
        """The server refused the subscribe request for the key; `msg_cd` is kept as the reason.

        A PENDING key becomes REJECTED and the call returns True; it is not retried until the user
        adds it again. A reply for a key that is not PENDING (unknown, removed since) is ignored:
        False. ``OPSP0003 UNSUBSCRIBE ERROR`` answers an unsubscribe, not a subscribe, so it never
        rejects a key (the key may have been re-added while the unsubscribe was in flight).
        """
        if msg_cd == MsgCode.UNSUBSCRIBE_NOT_FOUND:
            return False
        key = (tr_id, tr_key)
        if self._apply(key, _Input.FAILED) is None:
            return False
        self._reasons[key] = msg_cd
        return True

    def on_unsubscribed(self, tr_id: str, tr_key: str) -> bool:
        """The server released the key (``OPSP0001 UNSUBSCRIBE SUCCESS``).

        Usually the key was forgotten at `remove` and this is ignored (False). If the key is ACTIVE
        (the user re-added it and the server has confirmed it, then reports the older release), the
        server no longer holds what the user wants: the key goes back to WANTED and the call
        returns True, meaning it must be subscribed again (`to_restore` lists it). A PENDING key
        is left to the reply to its own subscribe request.
        """
        transition = self._apply((tr_id, tr_key), _Input.UNSUBSCRIBED)
        return transition is not None

    # -- the socket -------------------------------------------------------------------------------

    def connection_lost(self) -> None:
        """The connection ended: every PENDING and ACTIVE key becomes WANTED; REJECTED keys stay."""
        for key in list(self._states):
            self._apply(key, _Input.LOST)

    def to_restore(self) -> list[Key]:
        """The WANTED keys, in the order they were first added: what to subscribe on connecting."""
        return self._in(WANTED)

    # -- views ------------------------------------------------------------------------------------

    @property
    def registrations(self) -> int:
        """Keys that count toward the limit: WANTED, PENDING and ACTIVE (not REJECTED)."""
        return sum(1 for state in self._states.values() if state is not REJECTED)

    def state(self, tr_id: str, tr_key: str) -> SubState | None:
        """The key's state, or None when the registry does not hold it."""
        return self._states.get((tr_id, tr_key))

    def active(self) -> list[Key]:
        """The ACTIVE keys, in insertion order."""
        return self._in(ACTIVE)

    def pending(self) -> list[Key]:
        """The PENDING keys, in insertion order."""
        return self._in(PENDING)

    def rejected(self) -> dict[Key, str]:
        """The REJECTED keys, in insertion order, each with the server's `msg_cd`."""
        return {key: self._reasons[key] for key in self._in(REJECTED)}

    def _in(self, state: SubState) -> list[Key]:
        return [key for key, current in self._states.items() if current is state]

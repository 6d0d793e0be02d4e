"""Where the gateway's subscriptions live: clients' leased demand, placed on KIS sessions.

Pure: no I/O, no clock (``now`` is passed in), so every rule is tested without NATS or KIS. The
gateway feeds it requests (subscribe, unsubscribe, heartbeat), KIS's answers (subscribed,
refused) and the time; it answers with what to do on which session (`Place`, `Release`).

The rules:

* **Demand is reference-counted across clients**: a (TR, key) is placed on a session while at least
  one client wants it, released when the last one lets go. Subscribing twice is idempotent.
* **A client's demand is a lease**: a heartbeat or any request renews it; when it runs out, every
  subscription of the client is let go, as if it had unsubscribed. No exception: the gateway's
  own *standing* subscriptions (the execution notices of the HTS IDs it is configured with) are
  not client demand, so a durable consumer's notices wait in its stream, not in a slot.
* **A client is one id with one secret**: the secret sent with its first subscribe binds the id;
  a subscribe or unsubscribe with another secret is refused (``forbidden``), so nobody who saw a
  client id (heartbeats carry only the id) can release that client's demand. The binding ends
  with the client's last subscription or its lease.
* **Limits per client**: at most `client_limit` subscriptions (``limit``), requests paced by a
  token bucket (``rate_limited``), and at most `max_clients` clients at once (``busy``).
* **Placement**: on the connected session with the most room (spreading the traffic), else on any
  session with room; each session takes at most `capacity` (KIS: 41) subscriptions.
* **Bars are demand too**: a client asking for the time bars of (TR, key) at an interval holds one
  slot of its limit for them, leased and counted across clients like a subscription. The first
  asker starts the gateway's aggregator (`StartBars`) and makes the gateway hold the trades of
  (TR, key) on its own behalf (`BARS`, like `STANDING`), so a client that also subscribed the trades
  and lets go of them does not stop the bars; the last one stops it (`StopBars`) and, when no other
  interval of the key is wanted, releases the trades unless a client still wants them.
* **A refusal by KIS**: ``MAX SUBSCRIBE OVER`` means that session is full at its current count — the
  subscription moves to another session with room; any other refusal (an unknown key, a paid feed)
  is final for the (TR, key) until every client lets go of it and asks again.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "BARS",
    "STANDING",
    "Action",
    "Place",
    "Placement",
    "Planner",
    "Release",
    "Reply",
    "StartBars",
    "StopBars",
]

#: The owner of the gateway's own standing subscriptions (client ids are never empty).
STANDING: Final = ""
#: The owner of the trade subscriptions the gateway's bar aggregators read (no client id has ``#``).
BARS: Final = "#bars"


@dataclass(frozen=True, slots=True)
class Place:
    """Subscribe (tr_id, tr_key) on `session`."""

    session: str
    tr_id: str
    tr_key: str


@dataclass(frozen=True, slots=True)
class Release:
    """Unsubscribe (tr_id, tr_key) on `session`."""

    session: str
    tr_id: str
    tr_key: str


@dataclass(frozen=True, slots=True)
class StartBars:
    """Start computing the time bars of (tr_id, tr_key) every `every` seconds."""

    tr_id: str
    tr_key: str
    every: int


@dataclass(frozen=True, slots=True)
class StopBars:
    """Stop computing the time bars of (tr_id, tr_key) every `every` seconds: nobody wants them."""

    tr_id: str
    tr_key: str
    every: int


#: What the gateway is told to do.
Action = Place | Release | StartBars | StopBars


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a control request: ok, or an error code and what to do.

    `retry_after` (seconds) comes with ``rate_limited``.
    """

    ok: bool
    error: str = ""
    message: str = ""
    actions: tuple[Action, ...] = ()
    retry_after: float | None = None


@dataclass
class _Client:
    """One client's lease, secret, request budget and subscription count."""

    expiry: float
    secret: bytes | None = None  # sha256 of the secret that bound the id, None while unbound
    tokens: float = 0.0
    refilled: float = 0.0
    held: int = 0


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass
class Placement:
    """One (TR, key) the gateway holds: where it is, how far, who wants it."""

    tr_id: str
    tr_key: str
    session: str | None = None
    state: Literal["pending", "active", "refused", "unplaced"] = "pending"
    clients: set[str] = field(default_factory=set)
    refusal: str = ""


@dataclass
class _Session:
    name: str
    capacity: int
    connected: bool = False
    placed: set[tuple[str, str]] = field(default_factory=set)

    @property
    def room(self) -> int:
        return self.capacity - len(self.placed)


class Planner:
    """The gateway's subscriptions: demand by client with leases, placement on sessions.

    `client_limit` (None: no limit) bounds one client's subscriptions; `rate` is a client's
    request budget as (requests per second, burst), None for none; `max_clients` bounds how many
    clients may hold demand at once.
    """

    def __init__(
        self,
        sessions: list[str],
        *,
        capacity: int = 41,
        lease: float = 30.0,
        client_limit: int | None = None,
        rate: tuple[float, float] | None = None,
        max_clients: int = 1000,
    ) -> None:
        if not sessions:
            raise ValueError("a gateway needs at least one session (app key)")
        if client_limit is not None and client_limit < 1:
            raise ValueError(f"client_limit must be at least 1, not {client_limit}")
        self.lease = lease
        self.client_limit = client_limit
        self.rate = rate
        self.max_clients = max_clients
        self._sessions = {name: _Session(name, capacity) for name in sessions}
        self._placements: dict[tuple[str, str], Placement] = {}
        self._clients: dict[str, _Client] = {}
        #: (tr_id, tr_key, every) -> the clients wanting those bars, in the order first asked for.
        self._bars: dict[tuple[str, str, int], set[str]] = {}
        #: Leases that ran out (their clients stopped renewing them).
        self.expired = 0

    # -- requests ------------------------------------------------------------------------------------
    def subscribe(self, client: str, tr_id: str, tr_key: str, now: float, secret: str | None = None) -> Reply:
        """`client` wants (tr_id, tr_key): count it, place it if it is new.

        `secret` binds the client id on its first subscribe; later requests must repeat it.
        """
        state = self._client_for(client, now, secret)
        if isinstance(state, Reply):
            return state
        key = (tr_id, tr_key)
        placement = self._placements.get(key)
        if placement is not None and client in placement.clients:
            return Reply(True)  # held already: a renewal
        refused = self._over_limit(client, state)
        if refused is not None:
            return refused
        reply = self._hold(client, key)
        if reply.ok:
            state.held += 1
            return reply
        return self._forget_if_empty(client, reply)

    def subscribe_bars(
        self, client: str, tr_id: str, tr_key: str, every: int, now: float, secret: str | None = None
    ) -> Reply:
        """`client` wants the `every`-second bars of (tr_id, tr_key): count it, start them if new.

        One slot of the client's limit, leased like a subscription; the trades the bars are made
        of are held by `BARS` while any interval of the key is wanted.
        """
        state = self._client_for(client, now, secret)
        if isinstance(state, Reply):
            return state
        bar_key = (tr_id, tr_key, every)
        holders = self._bars.get(bar_key)
        if holders is not None and client in holders:
            return Reply(True)  # held already: a renewal
        refused = self._over_limit(client, state)
        if refused is not None:
            return refused
        actions: tuple[Action, ...] = ()
        if holders is None:
            reply = self._hold(BARS, (tr_id, tr_key))
            if not reply.ok:
                return self._forget_if_empty(client, reply)
            holders = self._bars[bar_key] = set()
            actions = (*reply.actions, StartBars(tr_id, tr_key, every))
        holders.add(client)
        state.held += 1
        return Reply(True, actions=actions)

    def unsubscribe_bars(
        self, client: str, tr_id: str, tr_key: str, every: int, now: float, secret: str | None = None
    ) -> Reply:
        """`client` lets go of the `every`-second bars of (tr_id, tr_key); stopped when nobody wants them."""
        state = self._clients.get(client)
        if state is None:
            return Reply(True)  # nothing held: nothing to release
        refused = self._admit(client, state, now, secret)
        if refused is not None:
            return refused
        state.expiry = now + self.lease
        actions = self._let_go_bars(client, (tr_id, tr_key, every))
        return self._forget_if_empty(client, Reply(True, actions=tuple(actions)))

    def touch(self, client: str, now: float, secret: str | None = None) -> Reply:
        """`client` asks for something that takes no slot (notices): bind, pace and renew it as any request."""
        state = self._client_for(client, now, secret)
        return state if isinstance(state, Reply) else Reply(True)

    def stand(self, tr_id: str, tr_key: str, prefer: str | None = None) -> Reply:
        """The gateway's own subscription of (tr_id, tr_key): placed like any, never leased or limited.

        `prefer` names the session to place it on while that one has room.
        """
        key = (tr_id, tr_key)
        placement = self._placements.get(key)
        if placement is not None:
            placement.clients.add(STANDING)
            return Reply(True)
        preferred = self._sessions.get(prefer) if prefer is not None else None
        session = preferred if preferred is not None and preferred.room > 0 else self._room()
        if session is None:
            return Reply(False, "capacity", "no session has room for the gateway's own subscription")
        self._placements[key] = Placement(tr_id, tr_key, session.name, "pending", {STANDING})
        session.placed.add(key)
        return Reply(True, actions=(Place(session.name, tr_id, tr_key),))

    def unsubscribe(
        self, client: str, tr_id: str, tr_key: str, now: float, secret: str | None = None
    ) -> Reply:
        """`client` lets go of (tr_id, tr_key); released at KIS when no client wants it.

        Only with the secret that bound the client id (``forbidden`` otherwise). A client with
        nothing left is forgotten, its id free again.
        """
        state = self._clients.get(client)
        if state is None:
            return Reply(True)  # nothing held: nothing to release
        refused = self._admit(client, state, now, secret)
        if refused is not None:
            return refused
        state.expiry = now + self.lease
        actions = self._let_go(client, (tr_id, tr_key))
        return self._forget_if_empty(client, Reply(True, actions=tuple(actions)))

    def heartbeat(self, client: str, now: float) -> Reply:
        """`client` is alive: its lease starts again (an unknown client has nothing to renew)."""
        state = self._clients.get(client)
        if state is None:
            return Reply(True)
        refused = self._spend(state, now)
        if refused is not None:
            return refused
        state.expiry = now + self.lease
        return Reply(True)

    def held(self, client: str) -> int:
        """How many subscriptions `client` holds (what a heartbeat reply tells it)."""
        state = self._clients.get(client)
        return state.held if state is not None else 0

    def expire(self, now: float) -> list[Action]:
        """Let go of the demand of every client whose lease ran out; forget those clients."""
        actions: list[Action] = []
        for client in [c for c, state in self._clients.items() if state.expiry <= now]:
            del self._clients[client]
            for bar_key in [k for k, holders in self._bars.items() if client in holders]:
                actions += self._let_go_bars(client, bar_key)
            self.expired += 1
            for key in [k for k, p in self._placements.items() if client in p.clients]:
                actions += self._let_go(client, key)
        return actions

    def extend(self, seconds: float) -> None:
        """Push every lease's end `seconds` later: the time no client could renew (NATS away)."""
        for state in self._clients.values():
            state.expiry += seconds

    @property
    def clients(self) -> int:
        """Clients holding a lease now."""
        return len(self._clients)

    def next_expiry(self) -> float | None:
        """When `expire` next has something to do."""
        return min((state.expiry for state in self._clients.values()), default=None)

    # -- sessions and KIS's answers ---------------------------------------------------------------------
    def connected(self, session: str, up: bool) -> list[Action]:
        """A session's connection came up or went down; unplaced subscriptions may find room now."""
        self._sessions[session].connected = up
        return self._place_waiting() if up else []

    def subscribed(self, session: str, tr_id: str, tr_key: str) -> None:
        """KIS acknowledged (tr_id, tr_key) on `session`."""
        placement = self._placements.get((tr_id, tr_key))
        if placement is not None and placement.session == session:
            placement.state = "active"

    def refused(self, session: str, tr_id: str, tr_key: str, msg_cd: str, message: str) -> list[Action]:
        """KIS refused (tr_id, tr_key) on `session`: move it (the session is full) or give up on it."""
        key = (tr_id, tr_key)
        placement = self._placements.get(key)
        if placement is None or placement.session != session:
            return []
        slot = self._sessions[session]
        slot.placed.discard(key)
        if msg_cd == "OPSP0008":  # MAX SUBSCRIBE OVER: this session holds no more than it has now
            slot.capacity = len(slot.placed)
            target = self._room()
            if target is None:
                placement.session, placement.state = None, "unplaced"
                return []
            target.placed.add(key)
            placement.session, placement.state = target.name, "pending"
            return [Place(target.name, tr_id, tr_key)]
        placement.session, placement.state = None, "refused"
        placement.refusal = f"KIS refused {tr_id} {tr_key}: {msg_cd} {message}".strip()
        return []

    # -- what is there -------------------------------------------------------------------------------
    def placements(self) -> list[Placement]:
        """Every (TR, key) held, in the order first asked for."""
        return list(self._placements.values())

    def placed_on(self, session: str) -> list[tuple[str, str]]:
        """The (tr_id, tr_key) placed on `session`."""
        return sorted(self._sessions[session].placed)

    def status(self, now: float) -> dict[str, Any]:
        """Sessions, subscriptions and clients, JSON-ready (the gateway adds its counters)."""
        return {
            "sessions": [
                {
                    "name": s.name,
                    "subscriptions": len(s.placed),
                    "capacity": s.capacity,
                    "connected": s.connected,
                }
                for s in self._sessions.values()
            ],
            "subscriptions": [
                {
                    "tr_id": p.tr_id,
                    "tr_key": p.tr_key,
                    "session": p.session,
                    "state": p.state,
                    "clients": len(p.clients - {STANDING, BARS}),
                    **({"standing": True} if STANDING in p.clients else {}),
                    **({"bars": True} if BARS in p.clients else {}),
                    **({"refusal": p.refusal} if p.refusal else {}),
                }
                for p in self._placements.values()
            ],
            "bars": [
                {"tr_id": tr_id, "tr_key": tr_key, "every": every, "clients": len(holders)}
                for (tr_id, tr_key, every), holders in self._bars.items()
            ],
            "clients": [
                {"client": c, "subscriptions": state.held, "lease_left": round(state.expiry - now, 1)}
                for c, state in sorted(self._clients.items())
            ],
            "capacity": {
                "used": sum(len(s.placed) for s in self._sessions.values()),
                "total": sum(s.capacity for s in self._sessions.values()),
            },
        }

    def bar_demand(self) -> list[tuple[str, str, int]]:
        """Every (tr_id, tr_key, every) of bars some client wants, in the order first asked for."""
        return list(self._bars)

    # -- internals -----------------------------------------------------------------------------------
    def _client_for(self, client: str, now: float, secret: str | None) -> _Client | Reply:
        """The state of `client` for a request that adds demand (made for a new one), its lease
        renewed; or the refusal (busy, forbidden, rate_limited)."""
        state = self._clients.get(client)
        if state is None:
            if len(self._clients) >= self.max_clients:
                return Reply(
                    False,
                    "busy",
                    f"the gateway serves {self.max_clients} clients already, the most it takes: try again later",
                )
            state = self._clients[client] = _Client(now + self.lease, tokens=self._burst(), refilled=now)
        refused = self._admit(client, state, now, secret)
        if refused is not None:
            if state.held == 0 and state.secret is None:
                del self._clients[client]  # nothing of it was kept
            return refused
        if state.secret is None and secret is not None:
            state.secret = _digest(secret)
        state.expiry = now + self.lease
        return state

    def _over_limit(self, client: str, state: _Client) -> Reply | None:
        if self.client_limit is None or state.held < self.client_limit:
            return None
        return self._forget_if_empty(
            client,
            Reply(
                False,
                "limit",
                f"client {client} holds {state.held} subscriptions, the most one client may "
                f"(the gateway's client limit): unsubscribe some first, or ask its operator for a "
                f"higher --client-limit",
            ),
        )

    def _hold(self, owner: str, key: tuple[str, str]) -> Reply:
        """`owner` wants the (TR, key) placement: counted in it, placed when it is new."""
        placement = self._placements.get(key)
        if placement is not None:
            if placement.state == "refused":
                return Reply(False, "refused", placement.refusal)
            placement.clients.add(owner)
            return Reply(True)
        session = self._room()
        if session is None:
            total = sum(s.capacity for s in self._sessions.values())
            return Reply(
                False,
                "capacity",
                f"every session is full ({total} subscriptions on {len(self._sessions)} app keys, "
                f"at most {next(iter(self._sessions.values())).capacity} each): unsubscribe something, "
                "or give the gateway another app key",
            )
        self._placements[key] = Placement(key[0], key[1], session.name, "pending", {owner})
        session.placed.add(key)
        return Reply(True, actions=(Place(session.name, *key),))

    def _let_go_bars(self, client: str, bar_key: tuple[str, str, int]) -> list[Action]:
        holders = self._bars.get(bar_key)
        if holders is None or client not in holders:
            return []
        holders.discard(client)
        state = self._clients.get(client)
        if state is not None:
            state.held -= 1
        if holders:
            return []
        del self._bars[bar_key]
        tr_id, tr_key, every = bar_key
        actions: list[Action] = [StopBars(tr_id, tr_key, every)]
        if not any(k[0] == tr_id and k[1] == tr_key for k in self._bars):
            actions += self._let_go(BARS, (tr_id, tr_key))
        return actions

    def _burst(self) -> float:
        return self.rate[1] if self.rate is not None else 0.0

    def _spend(self, state: _Client, now: float) -> Reply | None:
        """Take one request from the client's budget; the ``rate_limited`` reply when it is empty."""
        if self.rate is None:
            return None
        per_second, burst = self.rate
        state.tokens = min(burst, state.tokens + (now - state.refilled) * per_second)
        state.refilled = now
        if state.tokens >= 1.0:
            state.tokens -= 1.0
            return None
        wait = round((1.0 - state.tokens) / per_second, 3)
        return Reply(
            False,
            "rate_limited",
            f"more than {per_second:g} requests a second (bursts of {burst:g}): wait {wait:g} s and send it again",
            retry_after=wait,
        )

    def _admit(self, client: str, state: _Client, now: float, secret: str | None) -> Reply | None:
        """The refusal of a request that may change `client`'s demand, or None to go on."""
        if state.secret is not None and (
            secret is None or not hmac.compare_digest(state.secret, _digest(secret))
        ):
            return Reply(
                False,
                "forbidden",
                f"client id {client} belongs to another process (its secret differs): use an id of "
                f"your own, or wait until its lease ends ({max(0.0, state.expiry - now):.0f} s)",
            )
        return self._spend(state, now)

    def _forget_if_empty(self, client: str, reply: Reply) -> Reply:
        """A client left holding nothing is forgotten, so its id and its slot in `max_clients` are free."""
        state = self._clients.get(client)
        if state is not None and state.held == 0:
            del self._clients[client]
        return reply

    def _room(self) -> _Session | None:
        """The session to place on next: connected ones first, the one with the most room."""
        candidates = [s for s in self._sessions.values() if s.room > 0]
        if not candidates:
            return None
        return max(candidates, key=lambda s: (s.connected, s.room))

    def _let_go(self, client: str, key: tuple[str, str]) -> list[Action]:
        placement = self._placements.get(key)
        if placement is None or client not in placement.clients:
            return []
        placement.clients.discard(client)
        state = self._clients.get(client)
        if state is not None:
            state.held -= 1
        if placement.clients:
            return []
        del self._placements[key]
        if placement.session is None:
            return self._place_waiting()
        self._sessions[placement.session].placed.discard(key)
        return [Release(placement.session, *key), *self._place_waiting()]

    def _place_waiting(self) -> list[Action]:
        """Place what waits for room (unplaced after MAX SUBSCRIBE OVER), as far as room allows."""
        actions: list[Action] = []
        for key, placement in self._placements.items():
            if placement.state != "unplaced":
                continue
            target = self._room()
            if target is None:
                break
            target.placed.add(key)
            placement.session, placement.state = target.name, "pending"
            actions.append(Place(target.name, *key))
        return actions

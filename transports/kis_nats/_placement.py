"""Where the gateway's subscriptions live: clients' leased demand, placed on KIS sessions.

Pure: no I/O, no clock (``now`` is passed in), so every rule is tested without NATS or KIS. The
gateway feeds it requests (subscribe, unsubscribe, heartbeat), KIS's answers (subscribed,
refused) and the time; it answers with what to do on which session (`Place`, `Release`).

The rules:

* **Demand is reference-counted across clients**: a (TR, key) is placed on a session while at least
  one client wants it, released when the last one lets go. Subscribing twice is idempotent.
* **A client's demand is a lease**: a heartbeat or any request renews it; when it runs out, every
  subscription of the client is let go, as if it had unsubscribed — except execution notices,
  which stay until unsubscribed: they go into a durable stream, and a consumer that is down for
  longer than its lease must still find them when it returns.
* **Placement**: on the connected session with the most room (spreading the traffic), else on any
  session with room; each session takes at most `capacity` (KIS: 41) subscriptions.
* **A refusal by KIS**: ``MAX SUBSCRIBE OVER`` means that session is full at its current count — the
  subscription moves to another session with room; any other refusal (an unknown key, a paid feed)
  is final for the (TR, key) until every client lets go of it and asks again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Place", "Placement", "Planner", "Release", "Reply"]


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
class Reply:
    """The answer to a control request: ok, or an error code and what to do."""

    ok: bool
    error: str = ""
    message: str = ""
    actions: tuple[Place | Release, ...] = ()


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
    """The gateway's subscriptions: demand by client with leases, placement on sessions."""

    def __init__(
        self,
        sessions: list[str],
        *,
        capacity: int = 41,
        lease: float = 30.0,
        sticky: Callable[[str], bool] = lambda tr_id: False,
    ) -> None:
        if not sessions:
            raise ValueError("a gateway needs at least one session (app key)")
        self.lease = lease
        #: TRs whose demand outlives leases (the gateway's: the execution notices).
        self._sticky = sticky
        self._sessions = {name: _Session(name, capacity) for name in sessions}
        self._placements: dict[tuple[str, str], Placement] = {}
        self._leases: dict[str, float] = {}  # client -> expiry

    # -- requests ------------------------------------------------------------------------------------
    def subscribe(self, client: str, tr_id: str, tr_key: str, now: float) -> Reply:
        """`client` wants (tr_id, tr_key): count it, place it if it is new."""
        self._renew(client, now)
        key = (tr_id, tr_key)
        placement = self._placements.get(key)
        if placement is not None:
            if placement.state == "refused":
                return Reply(False, "refused", placement.refusal)
            placement.clients.add(client)
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
        placement = Placement(tr_id, tr_key, session.name, "pending", {client})
        self._placements[key] = placement
        session.placed.add(key)
        return Reply(True, actions=(Place(session.name, tr_id, tr_key),))

    def unsubscribe(self, client: str, tr_id: str, tr_key: str, now: float) -> Reply:
        """`client` lets go of (tr_id, tr_key); released at KIS when no client wants it."""
        self._renew(client, now)
        return Reply(True, actions=tuple(self._let_go(client, (tr_id, tr_key))))

    def heartbeat(self, client: str, now: float) -> Reply:
        """`client` is alive: its lease starts again."""
        self._renew(client, now)
        return Reply(True)

    def expire(self, now: float) -> list[Place | Release]:
        """Let go of the demand of every client whose lease ran out."""
        actions: list[Place | Release] = []
        for client in [c for c, until in self._leases.items() if until <= now]:
            del self._leases[client]
            for key in [k for k, p in self._placements.items() if client in p.clients]:
                if not self._sticky(key[0]):
                    actions += self._let_go(client, key)
        return actions

    def next_expiry(self) -> float | None:
        """When `expire` next has something to do."""
        return min(self._leases.values(), default=None)

    # -- sessions and KIS's answers ---------------------------------------------------------------------
    def connected(self, session: str, up: bool) -> list[Place | Release]:
        """A session's connection came up or went down; unplaced subscriptions may find room now."""
        self._sessions[session].connected = up
        return self._place_waiting() if up else []

    def subscribed(self, session: str, tr_id: str, tr_key: str) -> None:
        """KIS acknowledged (tr_id, tr_key) on `session`."""
        placement = self._placements.get((tr_id, tr_key))
        if placement is not None and placement.session == session:
            placement.state = "active"

    def refused(
        self, session: str, tr_id: str, tr_key: str, msg_cd: str, message: str
    ) -> list[Place | Release]:
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
        clients: dict[str, int] = {}
        for placement in self._placements.values():
            for client in placement.clients:
                clients[client] = clients.get(client, 0) + 1
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
                    "clients": len(p.clients),
                    **({"refusal": p.refusal} if p.refusal else {}),
                }
                for p in self._placements.values()
            ],
            "clients": [
                {"client": c, "subscriptions": clients.get(c, 0), "lease_left": round(until - now, 1)}
                for c, until in sorted(self._leases.items())
            ],
            "capacity": {
                "used": sum(len(s.placed) for s in self._sessions.values()),
                "total": sum(s.capacity for s in self._sessions.values()),
            },
        }

    # -- internals -----------------------------------------------------------------------------------
    def _renew(self, client: str, now: float) -> None:
        self._leases[client] = now + self.lease

    def _room(self) -> _Session | None:
        """The session to place on next: connected ones first, the one with the most room."""
        candidates = [s for s in self._sessions.values() if s.room > 0]
        if not candidates:
            return None
        return max(candidates, key=lambda s: (s.connected, s.room))

    def _let_go(self, client: str, key: tuple[str, str]) -> list[Place | Release]:
        placement = self._placements.get(key)
        if placement is None or client not in placement.clients:
            return []
        placement.clients.discard(client)
        if placement.clients:
            return []
        del self._placements[key]
        if placement.session is None:
            return self._place_waiting()
        self._sessions[placement.session].placed.discard(key)
        return [Release(placement.session, *key), *self._place_waiting()]

    def _place_waiting(self) -> list[Place | Release]:
        """Place what waits for room (unplaced after MAX SUBSCRIBE OVER), as far as room allows."""
        actions: list[Place | Release] = []
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

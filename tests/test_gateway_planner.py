"""The gateway's planner: leased, reference-counted demand placed on sessions of 41 (pure, no NATS)."""

from __future__ import annotations

import pytest
from kis_gateway._placement import STANDING, Action, Place, Planner, Release


def keys(n: int) -> list[str]:
    return [f"{i:06d}" for i in range(1, n + 1)]


def test_three_app_keys_take_123_and_refuse_the_124th_clearly() -> None:
    planner = Planner(["app1", "app2", "app3"])
    for name in ("app1", "app2", "app3"):
        planner.connected(name, up=True)
    places: list[Action] = []
    for key in keys(123):
        reply = planner.subscribe("c", "H0STCNT0", key, now=0.0)
        assert reply.ok
        places += reply.actions
    assert {type(a) for a in places} == {Place}
    assert sorted(len(planner.placed_on(n)) for n in ("app1", "app2", "app3")) == [41, 41, 41]
    refused = planner.subscribe("c", "H0STCNT0", "999999", now=0.0)
    assert not refused.ok
    assert refused.error == "capacity"
    assert "123 subscriptions on 3 app keys, at most 41 each" in refused.message
    assert planner.status(0.0)["capacity"] == {"used": 123, "total": 123}


def test_placement_spreads_over_connected_sessions() -> None:
    planner = Planner(["a", "b"])
    planner.connected("a", up=True)
    planner.connected("b", up=True)
    sessions = []
    for k in keys(4):
        action = planner.subscribe("c", "H0STCNT0", k, 0.0).actions[0]
        assert isinstance(action, Place)
        sessions.append(action.session)
    assert sorted(sessions) == ["a", "a", "b", "b"]


def test_demand_is_counted_across_clients_and_idempotent() -> None:
    planner = Planner(["a"])
    first = planner.subscribe("x", "H0STCNT0", "005930", 0.0)
    assert first.actions == (Place("a", "H0STCNT0", "005930"),)
    assert planner.subscribe("y", "H0STCNT0", "005930", 0.0).actions == ()
    assert planner.subscribe("x", "H0STCNT0", "005930", 0.0).actions == ()  # again: no change
    assert planner.unsubscribe("x", "H0STCNT0", "005930", 0.0).actions == ()  # y still wants it
    assert planner.unsubscribe("y", "H0STCNT0", "005930", 0.0).actions == (
        Release("a", "H0STCNT0", "005930"),
    )
    assert planner.placements() == []
    assert planner.unsubscribe("y", "H0STCNT0", "005930", 0.0).actions == ()  # nothing left to let go


def test_a_client_that_stops_renewing_its_lease_releases_its_demand() -> None:
    planner = Planner(["a"], lease=30.0)
    planner.subscribe("dead", "H0STCNT0", "005930", now=0.0)
    planner.subscribe("dead", "H0STCNT0", "000660", now=0.0)
    planner.subscribe("alive", "H0STCNT0", "005930", now=0.0)
    assert planner.next_expiry() == 30.0
    for t in (10.0, 20.0, 30.0, 40.0):
        planner.heartbeat("alive", now=t)
    assert planner.expire(29.9) == []
    released = planner.expire(30.0)
    assert released == [Release("a", "H0STCNT0", "000660")]  # 005930: "alive" still wants it
    [left] = planner.placements()
    assert (left.tr_key, left.clients) == ("005930", {"alive"})
    assert planner.expire(69.9) == []
    assert planner.expire(70.0) == [Release("a", "H0STCNT0", "005930")]


def test_max_subscribe_over_moves_the_subscription_and_shrinks_the_session() -> None:
    planner = Planner(["a", "b"], capacity=3)
    planner.connected("a", up=True)
    [place] = planner.subscribe("c", "H0STCNT0", "005930", 0.0).actions
    assert isinstance(place, Place)
    other = "b" if place.session == "a" else "a"
    assert planner.refused(place.session, "H0STCNT0", "005930", "OPSP0008", "MAX SUBSCRIBE OVER") == [
        Place(other, "H0STCNT0", "005930")
    ]
    sessions = {s["name"]: s for s in planner.status(0.0)["sessions"]}
    assert sessions[place.session]["capacity"] == 0  # held nothing else: full at 0


def test_max_subscribe_over_everywhere_waits_for_room() -> None:
    planner = Planner(["a"], capacity=2)
    planner.subscribe("c", "H0STCNT0", "000001", 0.0)
    planner.subscribe("c", "H0STCNT0", "000002", 0.0)
    assert planner.refused("a", "H0STCNT0", "000002", "OPSP0008", "MAX SUBSCRIBE OVER") == []
    [waiting] = [p for p in planner.placements() if p.tr_key == "000002"]
    assert waiting.state == "unplaced"
    # Room comes back when something is let go... but the session is now 1 wide, holding 000001.
    assert planner.unsubscribe("c", "H0STCNT0", "000001", 0.0).actions == (
        Release("a", "H0STCNT0", "000001"),
        Place("a", "H0STCNT0", "000002"),
    )


def test_any_other_refusal_is_final_until_asked_for_anew() -> None:
    planner = Planner(["a"])
    planner.subscribe("c", "H0STCNT0", "123456", 0.0)
    assert planner.refused("a", "H0STCNT0", "123456", "OPSP8992", "invalid tr_key") == []
    again = planner.subscribe("d", "H0STCNT0", "123456", 0.0)
    assert (again.ok, again.error) == (False, "refused")
    assert "OPSP8992" in again.message
    assert planner.unsubscribe("c", "H0STCNT0", "123456", 0.0).actions == ()
    assert planner.subscribe("d", "H0STCNT0", "123456", 0.0).actions == (Place("a", "H0STCNT0", "123456"),)


def test_acks_make_placements_active_and_status_says_so() -> None:
    planner = Planner(["a"])
    planner.subscribe("c", "H0STCNT0", "005930", 5.0)
    planner.subscribed("b", "H0STCNT0", "005930")  # another session's ack: ignored
    assert planner.placements()[0].state == "pending"
    planner.subscribed("a", "H0STCNT0", "005930")
    status = planner.status(10.0)
    assert status["subscriptions"] == [
        {"tr_id": "H0STCNT0", "tr_key": "005930", "session": "a", "state": "active", "clients": 1}
    ]
    assert status["clients"] == [{"client": "c", "subscriptions": 1, "lease_left": 25.0}]


def test_a_gateway_needs_a_session() -> None:
    with pytest.raises(ValueError, match="at least one session"):
        Planner([])


def test_standing_subscriptions_are_the_gateways_and_every_client_demand_expires() -> None:
    planner = Planner(["a"], lease=5.0)
    assert planner.stand("H0STCNI0", "myhts").actions == (Place("a", "H0STCNI0", "myhts"),)
    planner.subscribe("recorder", "H0STCNT0", "005930", now=0.0)
    planner.subscribe("recorder", "H0STCNI0", "myhts", now=0.0)  # wanted by a client too
    assert planner.expire(10.0) == [Release("a", "H0STCNT0", "005930")]  # no client is exempt
    [kept] = planner.placements()
    assert (kept.tr_id, kept.clients) == ("H0STCNI0", {STANDING})
    assert planner.status(10.0)["subscriptions"][0] == {
        "tr_id": "H0STCNI0",
        "tr_key": "myhts",
        "session": "a",
        "state": "pending",
        "clients": 0,
        "standing": True,
    }
    assert planner.status(10.0)["clients"] == []  # the lease ended: the client is forgotten


def test_invented_ids_give_their_slots_back_when_their_leases_end() -> None:
    planner = Planner(["a", "b"], lease=2.0, client_limit=41)
    for n in range(82):  # all 82 slots of two app keys, each under an id of its own
        assert planner.subscribe(f"throwaway{n}", "H0STCNT0", f"{n:06d}", now=0.0).ok
    assert not planner.subscribe("newcomer", "H0STCNT0", "999999", now=1.0).ok  # full
    released = planner.expire(2.0)
    assert len(released) == 82
    assert planner.subscribe("newcomer", "H0STCNT0", "999999", now=2.1).ok


def test_only_the_secret_that_bound_a_client_id_releases_its_demand() -> None:
    planner = Planner(["a"])
    assert planner.subscribe("watch-1", "H0STCNT0", "005930", 0.0, secret="s" * 24).ok
    sniffed = planner.unsubscribe("watch-1", "H0STCNT0", "005930", 1.0, secret="x" * 24)
    assert (sniffed.ok, sniffed.error, sniffed.actions) == (False, "forbidden", ())
    assert not planner.unsubscribe("watch-1", "H0STCNT0", "005930", 1.0).ok  # no secret at all
    assert not planner.subscribe("watch-1", "H0STCNT0", "000660", 1.0, secret="x" * 24).ok
    assert planner.heartbeat("watch-1", 1.0).ok  # an id alone renews, and changes nothing else
    assert planner.held("watch-1") == 1
    mine = planner.unsubscribe("watch-1", "H0STCNT0", "005930", 2.0, secret="s" * 24)
    assert mine.actions == (Release("a", "H0STCNT0", "005930"),)
    # Holding nothing, the id is free again: another process may take it.
    assert planner.subscribe("watch-1", "H0STCNT0", "005930", 3.0, secret="y" * 24).ok


def test_a_client_holds_at_most_its_limit_and_others_still_get_their_slots() -> None:
    planner = Planner(["a", "b", "c"], client_limit=41)
    answers = [planner.subscribe("greedy", "H0STCNT0", f"{n:06d}", 0.0) for n in range(500)]
    assert sum(a.ok for a in answers) == 41
    refusal = answers[41]
    assert refusal.error == "limit"
    assert "holds 41 subscriptions" in refusal.message
    assert planner.subscribe("greedy", "H0STCNT0", "000001", 0.0).ok  # one it holds: a renewal
    others = [planner.subscribe("modest", "H0STCNT0", f"{n:06d}", 0.0) for n in range(1000, 1041)]
    assert all(a.ok for a in others)
    # A key another client holds already costs no room, but counts against this client's limit.
    assert planner.subscribe("modest", "H0STCNT0", "000002", 0.0).error == "limit"


def test_requests_are_paced_per_client() -> None:
    planner = Planner(["a"], rate=(10.0, 5.0))
    answers = [planner.subscribe("fast", "H0STCNT0", f"{n:06d}", 0.0) for n in range(8)]
    assert [a.ok for a in answers] == [True] * 5 + [False] * 3
    assert answers[5].error == "rate_limited"
    assert answers[5].retry_after == pytest.approx(0.1)
    assert planner.subscribe("slow", "H0STCNT0", "999999", 0.0).ok  # another client's budget
    assert planner.subscribe("fast", "H0STCNT0", "000005", 0.1).ok  # refilled by then


def test_at_most_max_clients_hold_demand_and_a_touch_counts() -> None:
    planner = Planner(["a"], max_clients=2)
    assert planner.subscribe("one", "H0STCNT0", "005930", 0.0).ok
    assert planner.touch("two", 0.0, secret="t" * 20).ok  # a notice reader: no slot, but a client
    busy = planner.subscribe("three", "H0STCNT0", "000660", 0.0)
    assert busy.error == "busy"
    assert not planner.touch("two", 0.0, secret="u" * 20).ok  # bound by its secret, as any
    planner.expire(100.0)
    assert planner.subscribe("three", "H0STCNT0", "000660", 100.0).ok

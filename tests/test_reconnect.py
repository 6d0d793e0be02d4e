"""The reconnect policy: full-jitter backoff, the KIS lock-out floor, approval refresh, give-ups."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kis_proto._errors import LocalProtocolError
from kis_proto._reconnect import ReconnectDecision, ReconnectPolicy

if TYPE_CHECKING:
    from collections.abc import Callable


def half() -> float:
    return 0.5


def test_defaults_match_the_original_design() -> None:
    policy = ReconnectPolicy(rand=half)
    assert policy.retry_delay == 1.0
    assert policy.max_delay == 60.0
    assert policy.max_retries == 5
    assert policy.in_use_floor == 20.0
    assert policy.healthy_after == 30.0
    assert policy.attempts == 0


def test_failed_attempts_back_off_then_give_up() -> None:
    policy = ReconnectPolicy(rand=half)
    decisions = [policy.disconnected(float(t)) for t in range(6)]
    assert [d.delay for d in decisions] == [0.5, 1.0, 2.0, 4.0, 8.0, None]
    assert [d.attempt for d in decisions] == [1, 2, 3, 4, 5, 6]
    assert not any(d.refresh_approval_key for d in decisions)
    assert decisions[0].reason == "the connection ended"  # the cause once: attempt and delay are fields
    assert decisions[5].give_up
    assert decisions[5].reason == (
        "gave up after 5 failed attempts in a row (max_retries=5; none delivered data): the connection ended"
    )
    assert policy.attempts == 6
    # Giving up is sticky until a healthy connection or reset().
    assert policy.disconnected(10.0).delay is None


def test_the_ceiling_is_capped_and_the_jitter_is_full() -> None:
    shares = iter([0.25, 0.25, 0.25, 0.25, 0.0, 0.999])
    policy = ReconnectPolicy(rand=lambda: next(shares), retry_delay=2.0, max_delay=10.0, max_retries=None)
    # Ceilings 2, 4, 8, then 10 (16 capped); the delay is share * ceiling, down to 0.
    assert [policy.disconnected(0.0).delay for _ in range(6)] == [0.5, 1.0, 2.0, 2.5, 0.0, 9.99]


def test_unlimited_retries_never_overflow() -> None:
    policy = ReconnectPolicy(rand=half, retry_delay=0.5, max_delay=30.0, max_retries=None)
    for _ in range(3000):
        decision = policy.disconnected(0.0)
    assert decision.attempt == 3000
    assert decision.delay == 15.0
    assert decision.reason == "the connection ended"


def test_max_retries_zero_never_retries() -> None:
    decision = ReconnectPolicy(rand=half, max_retries=0).disconnected(0.0)
    assert decision.delay is None
    assert decision.attempt == 1


def test_a_healthy_connection_resets_the_count() -> None:
    policy = ReconnectPolicy(rand=half)
    for t in (0.0, 1.0, 2.0):
        policy.disconnected(t)
    assert policy.attempts == 3
    policy.connected(100.0)
    decision = policy.disconnected(130.0)  # up exactly healthy_after seconds
    assert decision.attempt == 1
    assert decision.delay == 0.5
    assert policy.attempts == 1


def test_a_short_connection_counts_as_a_failed_attempt() -> None:
    policy = ReconnectPolicy(rand=half)
    for t in (0.0, 1.0, 2.0):
        policy.disconnected(t)
    policy.connected(100.0)
    decision = policy.disconnected(129.9)
    assert decision.attempt == 4
    assert decision.delay == 4.0


def test_already_in_use_waits_at_least_the_floor() -> None:
    policy = ReconnectPolicy(rand=half)
    policy.connected(0.0)
    decision = policy.disconnected(0.4, msg_cd="OPSP8996")
    # 20 s floor plus the jitter of attempt 1 (0.5 * 1 s).
    assert decision.delay == 20.5
    assert not decision.refresh_approval_key
    assert decision.reason.startswith("the connection ended with OPSP8996: another session holds the appkey")
    assert "at least 20 s" in decision.reason
    policy.connected(30.0)
    named = policy.disconnected(30.1, msg_cd="OPSP8996", cause="OPSP8996 ALREADY IN USE appkey")
    assert named.reason.startswith("OPSP8996 ALREADY IN USE appkey: another session")


def test_already_in_use_stays_within_the_larger_cap() -> None:
    policy = ReconnectPolicy(rand=lambda: 0.9, max_retries=None)
    delays = [policy.disconnected(0.0, msg_cd="OPSP8996").delay for _ in range(8)]
    # Jitter 0.9 * 1, 2, 4, 8, 16, 32, 60, 60 on top of 20, capped at 60.
    assert delays == pytest.approx([20.9, 21.8, 23.6, 27.2, 34.4, 48.8, 60.0, 60.0])


def test_the_floor_wins_over_a_smaller_max_delay() -> None:
    policy = ReconnectPolicy(rand=lambda: 0.9, retry_delay=1.0, max_delay=5.0, in_use_floor=18.0)
    assert policy.disconnected(0.0, msg_cd="OPSP8996").delay == 18.0
    assert policy.disconnected(1.0).delay == 0.9 * 2.0  # the floor is for OPSP8996 only


def test_invalid_approval_refreshes_once_then_gives_up() -> None:
    policy = ReconnectPolicy(rand=half)
    policy.connected(0.0)
    first = policy.disconnected(0.5, msg_cd="OPSP0011")
    assert first.refresh_approval_key is True
    assert first.delay == 0.5
    assert first.reason == "the connection ended with OPSP0011: fetching a new approval key"
    policy.connected(10.0)
    second = policy.disconnected(10.5, msg_cd="OPSP0011")
    assert second.delay is None
    assert second.refresh_approval_key is False
    assert "credentials are wrong" in second.reason
    assert "app secret" in second.reason


def test_invalid_approval_after_other_failures_still_gives_up() -> None:
    policy = ReconnectPolicy(rand=half)
    assert policy.disconnected(0.0, msg_cd="OPSP0011").refresh_approval_key
    assert policy.disconnected(1.0, msg_cd="OPSP8996").delay == 21.0
    assert policy.disconnected(30.0).delay == 2.0
    assert policy.disconnected(40.0, msg_cd="OPSP0011").delay is None


def test_a_healthy_connection_allows_another_refresh() -> None:
    policy = ReconnectPolicy(rand=half)
    assert policy.disconnected(0.0, msg_cd="OPSP0011").refresh_approval_key
    policy.connected(1.0)
    decision = policy.disconnected(86_400.0, msg_cd="OPSP0011")  # a day later: the key expired
    assert decision.refresh_approval_key is True
    assert decision.delay == 0.5


def test_reset_forgets_everything() -> None:
    policy = ReconnectPolicy(rand=half, max_retries=1)
    policy.disconnected(0.0, msg_cd="OPSP0011")
    assert policy.disconnected(1.0).delay is None
    policy.connected(2.0)
    policy.reset()
    assert policy.attempts == 0
    policy.connected(3.0)  # no "connected twice" after a reset
    decision = policy.disconnected(3.5, msg_cd="OPSP0011")
    assert decision.refresh_approval_key is True
    assert decision.attempt == 1


def test_other_codes_only_change_the_reason() -> None:
    decision = ReconnectPolicy(rand=half).disconnected(0.0, msg_cd="OPSP9999")
    assert decision.delay == 0.5
    assert decision.reason == "the connection ended with OPSP9999"
    other = ReconnectPolicy(rand=half).disconnected(0.0, cause="connection refused by 127.0.0.1:1")
    assert other.reason == "connection refused by 127.0.0.1:1"


def test_calls_out_of_order_are_refused() -> None:
    policy = ReconnectPolicy(rand=half)
    policy.connected(5.0)
    with pytest.raises(LocalProtocolError, match="connected\\(\\) was called twice"):
        policy.connected(6.0)
    with pytest.raises(LocalProtocolError, match="monotonic clock"):
        policy.disconnected(4.0)
    for bad in (math.nan, math.inf):
        with pytest.raises(LocalProtocolError, match="now must be a finite float"):
            policy.connected(bad)


@pytest.mark.parametrize("share", [-0.1, 1.5, math.nan])
def test_a_bad_random_source_is_refused(share: float) -> None:
    policy = ReconnectPolicy(rand=lambda: share)
    with pytest.raises(LocalProtocolError, match=r"rand\(\) must return a float in \[0, 1\)"):
        policy.disconnected(0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"retry_delay": -1.0}, "retry_delay must be a finite number"),
        ({"retry_delay": math.nan}, "retry_delay must be a finite number"),
        ({"retry_delay": math.inf}, "retry_delay must be a finite number"),
        ({"retry_delay": True}, "retry_delay must be a finite number"),
        ({"max_delay": -0.5}, "max_delay must be a finite number"),
        ({"retry_delay": 10.0, "max_delay": 5.0}, "must not be below retry_delay"),
        ({"max_retries": -1}, "max_retries must be an int >= 0"),
        ({"max_retries": 2.5}, "max_retries must be an int >= 0"),
        ({"max_retries": True}, "max_retries must be an int >= 0"),
        ({"in_use_floor": math.nan}, "in_use_floor must be a finite number"),
        ({"healthy_after": -1}, "healthy_after must be a finite number"),
        ({"rand": 0.5}, "rand must be a callable"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {"rand": half, **kwargs}
    with pytest.raises(LocalProtocolError, match=match):
        ReconnectPolicy(**arguments)  # type: ignore[arg-type]


def test_decision_is_frozen_and_repr_is_short() -> None:
    policy = ReconnectPolicy(rand=half, max_retries=None)
    assert repr(policy) == "<ReconnectPolicy disconnected, attempts=0/unlimited>"
    decision = policy.disconnected(0.0)
    policy.connected(1.0)
    assert repr(policy) == "<ReconnectPolicy connected, attempts=1/unlimited>"
    assert isinstance(decision, ReconnectDecision)
    assert not decision.give_up
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.delay = 1.0  # type: ignore[misc]


def test_a_seeded_random_source_gives_reproducible_delays() -> None:
    def delays(rand: Callable[[], float]) -> list[float | None]:
        policy = ReconnectPolicy(rand=rand, max_retries=4)
        return [policy.disconnected(float(t)).delay for t in range(5)]

    first = delays(random.Random(7).random)
    assert first == delays(random.Random(7).random)
    assert first[4] is None
    ceilings = [1.0, 2.0, 4.0, 8.0]
    assert all(d is not None and 0.0 <= d < c for d, c in zip(first, ceilings, strict=False))
    assert len(set(first[:4])) == 4


def test_a_session_that_delivered_data_ends_the_streak() -> None:
    policy = ReconnectPolicy(rand=half)
    for t in (0.0, 1.0, 2.0, 3.0):
        policy.disconnected(t)  # four failures in a row: refused, say
    policy.connected(10.0)
    policy.delivered()
    decision = policy.disconnected(11.5)  # up 1.5 s only, but it worked
    assert decision.attempt == 1
    assert decision.delay == 0.5
    policy.connected(20.0)
    assert policy.disconnected(20.5).attempt == 2  # accepted, then closed before any data: a failure


def test_delivered_without_a_connection_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="connected"):
        ReconnectPolicy(rand=half).delivered()


def flapping(policy: ReconnectPolicy, *, hours: float, up: float, data: bool) -> list[ReconnectDecision]:
    """A server that accepts, (maybe) streams, and drops every `up` seconds, on a fake clock."""
    now, decisions = 0.0, []
    while now < hours * 3600:
        policy.connected(now)
        if data:
            policy.delivered()
        now += up
        decision = policy.disconnected(now, cause="closed by the server with code 1006")
        decisions.append(decision)
        if decision.delay is None:
            break
        now += decision.delay
    return decisions


def test_a_feed_dropped_every_1_5_s_for_an_hour_never_gives_up_nor_backs_off() -> None:
    policy = ReconnectPolicy(rand=random.Random(3).random)  # the defaults: max_retries=5
    decisions = flapping(policy, hours=1.0, up=1.5, data=True)
    assert len(decisions) > 1000
    assert all(d.delay is not None for d in decisions)
    assert max(d.delay or 0.0 for d in decisions) <= policy.retry_delay  # never past the first step
    assert {d.attempt for d in decisions} == {1}


def test_accept_then_close_backs_off_to_the_cap_then_gives_up() -> None:
    policy = ReconnectPolicy(rand=lambda: 0.999, max_retries=8)
    decisions = flapping(policy, hours=1.0, up=0.2, data=False)
    delays = [d.delay for d in decisions]
    assert delays[-1] is None
    assert len(decisions) == 9  # max_retries attempts, then the give-up
    assert delays[:-1] == sorted(delays[:-1])  # type: ignore[type-var]
    assert delays[-2] == pytest.approx(0.999 * policy.max_delay)  # at the 60 s cap
    assert decisions[-1].reason == (
        "gave up after 8 failed attempts in a row (max_retries=8; none delivered data): "
        "closed by the server with code 1006"
    )


def test_forever_keeps_trying_an_accept_then_close_server_at_the_cap() -> None:
    policy = ReconnectPolicy(rand=lambda: 0.5, max_retries=None)
    decisions = flapping(policy, hours=2.0, up=0.2, data=False)
    assert all(d.delay is not None for d in decisions)
    assert decisions[-1].delay == 30.0  # half of the 60 s cap


# -- properties over random sequences of connections ------------------------------------------------

durations = st.floats(0.0, 120.0)
codes = st.sampled_from([None, None, "OPSP8996", "OPSP0011", "OPSP9999"])
# One attempt: whether it came up (and for how long), whether it delivered data, the code ending it.
attempt_steps = st.tuples(st.booleans(), durations, st.booleans(), codes)


@given(
    retry_delay=st.floats(0.0, 5.0),
    extra_cap=st.floats(0.0, 100.0),
    max_retries=st.none() | st.integers(0, 8),
    in_use_floor=st.floats(0.0, 40.0),
    healthy_after=st.floats(0.0, 60.0),
    seed=st.integers(0, 2**32),
    steps=st.lists(attempt_steps, max_size=30),
)
def test_policy_properties(
    retry_delay: float,
    extra_cap: float,
    max_retries: int | None,
    in_use_floor: float,
    healthy_after: float,
    seed: int,
    steps: list[tuple[bool, float, bool, str | None]],
) -> None:
    source = random.Random(seed)
    shares: list[float] = []

    def rand() -> float:
        shares.append(source.random())
        return shares[-1]

    max_delay = retry_delay + extra_cap
    policy = ReconnectPolicy(
        rand=rand,
        retry_delay=retry_delay,
        max_delay=max_delay,
        max_retries=max_retries,
        in_use_floor=in_use_floor,
        healthy_after=healthy_after,
    )
    # The model: consecutive attempts and whether a fresh approval key was already asked for.
    attempts, refreshed, now = 0, False, 0.0
    for came_up, duration, data, msg_cd in steps:
        start = now
        if came_up:
            policy.connected(start)
            if data:
                policy.delivered()
        now += duration
        # Judged on the times as the policy sees them (a tiny duration can vanish in the sum).
        healthy = came_up and (data or now - start >= healthy_after)
        decision = policy.disconnected(now, msg_cd=msg_cd)
        now += 1.0
        if healthy:
            attempts, refreshed = 0, False
        attempts += 1
        assert decision.attempt == attempts == policy.attempts

        credentials_wrong = msg_cd == "OPSP0011" and refreshed
        exhausted = max_retries is not None and attempts > max_retries
        if credentials_wrong or exhausted:
            assert decision.delay is None
            assert decision.refresh_approval_key is False
            assert ("credentials are wrong" in decision.reason) is credentials_wrong
            assert decision.reason.startswith(f"gave up after {max_retries} failed attempts") is (
                exhausted and not credentials_wrong
            )
            continue

        assert decision.delay is not None
        assert 0.0 <= decision.delay <= max(max_delay, in_use_floor)
        backoff = shares[-1] * min(max_delay, retry_delay * 2.0 ** (attempts - 1))
        if msg_cd == "OPSP8996":
            assert decision.delay >= in_use_floor
            assert decision.delay == min(max(max_delay, in_use_floor), in_use_floor + backoff)
        else:
            assert decision.delay == backoff
            assert decision.delay <= max_delay
        assert decision.refresh_approval_key is (msg_cd == "OPSP0011")
        if msg_cd == "OPSP0011":
            refreshed = True

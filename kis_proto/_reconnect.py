"""The reconnect policy: how long to wait before the next connection attempt, or whether to stop.

A pure object the transport keeps across sockets. It is told when a connection came up and when
one ended (with the KIS code that ended it, if any) and answers with a `ReconnectDecision`. It
never sleeps and never reads the clock or a random source of its own: the time is passed in as
``now`` (the transport's monotonic clock) and the jitter comes from a ``rand`` callable the
transport injects (``random.random``), so the same inputs give the same delays in tests.

What it knows about KIS (PROTOCOL.md §9):

* Retries back off exponentially with full jitter (attempt n waits a uniform share of
  ``min(max_delay, retry_delay * 2 ** (n - 1))``), so clients dropped together do not return
  together. The count is of sessions that failed *in a row*: a session that delivered data
  (`delivered`) or stayed up `healthy_after` seconds ends the streak, so a flaky network that
  drops a working feed every few seconds never exhausts `max_retries` and never backs off far,
  while a server that refuses, fails the handshake, or accepts and closes before any data does.
* ``OPSP8996 ALREADY IN USE appkey``: KIS keeps the appkey locked while a client retries fast,
  and an ~18-20 s pause recovers, so the delay is never below `in_use_floor`.
* ``OPSP0011 invalid approval``: the approval key is stale; fetch a new one once. If a connection
  made with the fresh key is refused the same way, the credentials are wrong and retrying only
  risks an appkey lock-out, so the policy gives up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._codes import MsgCode
from ._errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ReconnectDecision", "ReconnectPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectDecision:
    """What to do after a connection ended.

    `delay` is the number of seconds to wait before the next attempt, or None to give up.
    `reason` says once why the connection ended (and, on a give-up, why that is final), in words
    fit for a log line or an exception; the attempt and delay are not repeated in it. When
    `refresh_approval_key` is True, fetch a new approval key before connecting again. `attempt` is
    the number of the attempt this decision schedules, counted since the last productive
    connection (1 for the first).
    """

    delay: float | None
    reason: str
    attempt: int
    refresh_approval_key: bool = False

    @property
    def give_up(self) -> bool:
        """True when there is no next attempt."""
        return self.delay is None


class ReconnectPolicy:
    """Exponential backoff with full jitter, plus the KIS-specific waits and give-ups.

    Call `connected` when a connection came up (the WebSocket handshake completed), `delivered`
    when it delivered its first record, and `disconnected` whenever an attempt ends, whether it
    came up or not: a failed attempt is a `disconnected` without a `connected` before it. Each
    `disconnected` schedules one more attempt, and `max_retries` (None: forever) bounds how many
    sessions in a row may fail before their first record (and short of `healthy_after`). After
    giving up, every later `disconnected` gives up too until a productive connection or `reset`.

    Args:
        rand: Returns a float in [0, 1) for the jitter, e.g. ``random.random``. Required: the core
            has no random source of its own.
        retry_delay: The base delay in seconds (the ceiling of the first attempt's jitter).
        max_delay: The cap on the backoff ceiling, in seconds.
        max_retries: Failed sessions in a row before giving up; None retries forever.
        in_use_floor: The least delay after ``OPSP8996 ALREADY IN USE appkey``, in seconds; it
            applies even when it exceeds `max_delay`.
        healthy_after: A connection up this many seconds ends the streak even without data
            (outside market hours KIS sends nothing but PINGPONG).
    """

    __slots__ = (
        "_attempts",
        "_healthy_after",
        "_in_use_floor",
        "_max_delay",
        "_max_retries",
        "_productive",
        "_rand",
        "_refreshed",
        "_retry_delay",
        "_up_since",
    )

    def __init__(
        self,
        *,
        rand: Callable[[], float],
        retry_delay: float = 1.0,
        max_delay: float = 60.0,
        max_retries: int | None = 5,
        in_use_floor: float = 20.0,
        healthy_after: float = 30.0,
    ) -> None:
        if not callable(rand):
            raise LocalProtocolError(
                "rand must be a callable returning a float in [0, 1), e.g. random.random"
            )
        self._rand = rand
        self._retry_delay = _seconds("retry_delay", retry_delay)
        self._max_delay = _seconds("max_delay", max_delay)
        if self._max_delay < self._retry_delay:
            raise LocalProtocolError(
                f"max_delay ({max_delay!r}) must not be below retry_delay ({retry_delay!r}): it caps the backoff"
            )
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise LocalProtocolError(
                f"max_retries must be an int >= 0, or None to retry forever; got {max_retries!r}"
            )
        self._max_retries = max_retries
        self._in_use_floor = _seconds("in_use_floor", in_use_floor)
        self._healthy_after = _seconds("healthy_after", healthy_after)
        self._attempts = 0
        self._up_since: float | None = None
        self._productive = False  # the current connection delivered a record
        # A fresh approval key was asked for since the last productive connection.
        self._refreshed = False

    def __repr__(self) -> str:
        limit = "unlimited" if self._max_retries is None else self._max_retries
        up = "connected" if self._up_since is not None else "disconnected"
        return f"<ReconnectPolicy {up}, attempts={self._attempts}/{limit}>"

    @property
    def attempts(self) -> int:
        """Attempts scheduled since the last healthy connection (0 before the first `disconnected`)."""
        return self._attempts

    @property
    def retry_delay(self) -> float:
        """The base delay, in seconds."""
        return self._retry_delay

    @property
    def max_delay(self) -> float:
        """The cap on the backoff ceiling, in seconds."""
        return self._max_delay

    @property
    def max_retries(self) -> int | None:
        """Attempts in a row before giving up; None retries forever."""
        return self._max_retries

    @property
    def in_use_floor(self) -> float:
        """The least delay after ``OPSP8996 ALREADY IN USE appkey``, in seconds."""
        return self._in_use_floor

    @property
    def healthy_after(self) -> float:
        """Seconds a connection must stay up to reset the count."""
        return self._healthy_after

    def connected(self, now: float) -> None:
        """A connection came up at `now`.

        Raises `LocalProtocolError` if the previous connection was not reported ended.
        """
        now = _time(now)
        if self._up_since is not None:
            raise LocalProtocolError(
                "connected() was called twice; call disconnected() when a connection ends, before the next"
            )
        self._up_since = now

    def delivered(self) -> None:
        """The current connection delivered data: it was subscribed and working, whatever ends it.

        Raises `LocalProtocolError` when no connection is up.
        """
        if self._up_since is None:
            raise LocalProtocolError("delivered() without connected(): data comes only on a connection")
        self._productive = True

    def disconnected(
        self, now: float, *, msg_cd: str | None = None, cause: str | None = None
    ) -> ReconnectDecision:
        """An attempt ended at `now`, after `connected` or without ever coming up.

        `msg_cd` is the KIS code that ended it, if any (the `ServerError` before the close):
        ``OPSP8996`` and ``OPSP0011`` change the decision, any other code only the reason.
        `cause` says what ended it in words ("connection refused", "closed by the server with code
        1006"); the decision's reason starts with it.
        """
        now = _time(now)
        up_since, self._up_since = self._up_since, None
        productive, self._productive = self._productive, False
        if up_since is not None and now < up_since:
            raise LocalProtocolError(
                f"now ({now!r}) is before the connected() time ({up_since!r}); pass a monotonic clock"
            )
        if productive or (up_since is not None and now - up_since >= self._healthy_after):
            self._attempts = 0
            self._refreshed = False
        self._attempts += 1
        n = self._attempts
        if cause is None:
            cause = f"the connection ended with {msg_cd}" if msg_cd else "the connection ended"

        if msg_cd == MsgCode.INVALID_APPROVAL and self._refreshed:
            return ReconnectDecision(
                delay=None,
                attempt=n,
                reason=(
                    "gave up: OPSP0011 invalid approval again with a freshly issued approval key, so the "
                    "credentials are wrong; check the app key and app secret (and that they belong to this "
                    "server, real or paper)"
                ),
            )
        if self._max_retries is not None and n > self._max_retries:
            return ReconnectDecision(
                delay=None,
                attempt=n,
                reason=(
                    f"gave up after {self._max_retries} failed attempts in a row "
                    f"(max_retries={self._max_retries}; none delivered data): {cause}"
                ),
            )

        delay = self._rand_share() * min(self._max_delay, self._retry_delay * 2.0 ** min(n - 1, 1000))
        if msg_cd == MsgCode.ALREADY_IN_USE_APPKEY:
            # The floor first, then the jitter on top, still within the larger of the two caps.
            delay = min(max(self._max_delay, self._in_use_floor), self._in_use_floor + delay)
            return ReconnectDecision(
                delay=delay,
                attempt=n,
                reason=(
                    f"{cause}: another session holds the appkey, and KIS locks it while clients retry "
                    f"fast, so waiting at least {self._in_use_floor:g} s"
                ),
            )
        if msg_cd == MsgCode.INVALID_APPROVAL:
            self._refreshed = True
            return ReconnectDecision(
                delay=delay,
                attempt=n,
                refresh_approval_key=True,
                reason=f"{cause}: fetching a new approval key",
            )
        return ReconnectDecision(delay=delay, attempt=n, reason=cause)

    def reset(self) -> None:
        """Forget the history, as for a new client: e.g. when the user starts it again after a give-up."""
        self._attempts = 0
        self._up_since = None
        self._productive = False
        self._refreshed = False

    def _rand_share(self) -> float:
        share = self._rand()
        if not isinstance(share, int | float) or not 0.0 <= share <= 1.0:
            raise LocalProtocolError(
                f"rand() must return a float in [0, 1), like random.random; it gave {share!r}"
            )
        return float(share)


def _seconds(name: str, value: float) -> float:
    """A duration argument as a float: finite and not negative."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LocalProtocolError(f"{name} must be a finite number of seconds >= 0; got {value!r}")
    return float(value)


def _time(now: float) -> float:
    """A `now` argument: a finite number from the transport's monotonic clock."""
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise LocalProtocolError(f"now must be a finite float from a monotonic clock; got {now!r}")
    return float(now)

"""The leader lease: which gateway of an env holds the KIS sessions, kept in a NATS key-value key.

The key ``leader`` of bucket ``KIS_GATEWAY_<ENV>`` (a TTL, `LEADER_TTL`) holds the active
gateway's id and a token of its process. The active one renews it; a standby creates it once it
is gone. What a renewal's failure means is the point of this module (docs/decisions.md, "NATS
outages keep the KIS sessions"): only a NATS that answers can say that another gateway holds
the lead (`Verdict.TAKEN`); a NATS that does not answer says nothing (`Verdict.UNKNOWN`),
and the active gateway then keeps its KIS sessions and tries again.
"""

from __future__ import annotations

import enum
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

__all__ = ["Lease", "Verdict"]

_KEY = "leader"


class Verdict(enum.Enum):
    """What an attempt on the leader key found."""

    OURS = "ours"
    #: NATS answered: another gateway holds the key.
    TAKEN = "taken"
    #: NATS did not answer (away, or too slow), or the key moved under us: nothing is known.
    UNKNOWN = "unknown"


class Lease:
    """The leader key as one gateway process sees it: `take`, `renew`, `release`.

    The value is ``<gateway id> <token>``: the token is this process's, so a key left by this
    very process (renewals lost in an outage) is taken back at once, while one of an earlier run
    or of another process given the same id waits for its TTL as any other gateway's.
    """

    def __init__(self, kv: KeyValue, gateway_id: str) -> None:
        self.kv = kv
        self.gateway_id = gateway_id
        self._value = f"{gateway_id} {secrets.token_hex(4)}".encode()
        self.revision = 0
        #: The id of the gateway holding the key at the last look, when not this one.
        self.holder: str | None = None

    async def take(self) -> Verdict:
        """Create the key (free, expired or deleted), or take back a key this process holds."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        try:
            self.revision = await self.kv.create(_KEY, self._value)
        except KeyWrongLastSequenceError:
            pass
        except Exception:  # noqa: BLE001 - NATS away or slow: nothing known
            return Verdict.UNKNOWN
        else:
            self.holder = None
            return Verdict.OURS
        try:
            entry = await self.kv.get(_KEY)
        except KeyNotFoundError:
            return Verdict.UNKNOWN  # gone again between the two calls: the next attempt sees
        except Exception:  # noqa: BLE001
            return Verdict.UNKNOWN
        if entry.value != self._value:
            self.holder = holder_of(entry.value)
            return Verdict.TAKEN
        return await self._update(entry.revision or 0)

    async def renew(self) -> Verdict:
        """Renew the key at our revision; when NATS says it moved, look whether it is still ours."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self.revision = await self.kv.update(_KEY, self._value, last=self.revision)
        except KeyWrongLastSequenceError:
            return await self.take()  # expired while NATS was away (free again), or another's
        except Exception:  # noqa: BLE001 - NATS away or slow: nothing known
            return Verdict.UNKNOWN
        return Verdict.OURS

    async def release(self) -> None:
        """Delete the key if it is still at our revision (a standby need not wait for the TTL)."""
        await self.kv.delete(_KEY, last=self.revision)

    async def _update(self, revision: int) -> Verdict:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self.revision = await self.kv.update(_KEY, self._value, last=revision)
        except KeyWrongLastSequenceError:
            return Verdict.TAKEN
        except Exception:  # noqa: BLE001
            return Verdict.UNKNOWN
        self.holder = None
        return Verdict.OURS


def holder_of(value: bytes | None) -> str:
    """The gateway id in a leader key's value (``<id> <token>``), for log lines and status."""
    text = (value or b"").decode(errors="replace").split(" ", 1)[0]
    return text or "another gateway"

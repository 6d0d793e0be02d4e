"""The gateway's market data on the wire: one NATS message per record, written a batch at a time.

The message is the contract's (docs/gateway.md): the record's text as KIS sent it for payload and
one ``Kis-Meta`` header. What nats-py's ``publish`` does per message — check the header's name
with a regular expression, strip and escape its value, encode it piece by piece into a
bytearray, build the command, await a coroutine, kick its flusher — cost the gateway more than
everything else a record goes through (docs/decisions.md, "The gateway's hot path"). Here the
command is one format of what changes (``received``, ``seq``, the payload) into a prefix made once
per (subject, width), and the commands of one read of a KIS socket go to nats-py together: one
buffer appended to its pending output, one flush.

That hand-over uses nats-py's own write path below ``publish`` (``Client._send_command`` and its
flusher, the two calls ``publish`` itself ends with). They are not nats-py's public API: when a
nats-py lacks them, `Publisher` says so once in the log and publishes each message with
``publish``, the same bytes on the wire at the old cost.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import nats
from kis_nats import subjects

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

__all__ = ["Publisher", "raw_writes"]

logger = logging.getLogger("kis_nats.gateway")

# Where the value of the one header starts in a header block: after "NATS/1.0\r\nKis-Meta: ".
_VALUE = len(f"NATS/1.0\r\n{subjects.H_META}: ")


def raw_writes(nc: NatsClient) -> bool:
    """Does `nc` have the write path below ``publish`` that `Publisher` hands its commands to?"""
    send = getattr(nc, "_send_command", None)
    flush = getattr(nc, "_flush_pending", None)
    if not (inspect.iscoroutinefunction(send) and inspect.iscoroutinefunction(flush)):
        return False
    try:
        params = list(inspect.signature(send).parameters)
    except (TypeError, ValueError):
        return False
    names = ("_flush_queue", "_max_pending_size", "stats")
    return params[:1] == ["cmd"] and all(hasattr(nc, name) for name in names)


class Publisher:
    """The gateway's data messages: `add` queues one, `flush` writes what was queued, in order.

    `add` builds the message's bytes at once (`seq` and `received` are the caller's), so what a
    flush writes is what was added, in the order added, however the batch ends. `force_publish`
    makes it use nats-py's ``publish`` for every message (the fallback; tests compare the two).
    """

    def __init__(self, nc: NatsClient, gateway_id: str, *, force_publish: bool = False) -> None:
        self.nc = nc
        self._suffix = f" gateway={gateway_id}"
        self._raw = not force_publish and raw_writes(nc)
        if not self._raw and not force_publish:
            logger.info(
                "this nats-py (%s) has not the write path of 2.16: each record is published with "
                "publish(), which costs more CPU per record",
                getattr(nats, "__version__", "?"),
            )
        self._commands: list[bytes] = []
        self._messages: list[tuple[str, str, str]] = []  # the fallback's (subject, meta, text)
        self._bytes = 0  # payload bytes queued, for nats-py's stats

    def head(self, subject: str, width: int, era: str) -> tuple[bytes, str]:
        """What a subject's messages of one width share: the command's start, the header's start.

        (``HPUB <subject> ``, ``NATS/1.0\\r\\nKis-Meta: width=… era=… received=``): `add` appends
        the lengths, ``received``, ``seq``, the gateway and the payload.
        """
        return (
            f"HPUB {subject} ".encode(),
            f"NATS/1.0\r\n{subjects.H_META}: width={width} era={era} received=",
        )

    def add(self, subject: str, head: tuple[bytes, str], received: str, seq: int, text: str) -> bool:
        """Queue the message of one record: its text as payload, `received` and `seq` in ``Kis-Meta``.

        False when NATS would refuse it (a payload over the server's ``max_payload``): not queued.
        """
        header = f"{head[1]}{received} seq={seq}{self._suffix}\r\n\r\n"
        if not self._raw:
            self._messages.append((subject, header[_VALUE:-4], text))
            return True
        size = len(header)
        if text.isascii():  # KIS's records nearly always: one encode for the whole command
            length = len(text)
            command = head[0] + f"{size} {size + length}\r\n{header}{text}\r\n".encode()
        else:
            data = text.encode()
            length = len(data)
            command = head[0] + f"{size} {size + length}\r\n{header}".encode() + data + b"\r\n"
        if length > self.nc.max_payload:
            return False
        self._commands.append(command)
        self._bytes += length
        return True

    def __len__(self) -> int:
        """The messages queued and not written yet."""
        return len(self._commands) + len(self._messages)

    async def flush(self) -> tuple[int, int]:
        """Write what was queued, in order: (messages handed to NATS, messages dropped).

        As ``publish`` would: nothing is written to a closed or draining connection, and while
        NATS is away only what fits in nats-py's reconnect buffer. Market data is at most once: a
        message NATS does not take is dropped and counted (its ``seq`` gap tells the consumers).
        """
        if not self._raw:
            return await self._publish_each()
        commands, self._commands = self._commands, []
        payload, self._bytes = self._bytes, 0
        if not commands:
            return 0, 0
        nc: Any = self.nc  # below publish: the attributes `raw_writes` checked
        buf = b"".join(commands)
        if nc.is_closed or nc.is_draining_pubs:
            return 0, len(commands)
        if not nc.is_connected:
            limit = nc._max_pending_size
            if limit <= 0 or len(buf) + nc.pending_data_size > limit:
                return 0, len(commands)
        try:
            await nc._send_command(buf)
            nc.stats["out_msgs"] += len(commands)
            nc.stats["out_bytes"] += payload
            if nc._flush_queue is not None and nc._flush_queue.empty():
                await nc._flush_pending()
        except Exception:  # noqa: BLE001 - NATS away or its buffer full: market data is at most once
            return 0, len(commands)
        return len(commands), 0

    async def _publish_each(self) -> tuple[int, int]:
        messages, self._messages = self._messages, []
        published = dropped = 0
        for subject, meta, text in messages:
            try:
                await self.nc.publish(subject, text.encode(), headers={subjects.H_META: meta})
            except Exception:  # noqa: BLE001 - NATS away or its buffer full: market data is at most once
                dropped += 1
            else:
                published += 1
        return published, dropped

"""AES-256-CBC decryption of execution-notice payloads (PROTOCOL.md §7).

KIS sends a 32-character `key` and a 16-character `iv` in each SUBSCRIBE SUCCESS ack. They are
used as their UTF-8 bytes, not base64-decoded (the original design's bug: base64-decoding the IV
gives 12 bytes and fails, and the key silently becomes AES-192). Only the frame payload is base64.
"""

from __future__ import annotations

import base64
import binascii
import re

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

__all__ = ["DecryptError", "decrypt_payload", "encrypt_payload"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DecryptError(ValueError):
    """The payload does not decrypt to UTF-8 text with this key and IV. Says why, never the key."""


def _cipher(key: str, iv: str) -> AES.CbcMode:  # type: ignore[name-defined]
    try:
        key_bytes = key.encode("utf-8")
        iv_bytes = iv.encode("utf-8")
    except UnicodeError:
        raise DecryptError("the key or IV is not encodable as UTF-8") from None
    if len(key_bytes) not in (16, 24, 32):
        raise DecryptError(f"the key is {len(key_bytes)} bytes; AES needs 16, 24 or 32 (KIS sends 32)")
    if len(iv_bytes) != AES.block_size:
        raise DecryptError(f"the IV is {len(iv_bytes)} bytes; AES-CBC needs 16")
    return AES.new(key_bytes, AES.MODE_CBC, iv_bytes)


def decrypt_payload(payload: str, key: str, iv: str) -> str:
    """Decrypt one encrypted frame's payload (base64) into the record text.

    Raises `DecryptError` (a ValueError) when the payload is not base64, not whole AES blocks,
    badly padded, or not UTF-8 after decryption: a wrong key shows up as one of those.
    """
    cipher = _cipher(key, iv)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("the payload is not valid base64") from None
    if not data or len(data) % AES.block_size:
        raise DecryptError(f"the payload is {len(data)} bytes, not a whole number of AES blocks")
    try:
        plain = unpad(cipher.decrypt(data), AES.block_size)
    except ValueError:
        raise DecryptError("bad padding after decryption (wrong key or IV?)") from None
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptError("the decrypted bytes are not UTF-8 (wrong key or IV?)") from None
    # Record text has no control characters; some mean garbage that happened to unpad and decode.
    # (CBC has no MAC: a wrong IV with the right key garbles only the first block, undetectably.)
    if _CONTROL.search(text):
        raise DecryptError("the decrypted text has control characters (wrong key or IV?)")
    return text


def encrypt_payload(text: str, key: str, iv: str) -> str:
    """Encrypt record text the way KIS does (for the server role, the simulator and tests)."""
    cipher = _cipher(key, iv)
    return base64.b64encode(cipher.encrypt(pad(text.encode("utf-8"), AES.block_size))).decode("ascii")

"""The AES-256-CBC of KIS's execution notices: decrypt (the client) and encrypt (the server role).

The decoder decrypts notices by itself with the keys of their acks; these are for tools and tests.
"""

from __future__ import annotations

from ._crypto import DecryptError, decrypt_payload, encrypt_payload

__all__ = ["DecryptError", "decrypt_payload", "encrypt_payload"]

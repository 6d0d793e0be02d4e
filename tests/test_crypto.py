"""AES-256-CBC notices (PROTOCOL.md §7): the vector, missing and wrong keys, the seed design's bug."""

from __future__ import annotations

import base64

import pytest
from Crypto.Cipher import AES

from kis_proto import DecodeFailure, MessageDecoder, Record, UndecodableMessage, decode_message, records
from kis_proto.crypto import DecryptError, decrypt_payload, encrypt_payload

from .helpers import VECTOR_IV, VECTOR_KEY, VECTOR_PLAINTEXT, encode_frame, sample

VECTOR_FRAME = sample("1|H0STCNI0")
PAYLOAD = VECTOR_FRAME.split("|", 3)[3]


def test_the_vector_decrypts_to_the_documented_plaintext() -> None:
    assert decrypt_payload(PAYLOAD, VECTOR_KEY, VECTOR_IV) == VECTOR_PLAINTEXT


def test_encrypt_matches_an_independent_encryption() -> None:
    # helpers.encode_frame encrypts with pycryptodome directly.
    frame = encode_frame("H0STCNI0", [VECTOR_PLAINTEXT.split("^")], key=VECTOR_KEY, iv=VECTOR_IV)
    assert frame == VECTOR_FRAME
    assert encrypt_payload(VECTOR_PLAINTEXT, VECTOR_KEY, VECTOR_IV) == PAYLOAD


def test_no_key_yields_an_event_keeping_the_ciphertext() -> None:
    [event] = decode_message(VECTOR_FRAME)
    assert isinstance(event, UndecodableMessage)
    assert event.failure is DecodeFailure.NO_KEY
    assert event.raw == VECTOR_FRAME
    assert event.tr_id == "H0STCNI0"


@pytest.mark.parametrize(
    ("key", "iv"),
    [
        ("tesnaipyhhcpfrnupdybjhvuabognuch", VECTOR_IV),  # another session's key
        (VECTOR_KEY, "4060f9fcb7b4e2ef"),  # the right key, another IV: first block garbled
        (VECTOR_KEY, "short"),
        ("short", VECTOR_IV),
        ("키" * 11, VECTOR_IV),  # 33 UTF-8 bytes
    ],
)
def test_wrong_key_yields_an_event_and_no_bogus_record(key: str, iv: str) -> None:
    events = decode_message(VECTOR_FRAME, keys={"H0STCNI0": (key, iv)})
    if key == VECTOR_KEY and len(iv) == 16:
        # CBC: a wrong IV garbles only the first block; the padding still checks out. The record that
        # comes out must then not pass for the real one.
        assert not any(isinstance(e, Record) and e.raw == tuple(VECTOR_PLAINTEXT.split("^")) for e in events)
        return
    [event] = events
    assert isinstance(event, UndecodableMessage)
    assert event.failure is DecodeFailure.DECRYPT_FAILED
    assert event.raw == VECTOR_FRAME
    assert key not in event.reason


def test_base64_decoding_the_key_and_iv_is_the_seed_design_bug() -> None:
    # PROTOCOL.md §11b: b64decode(iv) is 12 bytes, so AES refuses it.
    with pytest.raises(ValueError, match="IV"):
        AES.new(base64.b64decode(VECTOR_KEY), AES.MODE_CBC, base64.b64decode(VECTOR_IV))
    with pytest.raises(DecryptError):
        decrypt_payload(PAYLOAD, VECTOR_KEY, base64.b64decode(VECTOR_IV).decode("latin-1"))


@pytest.mark.parametrize(
    "payload", ["", "!!!!", "qVd9", "qVd9Pjr+XQDck7bNb88eQiOVxKSQj60", base64.b64encode(b"x" * 16).decode()]
)
def test_corrupt_payloads(payload: str) -> None:
    with pytest.raises(DecryptError):
        decrypt_payload(payload, VECTOR_KEY, VECTOR_IV)
    [event] = decode_message(f"1|H0STCNI0|001|{payload}", keys={"H0STCNI0": (VECTOR_KEY, VECTOR_IV)})
    assert isinstance(event, UndecodableMessage)
    assert event.failure is DecodeFailure.DECRYPT_FAILED


def test_multi_record_encrypted_frame() -> None:
    rows = [VECTOR_PLAINTEXT.split("^"), VECTOR_PLAINTEXT.replace("^10^71500^", "^3^71600^").split("^")]
    frame = encode_frame("H0STCNI0", rows, key=VECTOR_KEY, iv=VECTOR_IV)
    recs = decode_message(frame, keys={"H0STCNI0": (VECTOR_KEY, VECTOR_IV)})
    assert [(r.volume, r.price) for r in recs if isinstance(r, records.H0STCNI0)] == [(10, 71500), (3, 71600)]


def test_decoder_learns_the_key_from_the_ack() -> None:
    ack = (
        '{"header":{"tr_id":"H0STCNI0","tr_key":"myhtsid","encrypt":"Y"},"body":{"rt_cd":"0",'
        f'"msg_cd":"OPSP0000","msg1":"SUBSCRIBE SUCCESS","output":{{"iv":"{VECTOR_IV}","key":"{VECTOR_KEY}"}}}}}}'
    )
    decoder = MessageDecoder()
    [undecodable] = decoder.decode(VECTOR_FRAME)
    assert isinstance(undecodable, UndecodableMessage)
    decoder.decode(ack)
    assert decoder.keys == {"H0STCNI0": (VECTOR_KEY, VECTOR_IV)}
    [rec] = decoder.decode(VECTOR_FRAME)
    assert isinstance(rec, records.H0STCNI0)
    assert VECTOR_KEY not in repr(decoder)


def test_decoder_key_set_by_hand() -> None:
    decoder = MessageDecoder()
    decoder.set_key("H0STCNI0", VECTOR_KEY, VECTOR_IV)
    [rec] = decoder.decode(VECTOR_FRAME)
    assert isinstance(rec, records.H0STCNI0)


def test_a_key_that_is_not_utf8_text() -> None:
    with pytest.raises(DecryptError, match="UTF-8"):
        decrypt_payload(PAYLOAD, "\ud800" * 32, VECTOR_IV)


def test_plaintext_that_is_not_utf8_or_has_control_characters() -> None:
    cipher = AES.new(VECTOR_KEY.encode(), AES.MODE_CBC, VECTOR_IV.encode())
    blob = base64.b64encode(cipher.encrypt(b"\xff\xfe" + bytes([14] * 14))).decode()
    with pytest.raises(DecryptError, match="not UTF-8"):
        decrypt_payload(blob, VECTOR_KEY, VECTOR_IV)
    with pytest.raises(DecryptError, match="control characters"):
        decrypt_payload(encrypt_payload("a^\x01^b", VECTOR_KEY, VECTOR_IV), VECTOR_KEY, VECTOR_IV)

"""The `msg_cd` codes of KIS control replies (PROTOCOL.md §4)."""

from __future__ import annotations

import enum

__all__ = ["SESSION_CODES", "MsgCode"]


class MsgCode(enum.StrEnum):
    """Every OPSP code KIS is known to send; the value is the code as on the wire.

    `MsgCode.describe(code)` gives the documented message text. A code not listed here is still
    delivered (the events keep `msg_cd` as a string); its `code` property is then None.
    """

    SUBSCRIBE_SUCCESS = "OPSP0000"
    UNSUBSCRIBE_SUCCESS = "OPSP0001"
    ALREADY_IN_SUBSCRIBE = "OPSP0002"
    UNSUBSCRIBE_NOT_FOUND = "OPSP0003"
    SUBSCRIBE_INTERNAL_ERROR = "OPSP0007"
    MAX_SUBSCRIBE_OVER = "OPSP0008"
    MCI_SEND_FAILED = "OPSP0009"
    INVALID_APPKEY_WARNING = "OPSP0010"
    INVALID_APPROVAL = "OPSP0011"
    INVALID_TR_ID = "OPSP8991"
    INVALID_TR_KEY = "OPSP8992"
    JSON_INVALID_TR_KEY = "OPSP8993"
    JSON_PERSONALSECKEY_NOT_FOUND = "OPSP8994"
    JSON_APPSECRET_NOT_FOUND = "OPSP8995"
    ALREADY_IN_USE_APPKEY = "OPSP8996"
    JSON_INVALID_TR_TYPE = "OPSP8997"
    JSON_INVALID_CUSTTYPE = "OPSP8998"
    JSON_RESOURCE_NOT_AVAILABLE_ALLOC = "OPSP8999"
    JSON_TR_KEY_NOT_FOUND = "OPSP9990"
    JSON_INPUT_NOT_FOUND = "OPSP9991"
    JSON_BODY_NOT_FOUND = "OPSP9992"
    JSON_INTERNAL_ERROR = "OPSP9993"
    JSON_INVALID_APPKEY = "OPSP9994"
    JSON_RESOURCE_NOT_AVAILABLE = "OPSP9995"
    JSON_APPKEY = "OPSP9996"
    JSON_CUSTTYPE_NOT_FOUND = "OPSP9997"
    JSON_HEADER_NOT_FOUND = "OPSP9998"
    JSON_INVALID_FORMAT = "OPSP9999"

    @property
    def text(self) -> str:
        """The message KIS documents for this code."""
        return _TEXTS[self]

    @property
    def session_level(self) -> bool:
        """True for codes about the whole session (key, appkey, malformed request), not one TR."""
        return self in SESSION_CODES

    @classmethod
    def lookup(cls, code: str) -> MsgCode | None:
        """The member for `code`, or None for a code this version does not know."""
        return _BY_VALUE.get(code)


_TEXTS: dict[MsgCode, str] = {
    MsgCode.SUBSCRIBE_SUCCESS: "SUBSCRIBE SUCCESS",
    MsgCode.UNSUBSCRIBE_SUCCESS: "UNSUBSCRIBE SUCCESS",
    MsgCode.ALREADY_IN_SUBSCRIBE: "ALREADY IN SUBSCRIBE",
    MsgCode.UNSUBSCRIBE_NOT_FOUND: "UNSUBSCRIBE ERROR(not found!)",
    MsgCode.SUBSCRIBE_INTERNAL_ERROR: "SUBSCRIBE INTERNAL ERROR",
    MsgCode.MAX_SUBSCRIBE_OVER: "MAX SUBSCRIBE OVER",
    MsgCode.MCI_SEND_FAILED: "SUBSCRIBE ERROR : mci send failed",
    MsgCode.INVALID_APPKEY_WARNING: "SUBSCRIBE WARNING : invalid appkey",
    MsgCode.INVALID_APPROVAL: "invalid approval",
    MsgCode.INVALID_TR_ID: "SUBSCRIBE ERROR : invalid tr_id",
    MsgCode.INVALID_TR_KEY: "SUBSCRIBE ERROR : invalid tr_key",
    MsgCode.JSON_INVALID_TR_KEY: "JSON PARSING ERROR : invalid tr_key",
    MsgCode.JSON_PERSONALSECKEY_NOT_FOUND: "JSON PARSING ERROR : personalseckey not found",
    MsgCode.JSON_APPSECRET_NOT_FOUND: "JSON PARSING ERROR : appsecret not found",
    MsgCode.ALREADY_IN_USE_APPKEY: "ALREADY IN USE appkey",
    MsgCode.JSON_INVALID_TR_TYPE: "JSON PARSING ERROR : invalid tr_type",
    MsgCode.JSON_INVALID_CUSTTYPE: "JSON PARSING ERROR : invalid custtype",
    MsgCode.JSON_RESOURCE_NOT_AVAILABLE_ALLOC: "JSON PARSING ERROR : resource not available (ALLOC_CALL_PARAM)",
    MsgCode.JSON_TR_KEY_NOT_FOUND: "JSON PARSING ERROR : invalid tr_key",
    MsgCode.JSON_INPUT_NOT_FOUND: "JSON PARSING ERROR : input not found",
    MsgCode.JSON_BODY_NOT_FOUND: "JSON PARSING ERROR : body not found",
    MsgCode.JSON_INTERNAL_ERROR: "JSON PARSING ERROR : internal error",
    MsgCode.JSON_INVALID_APPKEY: "JSON PARSING ERROR : INVALID appkey",
    MsgCode.JSON_RESOURCE_NOT_AVAILABLE: "JSON PARSING ERROR : resource not available",
    MsgCode.JSON_APPKEY: "JSON PARSING ERROR : appkey",
    MsgCode.JSON_CUSTTYPE_NOT_FOUND: "JSON PARSING ERROR : custtype not found",
    MsgCode.JSON_HEADER_NOT_FOUND: "JSON PARSING ERROR : header not found",
    MsgCode.JSON_INVALID_FORMAT: "JSON PARSING ERROR : invalid json format",
}

_BY_VALUE: dict[str, MsgCode] = {member.value: member for member in MsgCode}

#: Codes that concern the session rather than one subscription: the approval key, the appkey, and
#: every "JSON PARSING ERROR" (the server could not read the request, so it names no TR).
SESSION_CODES: frozenset[MsgCode] = frozenset(
    {MsgCode.INVALID_APPKEY_WARNING, MsgCode.INVALID_APPROVAL, MsgCode.ALREADY_IN_USE_APPKEY}
    | {member for member in MsgCode if _TEXTS[member].startswith("JSON PARSING ERROR")}
)

"""The approval key exchange (``POST /oauth2/Approval``), sans-IO over h11, and KIS's endpoints.

For people fetching approval keys themselves; the transports do it for you from `Credentials`.
The result of an exchange is a value (`ApprovalKey` or `ApprovalFailure`); `ApprovalError` is the
exception a transport raises with it.
"""

from __future__ import annotations

from ._approval import ENDPOINTS, ApprovalError, ApprovalExchange, ApprovalFailure, ApprovalKey, Endpoint

__all__ = ["ENDPOINTS", "ApprovalError", "ApprovalExchange", "ApprovalFailure", "ApprovalKey", "Endpoint"]

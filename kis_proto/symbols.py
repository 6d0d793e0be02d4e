"""Instruments: a small table of well-known listings (names, reference prices) and key checks.

`listing` and `LISTINGS` name the most traded KRX and US instruments for readable output (and
seed the simulator's prices); `key_problem` says what is wrong with a key for a TR before
anything is sent, by the TR's market.
"""

from __future__ import annotations

from ._symbols import LISTINGS, Listing, key_problem, listing

__all__ = ["LISTINGS", "Listing", "key_problem", "listing"]

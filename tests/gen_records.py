"""Generate `kis_proto/records.py` from `tests/data/fields.json` and the typing rules below.

Run ``python tests/gen_records.py`` after changing fields.json or a rule; `tests/test_registry.py`
fails while the committed module differs from what this script writes.

fields.json (copied from the team's protocol notes) lists the official columns of all 60
real-time TRs with the corrections recorded there. It has no types: each column's type comes from
its name (the last word of a KIS column name says what it is: ``_QTY`` a quantity, ``_CTRT`` a
rate, ``_HOUR`` a time …) and from the market (domestic stock prices are whole won; futures,
index and foreign prices are decimals). Where a word is ambiguous the column is text, which never
fails to convert; docs/decisions.md records the reasoning.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIELDS_JSON = HERE / "data" / "fields.json"
TARGET = HERE.parent / "kis_proto" / "records.py"

# --- markets, kinds, encryption ----------------------------------------------------------------

MARKET_BY_SOURCE_DIR = {
    "domestic_stock": "DOMESTIC_STOCK",
    "domestic_bond": "DOMESTIC_BOND",
    "domestic_futureoption": "DOMESTIC_FUTURES_OPTIONS",
    "elw": "DOMESTIC_ELW",
    "etfetn": "DOMESTIC_ETF",
    "overseas_stock": "OVERSEAS_STOCK",
    "overseas_futureoption": "OVERSEAS_FUTURES_OPTIONS",
}

# Execution notices: AES-encrypted on the wire (PROTOCOL.md §7).
ENCRYPTED = {"H0STCNI0", "H0GSCNI0", "H0IFCNI0", "H0MFCNI0", "H0EUCNI0", "HDFFF2C0", "HDFFF1C0"}
# Paper-trading notice ids share the real ids' layouts (PROTOCOL.md §3); fields.json lists two of
# the three, H0IFCNI9 is added here.
EXTRA_ALIASES = {"H0IFCNI0": ["H0IFCNI9"]}


def market(tr_id: str, source: str) -> str:
    if tr_id.startswith("H0UP"):
        return "DOMESTIC_INDEX"
    match = re.search(r"examples_\w+/(\w+)/", source)
    assert match, source
    return MARKET_BY_SOURCE_DIR[match.group(1)]


def kind(tr_id: str) -> str:
    if tr_id in ENCRYPTED:
        return "NOTICE"
    for suffix, name in (
        ("CNT0", "TRADE"),
        ("ASP0", "ORDER_BOOK"),
        ("ASP1", "ORDER_BOOK"),
        ("ANC0", "EXPECTED_TRADE"),
        ("MKO0", "MARKET_STATUS"),
        ("PGM0", "PROGRAM_TRADING"),
        ("MBC0", "MEMBERS"),
        ("NAV0", "NAV"),
        ("OAA0", "ORDER_BOOK"),
        ("OUP0", "TRADE"),
        ("OAC0", "EXPECTED_TRADE"),
        ("F010", "ORDER_BOOK"),
        ("F020", "TRADE"),
    ):
        if tr_id.endswith(suffix):
            return name
    raise SystemExit(f"no kind for {tr_id}")


# --- field types -------------------------------------------------------------------------------

STR_WORDS = {
    "CODE",
    "CLS",
    "CD",
    "YN",
    "GB",
    "NO",
    "ID",
    "ISCD",
    "NAME",
    "ISNM",
    "SIGN",
    "TP",
    "DVSN",
    "KIND",
    "COND",
    "FLAG",
    "RSYM",
    "SYMB",
    "SERIES",
    "MTYP",
    "FILLER",
    "QUOTSIGN",
    "GRP",
    "GRPSEQ",
    "STNO",
    "EMPL",
    "NUM",
    "CNTT",
    "DTIME",
    "CCNO",
    "ODNO",
}
DATE_WORDS = {"DATE", "DT", "KYMD", "XYMD", "TYMD"}
TIME_WORDS = {"HOUR", "TIME", "TM", "KHMS", "XHMS"}
INT_WORDS = {
    "QTY",
    "VOL",
    "RSQN",
    "CSNU",
    "CNT",
    "CNQN",
    "ICDC",
    "SMTN",
    "QNTT",
    "HVOL",
    "QT",
    "REMQ",
    "PBMN",
    "AMT",
    "BVOL",
    "AVOL",
    "EVOL",
    "TVOL",
    "BIVL",
    "ASVL",
    "BDVL",
    "ADVL",
    "VBID",
    "VASK",
    "DBID",
    "DASK",
    "ZDIV",
}
# Price-like words: whole won on domestic stock and ELW TRs, decimals everywhere else.
PRICE_WORDS = {"PRPR", "ASKP", "BIDP", "OPRC", "HGPR", "LWPR", "VRSS", "CNPR", "UNPR", "PRC"}
DECIMAL_WORDS = {
    "RATE",
    "CTRT",
    "ERT",
    "TNRT",
    "CTTR",
    "NAV",
    "NMIX",
    "VAL",
    "BASIS",
    "THPR",
    "DPRT",
    "ESDG",
    "DELTA",
    "GAMA",
    "VEGA",
    "THETA",
    "RHO",
    "VLTL",
    "PRIC",
    "PRICE",
    "CLPR",
    "MXPR",
    "LLAM",
    "CFP",
    "GEAR",
    "PRIT",
    "FEE",
    "UV",
    "RAT",
    "RLIM",
    "OPEN",
    "HIGH",
    "LOW",
    "LAST",
    "DIFF",
    "PBID",
    "PASK",
    "STRN",
    "TAMT",
}
WHOLE_WON_MARKETS = {"DOMESTIC_STOCK", "DOMESTIC_ELW"}
# Exceptions to the rules, each with its reason.
OVERRIDES: dict[tuple[str | None, str], str] = {
    # Averages and mid prices carry decimals even in won (62700.41 in a real H0STCNT0 frame).
    (None, "WGHN_AVRG_STCK_PRC"): "DECIMAL",
    (None, "KMID_PRC"): "DECIMAL",
    (None, "NMID_PRC"): "DECIMAL",
    # Overseas notice prices have an implied decimal point that depends on the country
    # (PROTOCOL.md §8: US 4, JP 1 …): a plain number would be wrong by a power of ten.
    ("H0GSCNI0", "CNTG_UNPR"): "STR",
    ("H0GSCNI0", "CNTG_UNPR12"): "STR",
    # Sub-second receive stamp in 1/10000 s, format unverified.
    ("HDFFF010", "RECV_TIME2"): "STR",
    ("HDFFF020", "RECV_TIME2"): "STR",
    # Overseas futures amounts are in the contract currency, with decimals.
    (None, "FM_CCLD_AMT"): "DECIMAL",
    # The column KIS calls 체결일자 holds the 40-char stock name (see the AES test vector).
    (None, "CNTG_ISNM40"): "STR",
}
# Overseas-futures clock columns have no verified sample; keep them as text.
TEXT_TIME_MARKETS = {"OVERSEAS_FUTURES_OPTIONS"}


def word(name: str) -> str:
    """The word of a column name that says what it holds: the last one, trailing digits dropped."""
    stripped = re.sub(r"_?\d+$", "", name)
    return stripped.rsplit("_", 1)[-1]


def field_type(tr_id: str, name: str, mkt: str) -> str:
    for key in ((tr_id, name), (None, name)):
        if key in OVERRIDES:
            return OVERRIDES[key]
    w = word(name)
    if w in STR_WORDS:
        return "STR"
    if w in DATE_WORDS:
        return "DATE"
    if w in TIME_WORDS:
        return "STR" if mkt in TEXT_TIME_MARKETS else "TIME"
    if w in INT_WORDS:
        return "INT"
    if w in PRICE_WORDS:
        return "INT" if mkt in WHOLE_WON_MARKETS else "DECIMAL"
    if w in DECIMAL_WORDS:
        return "DECIMAL"
    raise SystemExit(f"{tr_id}.{name}: no type rule for the word {w!r}; add one")


# --- friendly names ----------------------------------------------------------------------------

FRIENDLY_SYMBOL = [
    "SYMB",
    "MKSC_SHRN_ISCD",
    "STCK_SHRN_ISCD",
    "FUTS_SHRN_ISCD",
    "OPTN_SHRN_ISCD",
    "STND_ISCD",
    "BSTP_CLS_CODE",
    "SERIES_CD",
]
FRIENDLY_TIME = ["XHMS", "STCK_CNTG_HOUR", "BSOP_HOUR"]
FRIENDLY_PRICE = ["LAST", "STCK_PRPR", "FUTS_PRPR", "OPTN_PRPR", "PRPR_NMIX", "CNTG_UNPR", "LAST_PRICE"]
FRIENDLY_CHANGE = [
    ("DIFF", "SIGN"),
    ("PRDY_VRSS", "PRDY_VRSS_SIGN"),
    ("FUTS_PRDY_VRSS", "PRDY_VRSS_SIGN"),
    ("OPTN_PRDY_VRSS", "PRDY_VRSS_SIGN"),
    ("BSTP_NMIX_PRDY_VRSS", "PRDY_VRSS_SIGN"),
    ("PREV_DIFF_PRICE", "PREV_SIGN"),
]
FRIENDLY_VOLUME = ["EVOL", "CNTG_VOL", "LAST_CNQN", "CNTG_QTY", "LAST_QNTT"]
# A friendly name must mean the same thing everywhere; these TRs would mislead.
NO_FRIENDLY = {
    # An order book has no single trade price or volume; its time and symbol are fine.
    "ORDER_BOOK": {"price", "change", "volume"},
    "MEMBERS": {"price", "change", "volume"},
    "MARKET_STATUS": {"time", "price", "change", "volume"},
    "PROGRAM_TRADING": {"price", "change", "volume"},
}

CLASS_FOR_TYPE = {
    "STR": "StrField",
    "INT": "IntField",
    "DECIMAL": "DecimalField",
    "DATE": "DateField",
    "TIME": "TimeField",
}
PY_TYPE = {"STR": "str", "INT": "int", "DECIMAL": "Decimal", "DATE": "date", "TIME": "time"}


def friendly(tr_id: str, names: list[str], knd: str) -> list[tuple[str, str]]:
    """(friendly name, python expression) pairs for one TR."""
    out: list[tuple[str, str]] = []
    banned = NO_FRIENDLY.get(knd, set())

    def first(candidates: list[str]) -> str | None:
        return next((c for c in candidates if c in names), None)

    for label, candidates in (
        ("symbol", FRIENDLY_SYMBOL),
        ("time", FRIENDLY_TIME),
        ("price", FRIENDLY_PRICE),
        ("volume", FRIENDLY_VOLUME),
    ):
        if label in banned:
            continue
        found = first(candidates)
        if found:
            if tr_id == "H0GSCNI0" and label == "price":
                continue  # implied decimal point: no honest number without the country
            out.append((label, found.lower()))
    if "change" not in banned:
        for value, sign in FRIENDLY_CHANGE:
            if value in names and sign in names:
                out.append(("change", f"SignedChange({value.lower()}, {names.index(sign)})"))
                break
    order = ["symbol", "time", "price", "change", "volume"]
    return sorted(out, key=lambda pair: order.index(pair[0]))


# --- output ------------------------------------------------------------------------------------


def generate(spec: dict[str, Any]) -> str:
    lines = [
        '"""Record classes for the real-time TRs: one class per layout, one descriptor per column.',
        "",
        "GENERATED by tests/gen_records.py from tests/data/fields.json; do not edit by hand.",
        "",
        "Each class reads its columns by position and converts on access: ``rec.stck_prpr`` (typed),",
        '``rec["STCK_PRPR"]`` (mapping), and on the common TRs the friendly names ``symbol``, ``time``,',
        "``price``, ``change`` (signed) and ``volume`` (this trade's own volume). Each column is declared",
        "with its position, official name and Korean name.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        "from ._fields import (",
        "    DateField,",
        "    DecimalField,",
        "    IntField,",
        "    Market,",
        "    Record,",
        "    SignedChange,",
        "    StrField,",
        "    TimeField,",
        "    TRKind,",
        "    TRSpec,",
        ")",
    ]
    registry: list[str] = []
    all_names: list[str] = []
    for tr_id, entry in spec.items():
        names: list[str] = entry["fields"]
        kor: list[str] = entry["kor"] or [""] * len(names)
        mkt = market(tr_id, entry["source"])
        knd = kind(tr_id)
        tr_ids = list(entry["tr_ids"]) + EXTRA_ALIASES.get(tr_id, [])
        lines += ["", ""]
        lines.append(f"class {tr_id}(Record):")
        lines.append(
            f'    """{tr_id}: {len(names)} fields, {mkt.lower().replace("_", " ")}, '
            f"{knd.lower().replace('_', ' ')}."
        )
        if entry.get("note"):
            lines.append("")
            lines.append(f"    Note: {entry['note']}.")
        lines.append('    """')
        lines.append("")
        lines.append("    __slots__ = ()")
        lines.append("")
        for index, (name, korean) in enumerate(zip(names, kor, strict=True)):
            ftype = field_type(tr_id, name, mkt)
            attr = name.lower()
            assert attr.isidentifier(), name
            assert not hasattr(dict, attr), name
            korean_arg = f', "{korean}"' if korean else ""
            lines.append(f'    {attr} = {CLASS_FOR_TYPE[ftype]}({index}, "{name}"{korean_arg})')
        pairs = friendly(tr_id, names, knd)
        if pairs:
            lines.append("")
            lines.extend(f"    {label} = {expr}" for label, expr in pairs)
        all_names.append(tr_id)
        note = (entry.get("note") or "").replace('"', "'")
        registry.append(
            f'    "{tr_id}": TRSpec(tr_id="{tr_id}", tr_ids={tuple(tr_ids)!r}, market=Market.{mkt}, '
            f"kind=TRKind.{knd}, encrypted={tr_id in ENCRYPTED}, record_class={tr_id}"
            + (f', note="{note}"' if note else "")
            + "),"
        )
    lines += ["", ""]
    lines.append("#: What kis_proto knows about each real-time TR, by its main TR id.")
    lines.append("TRS: Final[dict[str, TRSpec]] = {")
    lines += registry
    lines.append("}")
    lines.append("")
    lines.append("#: The record class for every TR id, paper-trading notice ids included.")
    lines.append("RECORD_CLASSES: Final[dict[str, type[Record]]] = {")
    lines.append("    tr_id: spec.record_class for spec in TRS.values() for tr_id in spec.tr_ids")
    lines.append("}")
    lines.append("")
    lines.append("__all__ = [")
    lines += [f'    "{name}",' for name in sorted([*all_names, "RECORD_CLASSES", "TRS"])]
    lines.append("]")
    return "\n".join(lines) + "\n"


def render() -> str:
    spec = json.loads(FIELDS_JSON.read_text(encoding="utf-8"))
    return generate(spec)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        return 0 if TARGET.read_text(encoding="utf-8") == text else 1
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generate `kis_proto/records.py` and `docs/fields.md` from `kis_proto/layouts.toml`.

Run ``python tests/gen_records.py`` after changing the layouts table or a rule below;
`tests/test_registry.py` fails while the committed files differ from what this script writes.

The table lists every real-time TR's layouts by era, each with its sources. It has no types:
each column's type comes from its name (the last word of a KIS column name says what it is:
``_QTY`` a quantity, ``_CTRT`` a rate, ``_HOUR`` a time …) and from the market (domestic stock
prices are whole won; futures, index and foreign prices are decimals). Where a word is ambiguous
the column is text, which never fails to convert; docs/decisions.md records the reasoning.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LAYOUTS_TOML = ROOT / "kis_proto" / "layouts.toml"
TARGET = ROOT / "kis_proto" / "records.py"
DOCS = ROOT / "docs" / "fields.md"

MARKETS = {
    "domestic_stock",
    "domestic_index",
    "domestic_elw",
    "domestic_etf",
    "domestic_bond",
    "domestic_futures_options",
    "overseas_stock",
    "overseas_futures_options",
}
KINDS = {
    "trade",
    "order_book",
    "expected_trade",
    "notice",
    "market_status",
    "program_trading",
    "members",
    "nav",
}
TYPES = {"STR", "INT", "DECIMAL", "DATE", "TIME", "SESSION"}


@dataclass(frozen=True)
class Era:
    """One resolved layout of a TR: names, Korean names and types in wire order."""

    label: str
    source: str
    note: str
    names: list[str]
    kor: list[str]
    types: list[str]

    @property
    def width(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class TR:
    tr_id: str
    tr_ids: list[str]
    market: str
    kind: str
    encrypted: bool
    note: str
    eras: list[Era]

    @property
    def current(self) -> Era:
        return self.eras[-1]


def class_name(tr_id: str, era: Era, current: Era) -> str:
    """The TR id for today's layout; TR id + era (``H0STCNT0_2026_08``) for older ones."""
    if era is current:
        return tr_id
    return f"{tr_id}_{re.sub(r'[^0-9A-Za-z]+', '_', era.label).upper()}"


def load(path: Path = LAYOUTS_TOML) -> list[TR]:
    """Read and check the layouts table; stop with a message naming the entry at fault."""
    table: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    trs: list[TR] = []
    for tr_id, entry in table.items():
        where = f"{path.name} [{tr_id}]"
        market, kind = entry["market"], entry["kind"]
        if market not in MARKETS or kind not in KINDS:
            raise SystemExit(f"{where}: unknown market {market!r} or kind {kind!r}")
        eras: list[Era] = []
        for item in entry["layouts"]:
            label = item["era"]
            if any(e.label == label for e in eras) or (eras and label <= eras[-1].label):
                raise SystemExit(f"{where}: era {label!r} must be new and sort after the one before it")
            if "fields" in item:
                pairs = [(str(n), str(k)) for n, k in item["fields"]]
            else:
                base = next((e for e in eras if e.label == item.get("base")), None)
                if base is None:
                    raise SystemExit(f"{where} era {label}: give `fields`, or a `base` era listed before it")
                keep = int(item.get("keep", base.width))
                pairs = list(zip(base.names[:keep], base.kor[:keep], strict=True))
                pairs += [(str(n), str(k)) for n, k in item.get("append", [])]
            names = [n for n, _ in pairs]
            if len(set(names)) != len(names):
                raise SystemExit(f"{where} era {label}: a column name appears twice")
            if any(e.width == len(names) for e in eras):
                raise SystemExit(
                    f"{where} era {label}: {len(names)} fields, the width of an earlier era; the decoder "
                    "chooses a layout by width, so two eras of one TR cannot share one"
                )
            overrides: dict[str, str] = item.get("types", {})
            if set(overrides.values()) - TYPES or set(overrides) - set(names):
                raise SystemExit(f"{where} era {label}: bad `types` {overrides}")
            types = [overrides.get(n) or field_type(tr_id, n, market.upper()) for n in names]
            eras.append(Era(label, item["source"], item.get("note", ""), names, [k for _, k in pairs], types))
        seen: dict[str, str] = {}
        for era in eras:
            for name, ftype in zip(era.names, era.types, strict=True):
                if seen.setdefault(name, ftype) != ftype:
                    raise SystemExit(f"{where}: {name} has two types across eras")
        trs.append(
            TR(
                tr_id,
                list(entry["tr_ids"]),
                market,
                kind,
                bool(entry.get("encrypted", False)),
                entry.get("note", ""),
                eras,
            )
        )
    return trs


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
    (None, "MID_PRC"): "DECIMAL",
    # The trading session of a KRX trade or book since 2026-09-14 (1 pre, 2 regular, 3 after, 5 close).
    (None, "MARKET_CLS_CODE"): "SESSION",
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
FRIENDLY_SESSION = ["MARKET_CLS_CODE"]
FRIENDLY_ORDER = ["symbol", "time", "price", "change", "volume", "session"]
# A friendly name must mean the same thing everywhere; these TRs would mislead.
NO_FRIENDLY = {
    # An order book has no single trade price or volume; its time and symbol are fine.
    "ORDER_BOOK": {"price", "change", "volume"},
    "MEMBERS": {"price", "change", "volume", "session"},
    "MARKET_STATUS": {"time", "price", "change", "volume", "session"},
    "PROGRAM_TRADING": {"price", "change", "volume", "session"},
}

CLASS_FOR_TYPE = {
    "STR": "StrField",
    "INT": "IntField",
    "DECIMAL": "DecimalField",
    "DATE": "DateField",
    "TIME": "TimeField",
    "SESSION": "SessionField",
}
PY_TYPE = {
    "STR": "str",
    "INT": "int",
    "DECIMAL": "Decimal",
    "DATE": "date",
    "TIME": "time",
    "SESSION": "MarketSession",
}


def friendly(tr_id: str, names: list[str], knd: str) -> list[tuple[str, str, str]]:
    """(friendly name, column it reads, python expression) triples for one layout."""
    out: list[tuple[str, str, str]] = []
    banned = NO_FRIENDLY.get(knd.upper(), set())

    def first(candidates: list[str]) -> str | None:
        return next((c for c in candidates if c in names), None)

    for label, candidates in (
        ("symbol", FRIENDLY_SYMBOL),
        ("time", FRIENDLY_TIME),
        ("price", FRIENDLY_PRICE),
        ("volume", FRIENDLY_VOLUME),
        ("session", FRIENDLY_SESSION),
    ):
        if label in banned:
            continue
        found = first(candidates)
        if found:
            if tr_id == "H0GSCNI0" and label == "price":
                continue  # implied decimal point: no honest number without the country
            out.append((label, found, found.lower()))
    if "change" not in banned:
        for value, sign in FRIENDLY_CHANGE:
            if value in names and sign in names:
                out.append(("change", value, f"SignedChange({value.lower()}, {names.index(sign)})"))
                break
    return sorted(out, key=lambda triple: FRIENDLY_ORDER.index(triple[0]))


# --- output ------------------------------------------------------------------------------------


# Friendly names whose columns KIS always fills, by kind: their attributes are typed without None.
REQUIRED_FRIENDLY = {"trade": {"symbol", "time", "price", "volume"}, "order_book": {"symbol", "time"}}
REQUIRED_CLASS = {
    "STR": "RequiredStrField",
    "INT": "RequiredIntField",
    "DECIMAL": "RequiredDecimalField",
    "TIME": "RequiredTimeField",
}


def required_columns(tr: TR, names: list[str]) -> set[str]:
    """The columns KIS always sends: the key (first) column, and on trades and books the columns of
    the friendly names that define them (a trade without a price is no trade)."""
    wanted = REQUIRED_FRIENDLY.get(tr.kind, set())
    return {names[0]} | {col for label, col, _ in friendly(tr.tr_id, names, tr.kind) if label in wanted}


def field_expr(tr: TR, index: int | str, col: str, korean: str, ftype: str, required: bool) -> str:
    """The descriptor of one column: its class, position, names, and for times their zone."""
    cls = REQUIRED_CLASS.get(ftype) if required else None
    args = [str(index), f'"{col}"'] + ([f'"{korean}"'] if korean else [])
    # Times of day in Korea are KST; XHMS is the exchange's own local time (zone not in the record).
    if ftype == "TIME" and (tr.market.startswith("domestic") or col == "KHMS"):
        args.append("tz=KST")
    return f"{cls or CLASS_FOR_TYPE[ftype]}({', '.join(args)})"


def _class_lines(tr: TR, era: Era) -> list[str]:
    """The class of one era: every column, absent ones of today's layout, the friendly names."""
    current = tr.current
    name = class_name(tr.tr_id, era, current)
    what = f"{tr.market.replace('_', ' ')}, {tr.kind.replace('_', ' ')}"
    lines = ["", "", f"class {name}({'Record' if era is current else tr.tr_id}):"]
    lines.append(f'    """{tr.tr_id}, era {era.label}: {era.width} fields, {what}.')
    older = [class_name(tr.tr_id, e, current) for e in tr.eras if e is not era]
    if era is current and older:
        lines += ["", f"    Older layouts, chosen by width: {', '.join(older)}."]
    elif era is not current:
        lines += ["", f"    An older layout of {tr.tr_id}; its columns that this era lacks read as None."]
    if tr.note:
        lines += ["", f"    Note: {tr.note}."]
    lines += ['    """', "", "    __slots__ = ()", "", f'    era = "{era.label}"', ""]
    required = required_columns(tr, era.names)
    current_required = required_columns(tr, current.names)
    for index, (col, korean, ftype) in enumerate(zip(era.names, era.kor, era.types, strict=True)):
        attr = col.lower()
        assert attr.isidentifier(), col
        assert not hasattr(dict, attr), col
        lines.append(f"    {attr} = {field_expr(tr, index, col, korean, ftype, col in required)}")
    if era is not current:
        # Today's columns this era lacks: inherited descriptors would read the wrong position.
        for col, korean, ftype in zip(current.names, current.kor, current.types, strict=True):
            if col not in era.names:
                assert col not in current_required, f"{tr.tr_id} {era.label} lacks required {col}"
                lines.append(f"    {col.lower()} = {field_expr(tr, 'MISSING', col, korean, ftype, False)}")
    pairs = friendly(tr.tr_id, era.names, tr.kind)
    labels = {label for label, _, _ in pairs}
    missing: list[str] = []
    if era is not current:
        for label, col, _ in friendly(tr.tr_id, current.names, tr.kind):
            if label not in labels:
                missing.append(f"    {label} = {col.lower()}")
    if pairs or missing:
        lines.append("")
        lines.extend(f"    {label} = {expr}" for label, _, expr in pairs)
        lines.extend(missing)
    return lines


def generate(trs: list[TR]) -> str:
    lines = [
        '"""Record classes for the real-time TRs: one class per TR and era, one descriptor per column.',
        "",
        "GENERATED by tests/gen_records.py from kis_proto/layouts.toml; do not edit by hand.",
        "",
        "Each class reads its columns by position and converts on access: ``rec.stck_prpr`` (typed),",
        '``rec["STCK_PRPR"]`` (mapping), and on the common TRs the friendly names ``symbol``, ``time``,',
        "``price``, ``change`` (signed), ``volume`` (this trade's own volume) and ``session``. Each column",
        "is declared with its position, official name and Korean name. A TR's class is today's layout;",
        "its older layouts subclass it (``H0STCNT0_2026_08``), and the decoder picks one by width.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        "from ._fields import (",
        "    KST,",
        "    MISSING,",
        "    DateField,",
        "    DecimalField,",
        "    IntField,",
        "    Layout,",
        "    Market,",
        "    Record,",
        "    RequiredDecimalField,",
        "    RequiredIntField,",
        "    RequiredStrField,",
        "    RequiredTimeField,",
        "    SessionField,",
        "    SignedChange,",
        "    StrField,",
        "    TimeField,",
        "    TRKind,",
        "    TRSpec,",
        ")",
    ]
    registry: list[str] = []
    all_names: list[str] = []
    for tr in trs:
        lines += _class_lines(tr, tr.current)
        all_names.append(tr.tr_id)
        for era in tr.eras[:-1]:
            lines += _class_lines(tr, era)
            all_names.append(class_name(tr.tr_id, era, tr.current))
        layouts = []
        for era in tr.eras:
            note = f", note={quote(era.note)}" if era.note else ""
            layouts.append(
                f"            Layout(tr_id={quote(tr.tr_id)}, era={quote(era.label)}, "
                f"record_class={class_name(tr.tr_id, era, tr.current)}, source={quote(era.source)}{note}),"
            )
        note = f"        note={quote(tr.note)},\n" if tr.note else ""
        tr_ids = "".join(f"{quote(t)}, " for t in tr.tr_ids).rstrip() if len(tr.tr_ids) > 1 else ""
        tr_ids = tr_ids or f"{quote(tr.tr_ids[0])},"
        registry.append(
            f"    {quote(tr.tr_id)}: TRSpec(\n"
            f"        tr_id={quote(tr.tr_id)},\n"
            f"        tr_ids=({tr_ids.rstrip(',') if len(tr.tr_ids) > 1 else tr_ids}),\n"
            f"        market=Market.{tr.market.upper()},\n"
            f"        kind=TRKind.{tr.kind.upper()},\n"
            f"        encrypted={tr.encrypted},\n"
            f"        layouts=(\n" + "\n".join(layouts) + "\n        ),\n" + note + "    ),"
        )
    eras = sorted({era.label for tr in trs for era in tr.eras})
    lines += ["", ""]
    lines.append("#: What kis_proto knows about each real-time TR, by its main TR id.")
    lines.append("TRS: Final[dict[str, TRSpec]] = {")
    lines += registry
    lines.append("}")
    lines.append("")
    lines.append("#: The class of today's layout for every TR id, paper-trading notice ids included.")
    lines.append("RECORD_CLASSES: Final[dict[str, type[Record]]] = {")
    lines.append("    tr_id: spec.record_class for spec in TRS.values() for tr_id in spec.tr_ids")
    lines.append("}")
    lines.append("")
    lines.append(
        "#: For every TR id: today's class, and the class of each known width (what the decoder reads)."
    )
    lines.append("LAYOUTS_BY_ID: Final[dict[str, tuple[type[Record], dict[int, type[Record]]]]] = {")
    lines.append(
        "    tr_id: (spec.record_class, {layout.width: layout.record_class for layout in spec.layouts})"
    )
    lines.append("    for spec in TRS.values()")
    lines.append("    for tr_id in spec.tr_ids")
    lines.append("}")
    lines.append("")
    lines.append("#: Every era label of the table, oldest first; the last is today's.")
    lines.append(f"ERAS: Final[tuple[str, ...]] = {tuple(eras)!r}")
    lines.append("")
    lines.append("__all__ = [")
    lines += [
        f'    "{name}",' for name in sorted([*all_names, "ERAS", "LAYOUTS_BY_ID", "RECORD_CLASSES", "TRS"])
    ]
    lines.append("]")
    return "\n".join(lines) + "\n"


def quote(text: str) -> str:
    """A Python string literal for `text` (double quotes, as the rest of the module)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the Fields reference ------------------------------------------------------------------------


def generate_docs(trs: list[TR]) -> str:
    """docs/fields.md: per TR, every column of every era with its Korean name, type and alias."""
    out = [
        "# Fields",
        "",
        "<!-- GENERATED by tests/gen_records.py from kis_proto/layouts.toml; do not edit by hand. -->",
        "",
        "Every real-time TR kis_proto knows, with the columns of each of its layouts (eras). The era",
        "columns give each field's position in a record of that era (— where the era lacks it); the",
        "decoder picks the era whose width equals the record's width. The source of every era is cited.",
        "See [Layouts and eras](layouts.md) for what changed on 2026-09-14 and how drift is handled.",
        "Types: `int`, `Decimal`, `str`, `date`, `time`, and `MarketSession` for `MARKET_CLS_CODE`.",
        "An empty field reads as None.",
        "",
    ]
    for tr in trs:
        current = tr.current
        ids = ", ".join(f"`{t}`" for t in tr.tr_ids)
        out += [f"## {tr.tr_id}", ""]
        flags = "AES-encrypted" if tr.encrypted else "plain"
        out.append(f"{ids}: {tr.market.replace('_', ' ')}, {tr.kind.replace('_', ' ')}, {flags}.")
        out.append("")
        if tr.note:
            out += [f"Note: {tr.note}.", ""]
        for era in tr.eras:
            extra = f" *{era.note}.*" if era.note else ""
            name = class_name(tr.tr_id, era, current)
            out.append(f"- **{era.label}** ({era.width} fields, `records.{name}`): {era.source}.{extra}")
        out.append("")
        names = list(current.names)
        for era in reversed(tr.eras[:-1]):
            names += [n for n in era.names if n not in names]
        kor: dict[str, str] = {}
        types: dict[str, str] = {}
        for era in tr.eras:
            for col, korean, ftype in zip(era.names, era.kor, era.types, strict=True):
                kor[col] = korean or kor.get(col, "")
                types[col] = ftype
        aliases: dict[str, list[str]] = {}
        for era in tr.eras:
            for label, col, _ in friendly(tr.tr_id, era.names, tr.kind):
                if label not in aliases.setdefault(col, []):
                    aliases[col].append(label)
        head = ["name", "한글", "type", "alias", *(f"{e.label}" for e in tr.eras)]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for col in names:
            positions = [str(e.names.index(col)) if col in e.names else "—" for e in tr.eras]
            alias = ", ".join(f"`{a}`" for a in aliases.get(col, []))
            row = [f"`{col}`", kor[col], f"`{PY_TYPE[types[col]]}`", alias, *positions]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def render() -> str:
    return generate(load())


def render_docs() -> str:
    return generate_docs(load())


def main() -> int:
    text, docs = render(), render_docs()
    if "--check" in sys.argv:
        stale = TARGET.read_text(encoding="utf-8") != text or DOCS.read_text(encoding="utf-8") != docs
        return 1 if stale else 0
    TARGET.write_text(text, encoding="utf-8")
    DOCS.write_text(docs, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The TR registry against the field table it is generated from, and the typing rules' results."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest

from kis_proto import LocalProtocolError, MarketSession, Record, records
from kis_proto._fields import SignedChange
from kis_proto.layouts import ERAS, TRS, FieldType, Market, TRKind, tr_spec

from . import gen_records
from .helpers import DATA

# The team's copy of the official sample's field lists (as of 2026-08): the 2026-08 eras must match it.
SAMPLE: dict[str, dict[str, Any]] = json.loads((DATA / "fields.json").read_text(encoding="utf-8"))
# The layouts table, read here without the generator's code.
TABLE: dict[str, dict[str, Any]] = tomllib.loads(gen_records.LAYOUTS_TOML.read_text(encoding="utf-8"))
# Where the table departs from the official sample on purpose (docs/layouts.md).
CORRECTED = {"HDFFF1C0", "HDFFF2C0"}  # the sample omits the leading USER_ID


def resolved(tr_id: str) -> list[tuple[str, list[str], list[str]]]:
    """(era, names, Korean names) of each layout of `tr_id` in the table, oldest first."""
    out: list[tuple[str, list[str], list[str]]] = []
    for item in TABLE[tr_id]["layouts"]:
        if "fields" in item:
            pairs = [tuple(pair) for pair in item["fields"]]
        else:
            [(_, names, kor)] = [e for e in out if e[0] == item["base"]]
            keep = item.get("keep", len(names))
            pairs = [*zip(names[:keep], kor[:keep], strict=True), *map(tuple, item.get("append", []))]
        out.append((item["era"], [p[0] for p in pairs], [p[1] for p in pairs]))
    return out


def test_generated_module_and_docs_are_up_to_date() -> None:
    assert gen_records.TARGET.read_text(encoding="utf-8") == gen_records.render(), (
        "kis_proto/records.py is stale: run `python tests/gen_records.py`"
    )
    assert gen_records.DOCS.read_text(encoding="utf-8") == gen_records.render_docs(), (
        "docs/fields.md is stale: run `python tests/gen_records.py`"
    )


def test_all_sixty_trs_with_every_era_of_the_table() -> None:
    assert len(TRS) == len(TABLE) == 60
    for tr_id, entry in TABLE.items():
        spec = TRS[tr_id]
        eras = resolved(tr_id)
        assert spec.eras == tuple(era for era, _, _ in eras)
        for layout, (era, names, kor) in zip(spec.layouts, eras, strict=True):
            assert layout.era == layout.record_class.era == era
            assert [f.name for f in layout.fields] == names
            assert [f.kor for f in layout.fields] == kor
            assert layout.width == layout.record_class.width == len(names)
            assert issubclass(layout.record_class, spec.record_class)
            assert layout.source
        assert len({layout.width for layout in spec.layouts}) == len(spec.layouts), tr_id
        assert tuple(entry["tr_ids"]) == spec.tr_ids
        assert spec.record_class.__name__ == tr_id
        assert spec.record_class.era == spec.eras[-1]
        for tr in spec.tr_ids:
            assert tr_spec(tr) is spec


def test_the_2026_08_eras_are_the_official_sample_lists() -> None:
    for tr_id, entry in SAMPLE.items():
        layout = TRS[tr_id].layout("2026-08")
        names = [f.name for f in layout.fields]
        if tr_id in CORRECTED:
            assert names == ["USER_ID", *entry["fields"]]
        else:
            assert names == entry["fields"], tr_id
            assert [f.kor for f in layout.fields] == (entry["kor"] or [""] * len(names))


@pytest.mark.parametrize(
    ("tr_id", "widths", "first"),
    [
        ("HDFSCNT0", (26,), "RSYM"),
        ("HDFSASP0", (17, 71), "RSYM"),
        ("HDFSASP1", (17,), "RSYM"),
        ("H0STNAV0", (8,), "MKSC_SHRN_ISCD"),
        ("H0STCNT0", (46, 47), "MKSC_SHRN_ISCD"),
        ("H0NXCNT0", (46, 47), "MKSC_SHRN_ISCD"),
        ("H0UNCNT0", (46, 47), "MKSC_SHRN_ISCD"),
        ("H0STASP0", (59, 62, 63), "MKSC_SHRN_ISCD"),
        ("H0NXASP0", (65, 62), "MKSC_SHRN_ISCD"),
        ("H0UNASP0", (65, 66), "MKSC_SHRN_ISCD"),
        ("H0STCNI0", (26,), "CUST_ID"),
        ("H0GSCNI0", (25,), "CUST_ID"),
        ("HDFFF1C0", (33,), "USER_ID"),
        ("HDFFF2C0", (33,), "USER_ID"),
    ],
)
def test_corrected_and_new_layouts(tr_id: str, widths: tuple[int, ...], first: str) -> None:
    spec = TRS[tr_id]
    assert tuple(layout.width for layout in spec.layouts) == widths
    assert spec.width == widths[-1]
    assert all(layout.fields[0].name == first for layout in spec.layouts)


def test_layout_by_era_and_by_width() -> None:
    spec = TRS["H0STASP0"]
    assert spec.eras == ("2026-08", "2026-08+mid", "2026-09")
    assert spec.layout().era == spec.layout("2026-09").era == spec.layout("2027-01").era == "2026-09"
    assert spec.layout("2026-08").width == 59
    assert spec.layout("2026-08+mid").width == 62
    assert spec.layout("2020-01").era == "2026-08"  # before every era: the oldest
    assert spec.layout_for_width(62) is spec.layouts[1]
    assert spec.layout_for_width(60) is None
    assert ERAS == ("2026-08", "2026-08+mid", "2026-09")


def test_encrypted_trs_are_the_notices() -> None:
    encrypted = {tr for spec in TRS.values() if spec.encrypted for tr in spec.tr_ids}
    assert encrypted == {
        "H0STCNI0",
        "H0STCNI9",
        "H0GSCNI0",
        "H0GSCNI9",
        "H0IFCNI0",
        "H0IFCNI9",
        "H0MFCNI0",
        "H0EUCNI0",
        "HDFFF2C0",
        "HDFFF1C0",
    }
    assert all(spec.kind is TRKind.NOTICE for spec in TRS.values() if spec.encrypted)


def test_markets() -> None:
    assert TRS["H0STCNT0"].market is Market.DOMESTIC_STOCK
    assert TRS["H0UPCNT0"].market is Market.DOMESTIC_INDEX
    assert TRS["H0IFCNT0"].market is Market.DOMESTIC_FUTURES_OPTIONS
    assert TRS["HDFSCNT0"].market is Market.OVERSEAS_STOCK
    assert TRS["HDFFF020"].market is Market.OVERSEAS_FUTURES_OPTIONS
    assert TRS["H0EWCNT0"].market is Market.DOMESTIC_ELW
    assert TRS["H0BJCNT0"].market is Market.DOMESTIC_BOND
    assert TRS["H0STNAV0"].market is Market.DOMESTIC_ETF


def test_every_tr_id_is_well_formed_for_requests() -> None:
    for spec in TRS.values():
        for tr in spec.tr_ids:
            assert re.fullmatch(r"[A-Z][A-Z0-9]{7}", tr), tr


def test_attributes_do_not_shadow_the_record_interface() -> None:
    reserved = set(dir(Record))
    for spec in TRS.values():
        for field in spec.fields:
            assert field.name.lower() not in reserved, (spec.tr_id, field.name)


@pytest.mark.parametrize(
    ("tr_id", "column", "ftype"),
    [
        ("H0STCNT0", "STCK_PRPR", FieldType.INT),
        ("H0STCNT0", "PRDY_VRSS", FieldType.INT),
        ("H0STCNT0", "PRDY_CTRT", FieldType.DECIMAL),
        ("H0STCNT0", "WGHN_AVRG_STCK_PRC", FieldType.DECIMAL),
        ("H0STCNT0", "STCK_CNTG_HOUR", FieldType.TIME),
        ("H0STCNT0", "BSOP_DATE", FieldType.DATE),
        ("H0STCNT0", "PRDY_VRSS_SIGN", FieldType.STR),
        ("H0STCNT0", "MKSC_SHRN_ISCD", FieldType.STR),
        ("H0STASP0", "ASKP_RSQN1", FieldType.INT),
        ("H0IFCNT0", "FUTS_PRPR", FieldType.DECIMAL),
        ("H0UPCNT0", "PRPR_NMIX", FieldType.DECIMAL),
        ("HDFSCNT0", "LAST", FieldType.DECIMAL),
        ("HDFSCNT0", "TVOL", FieldType.INT),
        ("HDFSCNT0", "XYMD", FieldType.DATE),
        ("H0STCNI0", "ODER_NO", FieldType.STR),  # order numbers keep their leading zeros
        ("H0STCNI0", "CNTG_UNPR", FieldType.INT),
        ("H0GSCNI0", "CNTG_UNPR", FieldType.STR),  # implied decimal point per country
        ("H0STCNT0", "MARKET_CLS_CODE", FieldType.SESSION),
        ("H0STASP0", "MARKET_CLS_CODE", FieldType.SESSION),
        ("H0STASP0", "MID_PRC", FieldType.DECIMAL),  # (358500+358000)/2 may end in .5
        ("H0NXASP0", "NMID_PRC", FieldType.DECIMAL),
        ("HDFSASP0", "PBID10", FieldType.DECIMAL),
        ("HDFSASP0", "VASK10", FieldType.INT),
    ],
)
def test_declared_types(tr_id: str, column: str, ftype: FieldType) -> None:
    [field] = [f for f in TRS[tr_id].fields if f.name == column]
    assert field.type is ftype


def test_friendly_names_on_the_common_trs() -> None:
    assert records.H0STCNT0.friendly == ("symbol", "time", "price", "change", "volume", "session")
    assert records.H0STCNT0_2026_08.friendly == ("symbol", "time", "price", "change", "volume")
    assert records.HDFSCNT0.friendly == ("symbol", "time", "price", "change", "volume")
    assert records.H0STCNI0.friendly == ("symbol", "time", "price", "volume")
    assert records.H0STASP0.friendly == ("symbol", "time", "session")
    assert records.H0STASP0_2026_08.friendly == ("symbol", "time")
    assert records.H0NXASP0.friendly == ("symbol", "time")  # the NXT book has no session column
    change = records.H0STCNT0.__dict__["change"]
    assert isinstance(change, SignedChange)
    assert (change.index, change.sign_index) == (4, 3)  # PROTOCOL.md §11c: the change is [4]; [3] is its sign


def test_field_type_values_are_the_python_types() -> None:
    assert [t.value for t in FieldType] == [str, int, Decimal, date, time, MarketSession]


def test_a_record_class_names_its_tr_for_typed_callbacks() -> None:
    from kis_proto.feed import tr_id_of

    assert tr_id_of(records.H0STCNT0) == tr_id_of(records.H0STCNT0_2026_08) == "H0STCNT0"
    assert tr_id_of(records.HDFFF2C0) == "HDFFF2C0"
    assert tr_id_of("H0STCNI9") == "H0STCNI9"
    with pytest.raises(LocalProtocolError, match="not a record class"):
        tr_id_of(Record)

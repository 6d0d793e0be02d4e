"""The TR registry against the field table it is generated from, and the typing rules' results."""

from __future__ import annotations

import json
import re
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest

from kis_proto import TRS, FieldType, Market, Record, TRKind, records, tr_spec
from kis_proto._fields import SignedChange

from . import gen_records
from .helpers import DATA

TABLE: dict[str, dict[str, Any]] = json.loads((DATA / "fields.json").read_text(encoding="utf-8"))


def test_generated_module_is_up_to_date() -> None:
    assert gen_records.TARGET.read_text(encoding="utf-8") == gen_records.render(), (
        "kis_proto/records.py is stale: run `python tests/gen_records.py`"
    )


def test_all_sixty_trs_with_their_official_columns() -> None:
    assert len(TRS) == len(TABLE) == 60
    for tr_id, entry in TABLE.items():
        spec = TRS[tr_id]
        assert [f.name for f in spec.fields] == entry["fields"]
        assert [f.kor for f in spec.fields] == (entry["kor"] or [""] * spec.width)
        assert spec.width == entry["count"]
        assert set(entry["tr_ids"]) <= set(spec.tr_ids)
        assert spec.record_class.__name__ == tr_id
        for tr in spec.tr_ids:
            assert tr_spec(tr) is spec


@pytest.mark.parametrize(
    ("tr_id", "width", "first"),
    [
        ("HDFSCNT0", 26, "RSYM"),
        ("HDFSASP0", 17, "RSYM"),
        ("HDFSASP1", 17, "RSYM"),
        ("H0STNAV0", 8, "MKSC_SHRN_ISCD"),
        ("H0STCNT0", 46, "MKSC_SHRN_ISCD"),
        ("H0STASP0", 59, "MKSC_SHRN_ISCD"),
        ("H0STCNI0", 26, "CUST_ID"),
        ("H0GSCNI0", 25, "CUST_ID"),
    ],
)
def test_corrected_layouts(tr_id: str, width: int, first: str) -> None:
    spec = TRS[tr_id]
    assert spec.width == width
    assert spec.fields[0].name == first


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
    ],
)
def test_declared_types(tr_id: str, column: str, ftype: FieldType) -> None:
    [field] = [f for f in TRS[tr_id].fields if f.name == column]
    assert field.type is ftype


def test_friendly_names_on_the_common_trs() -> None:
    assert records.H0STCNT0.friendly == ("symbol", "time", "price", "change", "volume")
    assert records.HDFSCNT0.friendly == ("symbol", "time", "price", "change", "volume")
    assert records.H0STCNI0.friendly == ("symbol", "time", "price", "volume")
    assert records.H0STASP0.friendly == ("symbol", "time")
    change = records.H0STCNT0.__dict__["change"]
    assert isinstance(change, SignedChange)
    assert (change.index, change.sign_index) == (4, 3)  # PROTOCOL.md §11c: the change is [4]; [3] is its sign


def test_field_type_values_are_the_python_types() -> None:
    assert [t.value for t in FieldType] == [str, int, Decimal, date, time]

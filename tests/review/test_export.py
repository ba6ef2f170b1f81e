"""Exports of a session's fills, decisions and P&L points parse back with the right rows."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from tests.review.test_pages import T0_NS, build_session
from tests.roles import make_user


@pytest.fixture
def stored(client, db):
    client.force_login(make_user("viewer"))
    return build_session()


def _get(client, session, table, fmt):
    resp = client.get(reverse("review:export", args=[session.pk, table, fmt]))
    assert resp.status_code == 200
    assert f'filename="session-{session.pk}-{table}.{fmt}"' in resp["Content-Disposition"]
    return resp, b"".join(resp.streaming_content)


def test_fills_csv_streams_every_fill_in_time_order(client, stored):
    resp, body = _get(client, stored, "fills", "csv")
    assert resp.streaming and resp["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [r["fill_id"] for r in rows] == ["f0", "f1", "f2"]
    assert [int(r["side"]) for r in rows] == [1, -1, 1]
    assert int(rows[0]["ts_ns"]) == T0_NS + 2_500_000_000 and rows[0]["ts"].startswith("2024-08-08T12:00:02.5")
    assert float(rows[1]["price"]) == 60_006.0


def test_decisions_csv_carries_inputs_and_reasons_as_json(client, stored):
    _resp, body = _get(client, stored, "decisions", "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 10
    assert json.loads(rows[3]["inputs"])["i"] == 3 and json.loads(rows[3]["reasons"]) == ["reason 3"]


@pytest.mark.parametrize(("table", "n"), [("fills", 3), ("decisions", 10), ("pnl", 10)])
def test_parquet_exports_read_back_with_pyarrow(client, stored, table, n):
    resp, body = _get(client, stored, table, "parquet")
    assert resp["Content-Type"] == "application/vnd.apache.parquet"
    t = pq.read_table(io.BytesIO(body))
    assert t.num_rows == n
    assert t.column("ts_ns").to_pylist()[0] >= T0_NS
    if table == "pnl":
        assert t.column("spread_capture").to_pylist()[4] == pytest.approx(0.2)
    if table == "decisions":
        assert json.loads(t.column("inputs").to_pylist()[9])["i"] == 9
        assert str(t.schema.field("ts").type) == "timestamp[us, tz=UTC]"


def test_parquet_is_written_in_row_group_batches(client, stored, monkeypatch):
    from apps.review import export

    monkeypatch.setattr(export, "PARQUET_BATCH_ROWS", 4)
    _resp, body = _get(client, stored, "decisions", "parquet")
    f = pq.ParquetFile(io.BytesIO(body))
    assert f.metadata.num_rows == 10 and f.metadata.num_row_groups == 3


def test_an_empty_export_is_a_valid_file_with_the_header(client, stored):
    from apps.trading.models import FillRecord

    FillRecord.objects.filter(session=stored).delete()
    _resp, body = _get(client, stored, "fills", "parquet")
    assert pq.read_table(io.BytesIO(body)).num_rows == 0
    _resp, body = _get(client, stored, "fills", "csv")
    assert body.decode().splitlines() == ["ts,ts_ns,client_order_id,fill_id,side,price,size,fee,liquidity"]


def test_an_unknown_table_or_format_is_refused_by_name(client, stored):
    resp = client.get(reverse("review:export", args=[stored.pk, "orders", "csv"]))
    assert resp.status_code == 400 and "table" in resp.content.decode()
    resp = client.get(reverse("review:export", args=[stored.pk, "fills", "xlsx"]))
    assert resp.status_code == 400 and "format" in resp.content.decode()

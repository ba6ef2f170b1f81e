"""Two sessions side by side: the time axis they share, their results, fills, spreads and parameter diff."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.review.compare import ABSOLUTE, ELAPSED, flatten, params_diff
from tests.review.test_pages import SEC, T0_NS, build_session
from tests.roles import make_user


@pytest.fixture
def viewer(client, db):
    client.force_login(make_user("viewer"))


def test_two_runs_over_the_same_data_share_the_absolute_time_axis_and_show_their_parameter_diff(client, viewer):
    a, b = build_session("a", gamma=0.1), build_session("b", gamma=0.5)
    resp = client.get(reverse("review:compare"), {"a": a.pk, "b": b.pk})
    html = resp.content.decode()
    assert resp.status_code == 200
    assert f'data-alignment="{ABSOLUTE}"' in html and "one absolute UTC time axis" in html
    assert "<th>strategy.gamma</th><td>0.1</td><td>0.5</td>" in html
    assert "strategy.kappa" not in html  # equal parameters are not listed
    assert reverse("review:series", args=[a.pk]) in html and reverse("review:series", args=[b.pk]) in html
    assert f'data-a-from="{T0_NS}"' in html and f'data-b-from="{T0_NS}"' in html
    assert "<th>fills</th><td>3</td><td>3</td>" in html
    assert "<th>spread_capture</th><td>0.4500</td><td>0.4500</td>" in html
    assert "<th>mean quoted spread (bps)</th><td>0.33</td>" in html  # (ask - bid) / mid = 2 / ~60,004


def test_sessions_on_different_clocks_are_aligned_by_elapsed_time_and_the_page_says_so(client, viewer):
    a, b = build_session("a"), build_session("b", start_ns=T0_NS + 86_400 * SEC)
    html = client.get(reverse("review:compare"), {"a": a.pk, "b": b.pk}).content.decode()
    assert f'data-alignment="{ELAPSED}"' in html and "elapsed time since each one" in html
    assert f'data-b-from="{T0_NS + 86_400 * SEC}"' in html  # each from its own start
    assert "the same parameters" in html


def test_bad_compare_arguments_name_the_field(client, viewer):
    a = build_session("a")
    resp = client.get(reverse("review:compare"), {"a": a.pk, "b": "x"})
    assert resp.status_code == 400 and "b must be a session id" in resp.content.decode()
    resp = client.get(reverse("review:compare"), {"a": 999_999, "b": a.pk})
    assert resp.status_code == 404 and "a: no session" in resp.content.decode()


def test_flatten_and_diff():
    assert flatten({"s": {"g": 1, "k": {"x": 2}}, "r": 3}) == {"s.g": 1, "s.k.x": 2, "r": 3}
    assert params_diff({"s": {"g": 1}}, {"s": {"g": 2, "h": 0}}) == [("s.g", 1, 2), ("s.h", None, 0)]

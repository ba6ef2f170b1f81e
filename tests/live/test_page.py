"""The live page's first paint: tiles from the stored state, and the parameter markers recorded before it loaded."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from apps.control.audit import record
from apps.control.services import Actor, create_paper_session


@pytest.mark.django_db
def test_the_page_carries_the_recorded_parameter_changes_as_marker_data_and_no_inline_script(client, operator):
    session = create_paper_session(Actor(label="test"), name="markers", seed=1, start=False)
    record("op", operator, "params.update", session, "wider", version=2, changes={"gamma": [5000, 6000]})
    record("op", operator, "session.pause", session, "lunch")  # not a marker
    client.force_login(operator)
    html = client.get(reverse("dashboard:session", args=[session.pk])).content.decode()
    m = re.search(r'<script id="live-bootstrap" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no bootstrap data block"
    boot = json.loads(m.group(1))
    assert [(p["action"], p["detail"]["version"]) for p in boot["params"]] == [("params.update", 2)]
    assert boot["params"][0]["reason"] == "wider" and boot["params"][0]["ts_ns"] > 0
    # every <script> is either a static file or inert JSON data: the CSP allows no inline code
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag

"""The ops settings refuse bad values at start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import BASE_DIR
from tests.test_settings import setup_with


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("MM_LOG_FORMAT", "xml", "MM_LOG_FORMAT must be json or plain"),
        ("MM_ALERT_WEBHOOK_URL", "ftp://127.0.0.1/hook", "MM_ALERT_WEBHOOK_URL must be an http:// or https:// URL"),
        ("MM_ALERT_ESTIMATOR_STATES", "failed,broken", "MM_ALERT_ESTIMATOR_STATES"),
        ("MM_ALERT_FEED_STALE_S", "0", "MM_ALERT_FEED_STALE_S=0 is below the minimum"),
        ("MM_ALERT_SWEEP_S", "x", "MM_ALERT_SWEEP_S='x' is not an integer"),
    ],
)
def test_a_bad_ops_setting_fails_with_a_clear_message(var, value, fragment):
    res = setup_with(var, value)
    assert res.returncode != 0
    assert fragment in res.stderr


def test_plain_logs_for_a_terminal_start_and_render_text():
    env = {**os.environ, "MM_LOG_FORMAT": "plain", "DJANGO_SETTINGS_MODULE": "mmweb.settings"}
    code = "import django, logging; django.setup(); logging.getLogger('t').warning('hi %s', 'there')"
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert "hi there" in res.stderr and not res.stderr.strip().startswith("{")

from django.urls import path, re_path

from apps.live.consumers import RefusingConsumer, SessionLiveConsumer
from apps.review.consumers import BacktestProgressConsumer

websocket_urlpatterns = [
    path("ws/sessions/<int:session_id>/", SessionLiveConsumer.as_asgi()),
    re_path(r"^ws/backtests/(?:(?P<run_id>[0-9]+)/)?$", BacktestProgressConsumer.as_asgi()),  # apps.review
    # Anything else (``/ws/sessions/abc/``, an unknown path) is refused with a close code; without this route
    # Channels' router raises, and daphne answers 500 with a traceback in its log.
    re_path(r"", RefusingConsumer.as_asgi()),
]

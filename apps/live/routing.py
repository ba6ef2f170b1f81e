from django.urls import path, re_path

from apps.live.consumers import RefusingConsumer, SessionLiveConsumer

websocket_urlpatterns = [
    path("ws/sessions/<int:session_id>/", SessionLiveConsumer.as_asgi()),
    # Anything else (``/ws/sessions/abc/``, an unknown path) is refused with a close code; without this route
    # Channels' router raises, and daphne answers 500 with a traceback in its log.
    re_path(r"", RefusingConsumer.as_asgi()),
]

"""ASGI entry point for daphne: HTTP through Django, WebSockets through Channels (authenticated)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

# Static files (vendored htmx, css) are served by the same process: the console is one daphne on 127.0.0.1.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.live.routing import websocket_urlpatterns  # noqa: E402
from mmweb.security import WebsocketOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin checked by scheme, host and port (not the host alone) before the session cookie is even read.
        "websocket": WebsocketOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

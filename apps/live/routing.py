from django.urls import path

from apps.live.consumers import SessionLiveConsumer

websocket_urlpatterns = [path("ws/sessions/<int:session_id>/", SessionLiveConsumer.as_asgi())]

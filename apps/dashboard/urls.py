from django.urls import path

from apps.dashboard import overview_views, params_views, views

app_name = "dashboard"
urlpatterns = [
    path("", overview_views.home, name="home"),
    path("sessions/table/", overview_views.sessions_table, name="sessions_table"),
    path("sessions/start/", overview_views.start_session, name="start_session"),
    path("sessions/start-live/", overview_views.start_live_session, name="start_live_session"),
    path("global-switch/", views.global_switch, name="global_switch"),
    path("sessions/<int:session_id>/", views.session_detail, name="session"),
    path("sessions/<int:session_id>/kill-switch/", views.kill_switch, name="kill_switch"),
    path("sessions/<int:session_id>/controls/", views.controls, name="controls"),
    path("sessions/<int:session_id>/pnl/", views.session_pnl_view, name="session_pnl"),
    path("sessions/<int:session_id>/halt/", views.halt, name="halt"),
    path("sessions/<int:session_id>/parameters/", params_views.parameters, name="parameters"),
    path("sessions/<int:session_id>/parameters/change/", params_views.change, name="parameters_change"),
    path(
        "sessions/<int:session_id>/parameters/revert/<int:version>/",
        params_views.revert,
        name="parameters_revert",
    ),
    path("sessions/<int:session_id>/<slug:action>/", views.session_action, name="action"),
]

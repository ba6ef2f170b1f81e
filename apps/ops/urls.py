from django.urls import path

from apps.ops import views

app_name = "ops"
urlpatterns = [
    path("", views.alert_list, name="alerts"),
    path("banner/", views.banner, name="banner"),
    path("<int:alert_id>/acknowledge/", views.acknowledge, name="acknowledge"),
]

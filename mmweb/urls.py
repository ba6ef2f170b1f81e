from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.ops.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("metrics", metrics, name="metrics"),
    path("alerts/", include("apps.ops.urls")),
    path("review/", include("apps.review.urls")),
    path("", include("apps.dashboard.urls")),
]

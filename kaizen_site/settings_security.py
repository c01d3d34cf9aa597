"""The console's door and the transport: who may sign in, how, for how long, from where; HTTPS.

Read once, here. The console (the Django admin) and the owner APIs are for the addresses in
KAIZEN_OWNER_EMAILS only, past a TOTP second factor (django-otp), with logins throttled by
django-axes. HTTPS-only cookies, HSTS and the redirect to https follow KAIZEN_PUBLIC_URL's scheme:
a service reached over https gets all of them, while `make run` and the tests keep working over
plain http on 127.0.0.1 (a Secure cookie is never sent back over http, so the console could not
sign anyone in there).
"""

import os
from datetime import timedelta
from urllib.parse import urlsplit


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return raw in ("1", "true", "yes", "on") if raw else default  # set but empty (.env.example): the default


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


# --- Sessions -------------------------------------------------------------------------------
# A console session lasts 24 hours from sign-in, however active (each is also an AdminSession row
# the owner can revoke; kaizen_site.security.sessions holds it to the same 24 hours).
SESSION_COOKIE_AGE = int(os.environ.get("KAIZEN_SESSION_SECONDS", str(24 * 3600)))

# --- Second factor: TOTP (django-otp) --------------------------------------------------------
# The name authenticator apps show next to the account.
OTP_TOTP_ISSUER = os.environ.get("KAIZEN_OTP_ISSUER", "Kaizen")

# --- Login throttling: django-axes (https://django-axes.readthedocs.io/en/latest/4_configuration.html)
# After AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is locked
# out for the cool-off, even with the right password. `manage.py axes_reset` lifts every lock.
AXES_FAILURE_LIMIT = int(os.environ.get("KAIZEN_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("KAIZEN_LOGIN_COOLOFF_MINUTES", "30")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The same client address everywhere (lock-out, allowlist, audit log): see kaizen_site.security.network.
AXES_CLIENT_IP_CALLABLE = "kaizen_site.security.network.client_ip"
AXES_LOCKOUT_TEMPLATE = "admin/kaizen/locked_out.html"

# --- Where the console may be reached from --------------------------------------------------
# CIDRs (comma-separated) allowed to reach /admin/ and the owner APIs; empty allows any address.
KAIZEN_ADMIN_IP_ALLOWLIST = _list("KAIZEN_ADMIN_IP_ALLOWLIST")
# The header a reverse proxy you run sets to the client's address (e.g. X-Forwarded-For, X-Real-IP).
# Only when set is it believed (the last address in it: the one your proxy saw), and X-Forwarded-Proto
# with it; otherwise anyone could claim any address by sending the header themselves.
KAIZEN_TRUSTED_PROXY_HEADER = os.environ.get("KAIZEN_TRUSTED_PROXY_HEADER", "").strip()
if KAIZEN_TRUSTED_PROXY_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- /metrics -------------------------------------------------------------------------------
# Prometheus sends the token with its `authorization` scrape setting (credentials: <token>); the
# allowlist (CIDRs) admits scrapers by address. Neither set: open with DEBUG on, closed otherwise.
KAIZEN_METRICS_TOKEN = os.environ.get("KAIZEN_METRICS_TOKEN", "")
KAIZEN_METRICS_IP_ALLOWLIST = _list("KAIZEN_METRICS_IP_ALLOWLIST")

# --- HTTPS ----------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/ — all on when the service is
# reached over https (KAIZEN_PUBLIC_URL), whatever DEBUG says; KAIZEN_HTTPS=0/1 overrides.
KAIZEN_HTTPS = _bool(
    "KAIZEN_HTTPS", urlsplit(os.environ.get("KAIZEN_PUBLIC_URL", "") or "http://127.0.0.1").scheme == "https"
)
SECURE_SSL_REDIRECT = KAIZEN_HTTPS
SESSION_COOKIE_SECURE = KAIZEN_HTTPS
CSRF_COOKIE_SECURE = KAIZEN_HTTPS
# HSTS: browsers refuse plain http for this host for a year. Subdomains and the preload flag are on
# by default (`check --deploy` asks for both); turn them off if other hosts under the domain still
# serve http. The preload flag only allows submitting the domain to browsers' lists, it submits nothing.
SECURE_HSTS_SECONDS = int(os.environ.get("KAIZEN_HSTS_SECONDS", str(365 * 24 * 3600))) if KAIZEN_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("KAIZEN_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _bool("KAIZEN_HSTS_PRELOAD", True)
# The load balancer's health check reaches the service over plain http inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

"""The dashboard's token check: a Bokeh auth module for ``panel serve --auth-module``.

With ``TECHNIC_API_TOKEN`` set (the operator's :class:`~technic_panel.policy.ServerPolicy`),
the page, its Bokeh WebSocket and every other route Bokeh guards need the token the API
needs::

    panel serve app.py --plugins technic_panel.api.serve --auth-module technic_panel/api/auth.py \
        --exclude-headers=Cookie --exclude-cookies=technic_dashboard

Unset, :func:`get_user` lets everyone in and no login is asked for.

Mechanics (Bokeh's ``AuthModule`` hooks): Bokeh asks :func:`get_user` on every page request
and, through Tornado's ``@authenticated`` and Panel's ``WSHandler.prepare``, on the upgrade
request of ``/app/ws`` too, so a forged session id gains nothing without the cookie. A
request without the cookie is redirected to :data:`login_url`, where :class:`LoginHandler`
asks for the token (a form) or takes it from the link (``/app?token=...``), sets the
:data:`COOKIE` (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS) and redirects to
the page without the token in its address. The cookie holds an HMAC of the token, not the
token: it opens the dashboard but is no API credential, and changing the token revokes it.
The ``--exclude-*`` options keep the cookie out of the session token Bokeh embeds in the page,
where script could read it.

Secrets stay out of the logs: importing this module adds :class:`TokenRedaction` to Tornado's
loggers, so ``GET /app?token=...`` is logged as ``token=[redacted]``; the API, in the same
process, is covered by the same filter.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tornado.web import RequestHandler

from technic_panel.policy import ServerPolicy

log = logging.getLogger(__name__)

COOKIE = "technic_dashboard"
"""The cookie that admits a browser to the dashboard."""

login_url = "/login"
"""Where Bokeh sends a request without the cookie (Bokeh mounts :class:`LoginHandler` here)."""

ANONYMOUS = "anonymous"
"""The user of every request while no token is set."""

TOKEN_USER = "token"
"""The user of a request that carries a valid cookie."""

DASHBOARD_OWNER = "dashboard"
"""Who the served dashboard's scans belong to when the server needs a token."""

REDACTED = "[redacted]"
"""What a token in a logged URL is replaced with."""

TORNADO_LOGGERS = ("tornado.access", "tornado.application", "tornado.general")
"""The loggers that write request URLs, which :class:`TokenRedaction` filters."""

_SECRET_VALUE = re.compile(r"(token(?:=|%3D|%253D))((?:(?!%26|%2526)[^&\s])*)", re.IGNORECASE)
_COOKIE_CONTEXT = b"technic-panel dashboard cookie v1"
_FORM = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>technic-panel: token required</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:4em auto}}
input{{font-size:1em;padding:4px;width:100%;box-sizing:border-box;margin:6px 0}}
.error{{color:#b00020}}</style></head>
<body><h1>technic-panel</h1>
<p>This server needs its token (the operator's <code>TECHNIC_API_TOKEN</code>).</p>
<p class="error" role="alert">{message}</p>
<form method="post" action="">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<input type="hidden" name="next" value="{next_url}">
<input type="submit" value="Open the dashboard"></form></body></html>
"""


def expected_tokens() -> tuple[str, ...]:
    """Return the tokens the server accepts (the policy's ``TECHNIC_API_TOKEN``), maybe none."""
    return ServerPolicy.from_env().tokens


def cookie_value(token: str) -> str:
    """Return the :data:`COOKIE` value that ``token`` grants: an HMAC-SHA256 of it, in hex."""
    return hmac.new(token.encode(), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def has_valid_cookie(request_handler: RequestHandler, tokens: tuple[str, ...]) -> bool:
    """Whether the request carries the :data:`COOKIE` that one of ``tokens`` grants."""
    given = request_handler.get_cookie(COOKIE)
    return given is not None and any(
        hmac.compare_digest(given.encode(), cookie_value(token).encode()) for token in tokens)


def get_user(request_handler: RequestHandler) -> str | None:
    """Return the request's user, or None to send it to :data:`login_url` (Bokeh's hook).

    Every request is :data:`ANONYMOUS` while no token is set. A request with ``?token=`` is
    None even with a valid cookie: the login page exchanges the token for the cookie and
    strips it from the address, so it never reaches the page or its session.
    """
    tokens = expected_tokens()
    if not tokens:
        return ANONYMOUS
    if request_handler.get_query_argument("token", None) is not None:
        return None
    return TOKEN_USER if has_valid_cookie(request_handler, tokens) else None


def local_target(next_url: str) -> tuple[str, str | None]:
    """Split a ``next`` URL into a same-site target without ``token`` and the token given.

    Anything but a path on this server (``//host``, ``https://...``, a backslash) becomes
    ``/``, so the login page never redirects elsewhere.
    """
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or "\\" in next_url \
            or parts.path.startswith("//"):
        return "/", None
    query = parse_qsl(parts.query, keep_blank_values=True)
    tokens = [value for name, value in query if name == "token"]
    kept = urlencode([(name, value) for name, value in query if name != "token"])
    return urlunsplit(("", "", parts.path, kept, "")), (tokens[-1] if tokens else None)


class LoginHandler(RequestHandler):
    """``/login``: exchange the token, from the form or the link, for the :data:`COOKIE`.

    Not thread-safe, like every Tornado handler: Tornado calls it on its IOLoop.
    """

    def get(self) -> None:
        """Take a token from ``next`` (``/app?token=...``), else show the form (401)."""
        target, given = local_target(self.get_query_argument("next", "/"))
        tokens = expected_tokens()
        if not tokens or (given is None and has_valid_cookie(self, tokens)):
            self.redirect(target)
        elif given is None:
            self._form(target, "")
        else:
            self._exchange(given, tokens, target)

    def post(self) -> None:
        """Take the form's token; redirect to ``next`` with the cookie, or 401 with the form."""
        target, _ = local_target(self.get_body_argument("next", "/"))
        tokens = expected_tokens()
        if not tokens:
            self.redirect(target)
        else:
            self._exchange(self.get_body_argument("token", ""), tokens, target)

    def _exchange(self, given: str, tokens: tuple[str, ...], target: str) -> None:
        token = next((t for t in tokens if hmac.compare_digest(given.encode(), t.encode())), None)
        if token is None:
            log.warning("refused a wrong dashboard token from %s", self.request.remote_ip)
            self._form(target, "Wrong token (not the TECHNIC_API_TOKEN of this server); try again.")
            return
        self.set_cookie(COOKIE, cookie_value(token), path="/", httponly=True,
                        samesite="Strict", secure=self.request.protocol == "https")
        self.set_header("Cache-Control", "no-store")
        self.redirect(target)

    def _form(self, target: str, message: str) -> None:
        self.set_status(401)
        self.set_header("WWW-Authenticate", 'Bearer realm="technic-panel"')
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(_FORM.format(message=html.escape(message), next_url=html.escape(target)))


def redact(text: str) -> str:
    """Return ``text`` with the value of every ``token=`` (also URL-encoded) replaced."""
    return _SECRET_VALUE.sub(lambda match: match.group(1) + REDACTED, text)


class TokenRedaction(logging.Filter):
    """A logging filter that redacts tokens in a record's message and string arguments."""

    redacts_tokens = True
    """Marks this filter, so that installing it twice is noticed (see :func:`install`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always keep it."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


def install(loggers: tuple[str, ...] = TORNADO_LOGGERS) -> None:
    """Add :class:`TokenRedaction` to ``loggers`` (default Tornado's), once each."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(getattr(existing, "redacts_tokens", False) for existing in logger.filters):
            logger.addFilter(TokenRedaction())


install()  # Bokeh loads this file at server start: the earliest moment, before any request

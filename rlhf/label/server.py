"""The labeling web app: a small FastAPI app over the SQLite store, served by uvicorn.

Security model (the app shows model text, which may contain HTML and scripts, to people on their own machine):
- binds to 127.0.0.1 unless told otherwise; a non-loopback host is refused unless a token is set, and with a
  token every request needs it (`Authorization: Bearer`, `X-Label-Token`, `?token=` or the cookie that
  `?token=` sets); without a token the Host header must name the loopback host (DNS-rebinding guard);
- the page renders model text with textContent only, and a strict Content-Security-Policy (no inline script,
  no third-party anything) backs that up;
- every state change is a JSON POST that must carry the CSRF token from `/api/session` in `X-CSRF-Token`,
  and must not come from another origin (Origin / Sec-Fetch-Site checks).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import sys
from importlib import resources
from typing import Literal
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from rlhf.errors import UserError
from rlhf.label.store import AlreadyLabeled, NotAssigned, Store

TOKEN_COOKIE = "label_token"
CSRF_HEADER = "x-csrf-token"
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return resources.files("rlhf.label").joinpath("static", name).read_bytes()


def _host_name(host_header: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:80' -> '::1', 'localhost' -> 'localhost'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class LabelIn(BaseModel):
    annotator: str = Field(max_length=64)
    item_id: str = Field(max_length=512)
    choice: Literal["A", "B", "tie", "skip"]  # A = the left response as shown, B = the right one
    reason: str = Field(default="", max_length=4000)
    request_id: str = Field(
        min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$"
    )  # made by the client, once


class UndoIn(BaseModel):
    annotator: str = Field(max_length=64)


def create_app(
    store: Store,
    *,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    title: str = "Preference labeling",
):
    """The ASGI app. `allowed_hosts`: Host header names accepted when there is no token (default: loopback)."""
    meta = store.meta()
    annotators: list[str] = meta["annotators"]
    csrf_token = hmac.new(bytes.fromhex(meta["secret"]), b"csrf", "sha256").hexdigest()
    hosts = {h.lower() for h in (allowed_hosts or []) + list(LOOPBACK_NAMES)}
    token_b = token.encode() if token else None

    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    def deny(status: int, detail: str) -> Response:
        return JSONResponse({"detail": detail}, status_code=status, headers=SECURITY_HEADERS)

    def presented_token(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return (
            request.headers.get("x-label-token")
            or request.query_params.get("token")
            or request.cookies.get(TOKEN_COOKIE)
        )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token_b is None:
            if _host_name(request.headers.get("host", "")) not in hosts:
                return deny(403, "unexpected Host header (this server only answers on its loopback address)")
        else:
            given = presented_token(request)
            if not given or not hmac.compare_digest(given.encode(), token_b):
                return deny(
                    401, "token required: open the link printed by `rlhf label serve` (with ?token=...)"
                )
        if request.method not in ("GET", "HEAD"):
            site = request.headers.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                return deny(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
            origin = request.headers.get("origin")
            if origin is not None:
                expected = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
                if origin.lower() != expected:
                    return deny(403, "cross-origin request refused (Origin does not match Host)")
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return deny(415, "expected a JSON body (Content-Type: application/json)")
            if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), csrf_token.encode()):
                return deny(403, "missing or wrong CSRF token (X-CSRF-Token from /api/session)")
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def page_response(request: Request) -> Response:
        if token_b is not None and request.query_params.get("token"):
            # Move the token from the URL (history, screen shares) into an HttpOnly same-site cookie.
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            resp = RedirectResponse("/" + (f"?{rest}" if rest else ""), status_code=303)
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
            return resp
        return Response(_static("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/")
    def index(request: Request):
        return page_response(request)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            return deny(404, "not found")
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/api/health")
    def health():
        return {"ok": True}

    @app.get("/api/session")
    def session():
        return {"csrf": csrf_token, "annotators": annotators, "title": title}

    def check_annotator(name: str) -> Response | None:
        if name not in annotators:
            return deny(404, f"unknown annotator {name!r}; expected one of {', '.join(annotators)}")
        return None

    @app.get("/api/next")
    def next_item(annotator: str = Query(..., max_length=64)):
        bad = check_annotator(annotator)
        return bad if bad is not None else store.next_item(annotator)

    @app.post("/api/label")
    def label(body: LabelIn):
        bad = check_annotator(body.annotator)
        if bad is not None:
            return bad
        try:
            return store.add_label(
                body.annotator, body.item_id, body.choice, body.reason.strip(), body.request_id
            )
        except NotAssigned as e:
            return deny(404, str(e))
        except AlreadyLabeled as e:
            return deny(409, str(e))

    @app.post("/api/undo")
    def undo(body: UndoIn):
        bad = check_annotator(body.annotator)
        return bad if bad is not None else store.undo(body.annotator)

    return app


def open_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves: a busy port is a clean user error, and `--port 0` picks a free one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"cannot resolve host {host!r} ({e.strerror})", "command line", "--host") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror})", "command line", "--port") from None
    return sock


def serve(store: Store, *, host: str, port: int, token: str | None, quiet: bool = False) -> None:
    import uvicorn

    sock = open_socket(host, port)
    port = sock.getsockname()[1]
    app = create_app(store, token=token, allowed_hosts=[host])
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}/" + (f"?{urlencode({'token': token})}" if token else "")
    print(f"label: serving {store.path} at {url}  (Ctrl+C to stop)", flush=True)
    if token and not is_loopback(host):
        print(
            "label: warning: plain HTTP; the token crosses the network unencrypted (prefer an SSH tunnel)",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(
        app,
        log_level="warning" if quiet else "info",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])

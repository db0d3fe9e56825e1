"""The labeling web app: a small FastAPI app over the SQLite store, served by uvicorn.

Security model (the app shows model text, which may contain HTML and scripts, to people who may not trust each
other's browsers):
- identity comes from a secret token, never from the request body: each annotator has their own token (their
  link), and an admin token sees stats and exports. The token travels as `Authorization: Bearer`,
  `X-Label-Token`, `?token=` (the page moves it into an HttpOnly cookie) or that cookie;
- the single-person default needs no token: a campaign with one annotator ("open access") answers loopback
  clients whose Host header names a loopback host (DNS-rebinding guard), when the server is bound to loopback;
- the Host header is parsed strictly (host[:port], nothing else); request bodies are capped before they are
  read (Content-Length checked up front, chunked bodies counted as they arrive); JSON with NaN/Infinity is
  refused; error answers never repeat the request body;
- the page renders model text as escaped text or as the server's sanitised markdown (rlhf.label.render), with
  bidi controls made visible, under a strict Content-Security-Policy (no inline script, nothing third-party);
- every state change is a JSON POST that must carry the per-identity CSRF token from `/api/session` in
  `X-CSRF-Token`, and must not come from another origin (Origin / Sec-Fetch-Site checks).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket
import sys
from importlib import resources
from typing import Literal
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from rlhf.errors import UserError
from rlhf.label.render import neutralise_bidi, render_conversation, render_markdown
from rlhf.label.store import AlreadyLabeled, BadLabel, NotAssigned, Store

TOKEN_COOKIE = "label_token"
CSRF_HEADER = "x-csrf-token"
DEFAULT_MAX_BODY = (
    64 * 1024
)  # a label is a few hundred bytes; a 4000-character reason is at most ~24 KiB of JSON
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
# RFC 3986 authority without userinfo: a reg-name or IPv4 address, or an [IPv6] literal, then an optional port.
_HOST_RE = re.compile(
    r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9](?:[a-z0-9.-]{0,252}[a-z0-9])?))(?::(?P<port>\d{1,5}))?$"
)


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str | None:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:80' -> '::1', 'localhost' -> 'localhost'; None for anything that
    is not exactly host[:port] ('127.0.0.1:80@evil.com', 'a b', 'x:y', '')."""
    m = _HOST_RE.match(host_header.strip().lower())
    if m is None or (m.group("port") and int(m.group("port")) > 65535):
        return None
    if m.group("v6") is not None:
        try:
            return str(ipaddress.IPv6Address(m.group("v6")))
        except ValueError:
            return None
    return m.group("name")


def _static(name: str) -> bytes:
    return resources.files("rlhf.label").joinpath("static", name).read_bytes()


def _json_error(status: int, detail, extra_headers: dict | None = None) -> Response:
    return JSONResponse(
        {"detail": detail}, status_code=status, headers={**SECURITY_HEADERS, **(extra_headers or {})}
    )


class BodyLimit:
    """ASGI wrapper: refuse a request body over `limit` bytes with 413 without reading it. A Content-Length over
    the limit is answered at once; a chunked body is counted as it arrives and cut off at the limit. The
    connection is closed after a 413, so the rest of the body is never read."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def _refuse(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(b"connection", b"close")] + [
            (k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        what = f"request body over the limit of {self.limit} bytes (serve --max-body-bytes)"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await self._refuse(send, 400, "malformed Content-Length")
            if int(length) > self.limit:
                return await self._refuse(send, 413, what)
        received = 0
        refused = False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit and not refused:
                    refused = True
                    await self._refuse(send, 413, what)
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(max_length=512)
    # A pair: A = the first response as shown, B = the second. K > 2 responses: "rank" with `ranking`.
    choice: Literal["A", "B", "tie", "skip", "rank"]
    ranking: list[int] | None = Field(default=None, max_length=9)  # shown positions, best first
    strength: str | None = Field(default=None, max_length=32)
    reason: str = Field(default="", max_length=4000)
    request_id: str = Field(
        min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$"
    )  # made by the client, once
    annotator: str | None = Field(default=None, max_length=64)  # ignored when it names the token's owner


class UndoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    annotator: str | None = Field(default=None, max_length=64)


class BadBody(Exception):
    def __init__(self, detail):
        self.detail = detail


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} is not valid JSON")


async def read_body(request: Request, model: type[BaseModel]) -> BaseModel:
    """Parse a JSON body strictly (no NaN/Infinity) into `model`. Error details name fields, never values."""
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise BadBody("request body not received") from None
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        msg = str(e) if "non-finite" in str(e) else "malformed JSON"
        raise BadBody(f"body: {msg}") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise BadBody([{"loc": list(err["loc"]), "msg": err["msg"]} for err in e.errors()]) from None


def present(view: dict | None) -> dict | None:
    """An item as the page gets it: bidi controls made visible, markdown rendered (sanitised) next to the text."""
    if view is None:
        return None
    texts = [neutralise_bidi(t) for t in view["responses"]]
    return {
        "item_id": view["item_id"],
        "prompt": neutralise_bidi(view["prompt"]),
        # A conversation is shown turn by turn (who said what), anything else as one text.
        "prompt_html": render_conversation(view["messages"])
        if view.get("messages")
        else render_markdown(view["prompt"]),
        "responses": texts,
        "responses_html": [render_markdown(t) for t in view["responses"]],
    }


def create_app(
    store: Store,
    *,
    allowed_hosts: list[str] | None = None,
    open_ok: bool = True,
    title: str = "Preference labeling",
    max_body_bytes: int = DEFAULT_MAX_BODY,
):
    """The ASGI app. `allowed_hosts`: Host names accepted for tokenless (open-access) clients besides the loopback
    names; `open_ok`: whether open access is possible at all (False when bound to a non-loopback address)."""
    meta = store.meta()
    secret = bytes.fromhex(meta["secret"])
    admin_token = meta["admin_token"].encode()
    hosts = {h.lower() for h in (allowed_hosts or []) + list(LOOPBACK_NAMES)}
    guidelines_html = render_markdown(meta["guidelines"]) if meta.get("guidelines") else None
    strength = [name for name, _ in meta.get("strength") or []] or None

    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    def csrf_for(who: str) -> str:
        return hmac.new(secret, f"csrf:{who}".encode(), "sha256").hexdigest()

    def presented_token(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return (
            request.headers.get("x-label-token")
            or request.query_params.get("token")
            or request.cookies.get(TOKEN_COOKIE)
        )

    def resolve(request: Request, host: str) -> tuple[str | None, bool] | Response:
        """(annotator name or None, is admin), or the refusal."""
        given = presented_token(request)
        if given:
            if hmac.compare_digest(given.encode(), admin_token):
                return None, True
            name = store.identity(given)
            if name is None:
                return _json_error(401, "unknown token: open the link `rlhf label serve` printed for you")
            return name, False
        if open_ok and store.open_access():
            if host not in hosts:
                return _json_error(
                    403, "unexpected Host header (this server only answers on its loopback address)"
                )
            names = store.annotators()
            return (names[0] if len(names) == 1 else None), True  # one person on their own machine
        return _json_error(401, "token required: open your link from `rlhf label serve` (with ?token=...)")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = host_name(request.headers.get("host", ""))
        if host is None:
            return _json_error(400, "malformed Host header (expected host[:port])")
        who = resolve(request, host)
        if isinstance(who, Response):
            return who
        request.state.annotator, request.state.admin = who
        if request.method not in ("GET", "HEAD"):
            site = request.headers.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                return _json_error(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
            origin = request.headers.get("origin")
            if origin is not None:
                expected = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
                if origin.lower() != expected:
                    return _json_error(403, "cross-origin request refused (Origin does not match Host)")
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return _json_error(415, "expected a JSON body (Content-Type: application/json)")
            csrf = csrf_for(request.state.annotator or "admin")
            if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), csrf.encode()):
                return _json_error(403, "missing or wrong CSRF token (X-CSRF-Token from /api/session)")
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(BadBody)
    async def bad_body(request: Request, exc: BadBody):
        return _json_error(422, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, exc: RequestValidationError):
        # FastAPI's own handler repeats the offending input; name the field only.
        return _json_error(422, [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()])

    def page_response(request: Request) -> Response:
        token = request.query_params.get("token")
        if token:
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
            return _json_error(404, "not found")
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/api/health")
    def health():
        return {"ok": True}

    @app.get("/api/session")
    def session(request: Request):
        who = request.state.annotator
        return {
            "csrf": csrf_for(who or "admin"),
            "annotator": who,
            "admin": request.state.admin,
            "title": title,
            "guidelines_html": guidelines_html,
            "strength": strength,
        }

    def me(request: Request, claimed: str | None = None) -> str | Response:
        who = request.state.annotator
        if who is None:
            return _json_error(403, "this token has no labeling queue (use an annotator's link)")
        if claimed is not None and claimed != who:
            return _json_error(403, f"this link labels as {who!r}; it cannot act as {claimed!r}")
        return who

    def next_payload(data: dict) -> dict:
        return {**data, "item": present(data["item"])}

    @app.get("/api/next")
    def next_item(request: Request, annotator: str | None = None):
        who = me(request, annotator)
        if isinstance(who, Response):
            return who
        return next_payload(store.next_item(who))

    @app.post("/api/label")
    async def label(request: Request):
        body = await read_body(request, LabelIn)
        who = me(request, body.annotator)
        if isinstance(who, Response):
            return who
        try:
            out = store.add_label(
                who,
                body.item_id,
                body.choice,
                body.reason.strip(),
                body.request_id,
                ranking=body.ranking,
                strength=body.strength,
            )
        except NotAssigned as e:
            return _json_error(404, str(e))
        except AlreadyLabeled as e:
            return _json_error(409, str(e))
        except BadLabel as e:
            return _json_error(422, str(e))
        return {**out, "next": present(out["next"])}

    @app.post("/api/undo")
    async def undo(request: Request):
        body = await read_body(request, UndoIn)
        who = me(request, body.annotator)
        if isinstance(who, Response):
            return who
        out = store.undo(who)
        return {**out, "next": present(out["next"])}

    def admin_only(request: Request) -> Response | None:
        return None if request.state.admin else _json_error(403, "admin token required")

    @app.get("/api/admin/stats")
    def admin_stats(request: Request):
        from rlhf.label.stats import compute_stats

        return admin_only(request) or compute_stats(store.path)

    @app.get("/api/admin/export")
    def admin_export(request: Request, format: Literal["jsonl", "label-studio"] = "jsonl"):
        from rlhf.label.export import label_studio_tasks, preference_rows

        refused = admin_only(request)
        if refused:
            return refused
        if format == "label-studio":
            return label_studio_tasks(store.path)[0]
        rows, _ = preference_rows(store.path)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return Response(text, media_type="application/x-ndjson; charset=utf-8")

    return BodyLimit(app, max_body_bytes)


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


def links(store: Store, host: str, port: int) -> dict[str, str]:
    """Each annotator's link, and the admin's ("(admin)"), for a server at host:port."""
    url_host = f"[{host}]" if ":" in host else host
    base = f"http://{url_host}:{port}/"
    out = {name: base + "?" + urlencode({"token": t}) for name, t in store.tokens().items()}
    out["(admin)"] = base + "?" + urlencode({"token": store.meta()["admin_token"]})
    return out


def serve(
    store: Store,
    sock: socket.socket,
    *,
    host: str,
    quiet: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY,
) -> None:
    """Serve on an already-bound socket (see `open_socket`)."""
    import uvicorn

    port = sock.getsockname()[1]
    loopback = is_loopback(host)
    app = create_app(store, allowed_hosts=[host], open_ok=loopback, max_body_bytes=max_body_bytes)
    url_host = f"[{host}]" if ":" in host else host
    if loopback and store.open_access():
        print(f"label: serving {store.path} at http://{url_host}:{port}/  (Ctrl+C to stop)", flush=True)
    else:
        print(f"label: serving {store.path}; each person opens their own link (Ctrl+C to stop):", flush=True)
        for name, url in links(store, host, port).items():
            print(f"label:   {name}: {url}", flush=True)
    if not loopback:
        print(
            "label: warning: plain HTTP; tokens cross the network unencrypted (prefer an SSH tunnel)",
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

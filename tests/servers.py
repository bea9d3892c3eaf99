"""Real servers on 127.0.0.1 for the tests: a feed server, a webhook receiver, an SMTP server."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

Route = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class HTTPServerThread:
    """A threading HTTP server whose handler is a method of this object."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                owner.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                owner.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def respond(request: BaseHTTPRequestHandler, status: int, body: bytes = b"",
            headers: dict[str, str] | None = None) -> None:
    request.send_response(status)
    for key, value in (headers or {}).items():
        request.send_header(key, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if body:
        request.wfile.write(body)


class FeedServer(HTTPServerThread):
    """Serves documents by path; a route may be a function for hostile behaviour."""

    def __init__(self) -> None:
        self.documents: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.routes: dict[str, Route] = {}
        self.hits: list[tuple[str, dict[str, str]]] = []
        super().__init__()

    def put(self, path: str, body: bytes | str, status: int = 200,
            content_type: str = "application/rss+xml; charset=utf-8",
            headers: dict[str, str] | None = None) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.documents[path] = (status, data, {"Content-Type": content_type, **(headers or {})})
        return self.base + path

    def route(self, path: str, handler: Route) -> str:
        self.routes[path] = handler
        return self.base + path

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        self.hits.append((path, {k.lower(): v for k, v in request.headers.items()}))
        if path in self.routes:
            self.routes[path](request)
            return
        status, body, headers = self.documents.get(path, (404, b"not found", {}))
        etag = headers.get("ETag")
        if etag and request.headers.get("If-None-Match") == etag:
            respond(request, 304, b"", {"ETag": etag})
            return
        respond(request, status, body, headers)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver(HTTPServerThread):
    """Records every POST; answers from a script of statuses (then 200)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length)
        with self.lock:
            self.received.append(Received(request.path, {k.lower(): v for k, v in
                                                         request.headers.items()}, body))
            status, headers = self.script.pop(0) if self.script else (200, {})
        respond(request, status, b"{}", {"Content-Type": "application/json", **headers})


@dataclass
class MailHandler:
    """aiosmtpd handler that keeps messages; answers DATA from a script of replies."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    script: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.script:
            reply = self.script.pop(0)
            if not reply.startswith("250"):
                return reply
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


class SMTPServer:
    """aiosmtpd on loopback; with a certificate it offers (and requires) STARTTLS."""

    def __init__(self, certificate: tuple[Path, Path] | None = None) -> None:
        self.handler = MailHandler()
        self.port = free_port()
        tls: dict[str, Any] = {}
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            tls = {"tls_context": context, "require_starttls": True}
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **tls)
        self.controller.start()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def close(self) -> None:
        self.controller.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made with the openssl command.

    Pointing SSL_CERT_FILE at it makes the default, verifying TLS context trust it: the
    product's code path (certificate checked, host name matched) runs unchanged.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll a condition until it holds or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1f s" % timeout)
        time.sleep(interval)


# --- vendor APIs behind an intercepting proxy -------------------------------------------------

VENDOR_ANSWERS = {
    "hooks.slack.com": b"ok",
    "api.telegram.org": b'{"ok": true, "result": {"message_id": 1}}',
}


@dataclass
class Intercepted(Received):
    """A request the proxy answered in a vendor's name."""

    host: str = ""
    method: str = "POST"


class VendorProxy:
    """An HTTPS proxy on 127.0.0.1 that plays the vendors' APIs (Slack, Telegram).

    A client told to use it (HTTPS_PROXY) opens a CONNECT tunnel to, say, hooks.slack.com:443;
    the proxy answers the TLS handshake itself with a certificate for those names, made here,
    which the client trusts through REQUESTS_CA_BUNDLE. So Apprise's own Slack and Telegram code
    runs unchanged, certificate check included, and nothing leaves the machine. Answers come
    from `script` (statuses, then 200 with the vendor's usual body).
    """

    def __init__(self, directory: Path, hosts: tuple[str, ...] = tuple(VENDOR_ANSWERS)) -> None:
        self.cert, key = directory / "vendors.pem", directory / "vendors.key"
        names = ",".join(f"DNS:{host}" for host in hosts)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={hosts[0]}", "-addext", f"subjectAltName={names}",
                        "-keyout", str(key), "-out", str(self.cert)], check=True,
                       capture_output=True)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.cert, key)
        self.received: list[Intercepted] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to go through the proxy and trust its certificate."""
        return {"HTTPS_PROXY": f"http://127.0.0.1:{self.port}",
                "https_proxy": f"http://127.0.0.1:{self.port}",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "REQUESTS_CA_BUNDLE": str(self.cert)}

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            head, _ = _read_head(conn)
            host = head.split(b" ")[1].decode().rsplit(":", 1)[0] if head else ""
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            try:
                tls = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
            with tls:
                request, rest = _read_head(tls)
                if not request:
                    return
                lines = request.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = _read_exactly(tls, rest, int(headers.get("content-length", "0")))
                with self.lock:
                    self.received.append(Intercepted(path, headers, body, host=host,
                                                     method=method))
                    status = self.script.pop(0) if self.script else 200
                answer = VENDOR_ANSWERS.get(host, b"{}") if status == 200 else \
                    b'{"ok": false, "description": "try again"}'
                tls.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n"
                            .encode() + answer)

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The request line and headers, and whatever of the body came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return b"", b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _read_exactly(sock: socket.socket, data: bytes, length: int) -> bytes:
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            break
        data += chunk
    return data[:length]

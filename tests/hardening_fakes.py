"""Small fake providers on loopback: a real HTTP server whose answers a test writes as a
function of the request, for the answers the sandbox never gives (loops, wrong rows)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (path, query) -> (status, JSON body)
Answer = Callable[[str, dict[str, list[str]]], tuple[int, Any]]


class FakeServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                parts = urlsplit(self.path)
                status, body = fake.answer(parts.path, parse_qs(parts.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@contextmanager
def fake_server(answer: Answer) -> Iterator[FakeServer]:
    server = FakeServer(answer)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def checkmarket_row(contact_id: int, date: str | None = "2025-03-01T10:00:00.000Z") -> dict:
    row: dict[str, Any] = {
        "ContactId": contact_id,
        "Email": f"person{contact_id}@example.com",
        "LangCode": "en",
        "FirstName": None,
        "LastName": None,
    }
    if date is not None:
        row["DateOptOut"] = date
    return row


def checkmarket_page(
    rows: list[Any], next_href: str | None = None, total: int | None = None
) -> dict[str, Any]:
    """A CheckMarket list answer: Meta, Data and (when given) Links.Next."""
    body: dict[str, Any] = {
        "Meta": {"Status": 200, "TotalRowCount": len(rows) if total is None else total},
        "Data": rows,
    }
    if next_href is not None:
        body["Links"] = {"Next": {"Href": next_href, "Method": "GET"}}
    return body

"""vow.http.request: the answer's body read up to a bound, and kept when it is cut off after the status."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
import respx

from vow.http import request
from vow.testing import cut_off_body, endless_body

URL = "https://provider.example/send"


def test_a_gzip_answer_reads_as_its_json() -> None:
    body = gzip.compress(json.dumps({"id": "m-1", "text": "héllo"}).encode())
    with respx.mock() as router, httpx.Client() as client:
        router.post(URL).respond(201, content=body, headers={"content-encoding": "gzip",
                                                             "content-type": "application/json; charset=utf-8",
                                                             "retry-after": "3"})
        answer = request(client, "POST", URL, json={"to": "x"})
    assert (answer.status_code, answer.headers["retry-after"]) == (201, "3")
    assert answer.json() == {"id": "m-1", "text": "héllo"}


def test_a_huge_answer_stops_at_the_limit() -> None:
    read: list[int] = []
    with respx.mock() as router, httpx.Client() as client:
        router.post(URL).mock(return_value=httpx.Response(500, content=endless_body(read, b"oops")))
        answer = request(client, "POST", URL, limit=1000)
    assert answer.status_code == 500 and answer.content == b"oops" + b"x" * 996 and len(read) == 1


def test_an_answer_cut_off_after_its_status_keeps_what_arrived() -> None:
    with respx.mock() as router, httpx.Client() as client:
        router.post(URL).mock(return_value=httpx.Response(201, content=cut_off_body(b'{"id": "m')))
        answer = request(client, "POST", URL)
    assert (answer.status_code, answer.text) == (201, '{"id": "m')


def test_a_failure_before_the_status_is_raised() -> None:
    with respx.mock() as router, httpx.Client() as client:
        router.post(URL).mock(side_effect=httpx.ConnectTimeout("no route"))
        with pytest.raises(httpx.ConnectTimeout):
            request(client, "POST", URL)

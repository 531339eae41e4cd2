"""vow.http.request: the answer's body read up to a bound, and kept when it is cut off after the status."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
import respx

from vow.errors import PermanentError, RateLimitError, TransientError
from vow.http import error_for_status, request
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


def test_a_redirect_is_refused_naming_where_it_points() -> None:
    with respx.mock() as router, httpx.Client() as client:
        router.post(URL).respond(308, headers={"location": "https://api.provider.example/v2/send"})
        with pytest.raises(PermanentError) as info:
            request(client, "POST", URL, provider="acme")
    assert info.value.code == "308"
    assert str(info.value) == ("acme answered HTTP 308, redirecting to https://api.provider.example/v2/send: "
                               "vow does not follow redirects (a repeated POST could send twice, and credentials "
                               "must not follow it); point the URL at where the provider now answers")


def test_a_redirected_read_names_no_post() -> None:
    with respx.mock() as router, httpx.Client() as client:
        router.get(URL).respond(302, headers={"location": "https://login.example/"})
        with pytest.raises(PermanentError) as info:
            request(client, "GET", URL, provider="slack")
    assert str(info.value) == ("slack answered HTTP 302, redirecting to https://login.example/: vow does not follow "
                               "redirects (credentials must not follow it); point the URL at where the provider now "
                               "answers")


@pytest.mark.parametrize(("status", "kind"), [(429, RateLimitError), (503, TransientError), (408, TransientError)])
def test_a_429_is_a_rate_limit_and_other_transient_statuses_are_not(status: int, kind: type) -> None:
    error = error_for_status(status, {"retry-after": "7"}, provider="acme")
    assert type(error) is kind and (error.retry_after, error.code) == (7.0, str(status))

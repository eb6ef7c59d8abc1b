"""OrdersJSONParser: strict JSON, a body cap and a depth limit (docs/guide/parsing-and-limits.md).

Unit tests call ``parse()`` on a stream; the view tests go through DRF's request handling
(content negotiation, ``Content-Length``, the package's exception handler) so that what a
client sees — status, ``code``, ``Content-Type`` — is checked too.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from django_orders import problems
from django_orders.parsers import OrdersJSONParser
from django_orders.problems import Problem


def parse(body: bytes, media_type: str = "application/json", **context: Any) -> Any:
    return OrdersJSONParser().parse(io.BytesIO(body), media_type, context)


def parse_problem(body: bytes, media_type: str = "application/json") -> Problem:
    with pytest.raises(Problem) as caught:
        parse(body, media_type)
    return caught.value


class TestValidDocuments:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b"{}", {}),
            (b'{"totalCents": 100, "currency": "EUR"}', {"totalCents": 100, "currency": "EUR"}),
            (b' \n\t{ "b": 2, "a": 1 }\r\n ', {"a": 1, "b": 2}),
            (b'{"metadata": {"k": "v"}}', {"metadata": {"k": "v"}}),
            (b"[1, 2.5, true, false, null]", [1, 2.5, True, False, None]),
            (b'"text"', "text"),
            (b"9223372036854775808", 2**63),  # range is the serializer's business
            (b"-9223372036854775808", -(2**63)),
            (b"1e308", 1e308),
            ('{"name": "Zoë, 東京"}'.encode(), {"name": "Zoë, 東京"}),
            # A surrogate *pair* escape is one astral character: fine.
            (b'{"emoji": "\\ud83d\\ude00"}', {"emoji": "\U0001f600"}),
            (b'{"a": "\\u0001"}', {"a": "\x01"}),
        ],
    )
    def test_parses(self, body: bytes, expected: Any) -> None:
        assert parse(body) == expected

    def test_empty_body_is_an_empty_object(self) -> None:
        assert parse(b"") == {}

    def test_no_stream_is_an_empty_object(self) -> None:
        assert OrdersJSONParser().parse(None, "application/json", {}) == {}

    def test_leading_byte_order_mark_is_ignored(self) -> None:
        # RFC 8259 §8.1: a parser MAY ignore a BOM rather than treat it as an error.
        assert parse(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}

    @pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"'])
    def test_utf8_charset_parameter_is_accepted(self, charset: str) -> None:
        assert parse(b'{"a": 1}', f"application/json; charset={charset}") == {"a": 1}

    def test_depth_at_the_limit_is_accepted(self) -> None:
        depth = OrdersJSONParser.max_depth
        assert parse(b"[" * depth + b"]" * depth) is not None

    def test_integer_at_the_digit_limit_is_accepted(self) -> None:
        digits = OrdersJSONParser.max_int_digits
        assert parse(b"9" * digits) == int("9" * digits)


class TestInvalidJSON:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"{", id="truncated-object"),
            pytest.param(b'{"totalCents": 1', id="truncated-member"),
            pytest.param(b'{"a": "unterminated', id="truncated-string"),
            pytest.param(b"{'a': 1}", id="single-quotes"),
            pytest.param(b'{"a": 1,}', id="trailing-comma"),
            pytest.param(b"{a: 1}", id="unquoted-key"),
            pytest.param(b"not json", id="text"),
            pytest.param(b"   ", id="whitespace-only"),
            pytest.param(b'{"a": 1} {"b": 2}', id="two-documents"),
            pytest.param(b'{"a": 01}', id="leading-zero"),
            pytest.param(b'{"a": "\x00"}', id="raw-control-character"),
            pytest.param(b'{"a": "\\x41"}', id="bad-escape"),
            pytest.param(b'{"a": "\\ud83d\\u0041"}', id="high-surrogate-then-bmp"),
            pytest.param(b"\xef\xbb\xbf", id="bom-only"),
        ],
    )
    def test_malformed(self, body: bytes) -> None:
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b'{"a": "\xff"}', id="invalid-byte"),
            pytest.param(b'{"a": "\xc3"}', id="truncated-sequence"),
            pytest.param(b'{"a": "\xc0\xaf"}', id="overlong"),
            pytest.param(b'{"a": "\xed\xa0\x80"}', id="encoded-surrogate"),
            pytest.param('{"a": "é"}'.encode("latin-1"), id="latin-1"),
            pytest.param('{"a": 1}'.encode("utf-16"), id="utf-16"),
        ],
    )
    def test_not_utf8(self, body: bytes) -> None:
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")
        assert "UTF-8" in problem.problem_detail

    @pytest.mark.parametrize(
        "body",
        [b"NaN", b"Infinity", b"-Infinity", b'{"totalCents": NaN}', b"[1e400]", b"-1e400"],
    )
    def test_non_finite_numbers(self, body: bytes) -> None:
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")

    @pytest.mark.parametrize(
        "body",
        [
            b'{"a": 1, "a": 2}',
            b'{"a": 1, "a": 1}',
            b'{"metadata": {"k": "x", "k": "y"}}',
            b'[{"x": 1, "y": 2, "x": 3}]',
        ],
    )
    def test_duplicate_keys(self, body: bytes) -> None:
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")
        assert "Duplicate key" in problem.problem_detail

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b'"\\u0000"', id="top-level"),
            pytest.param(b'{"metadata": {"k": "a\\u0000b"}}', id="value"),
            pytest.param(b'{"metadata": {"\\u0000": "v"}}', id="key"),
            pytest.param(b'[["deep", ["\\u0000"]]]', id="nested"),
        ],
    )
    def test_nul_characters(self, body: bytes) -> None:
        # PostgreSQL's text and jsonb cannot hold U+0000: without this it is a 500.
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")
        assert "NUL" in problem.problem_detail

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b'"\\ud800"', id="lone-high"),
            pytest.param(b'"\\udfff"', id="lone-low"),
            pytest.param(b'{"metadata": {"k": "x\\ud83d"}}', id="high-at-end"),
            pytest.param(b'{"metadata": {"\\ude00": "v"}}', id="in-key"),
            pytest.param(b'["\\ude00\\ud83d"]', id="reversed-pair"),
        ],
    )
    def test_lone_surrogates(self, body: bytes) -> None:
        # json.loads accepts these; PostgreSQL then rejects them: without this, a 500.
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")
        assert "surrogate" in problem.problem_detail

    def test_unstorable_strings_can_be_allowed_by_a_subclass(self) -> None:
        class Lenient(OrdersJSONParser):
            reject_unstorable_strings = False

        assert Lenient().parse(io.BytesIO(b'["\\u0000", "\\ud800"]')) == ["\x00", "\ud800"]


class TestDepth:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"[" * 33 + b"]" * 33, id="33-arrays"),
            pytest.param(b'{"a":' * 33 + b"1" + b"}" * 33, id="33-objects"),
            pytest.param(b"[" * 500 + b"]" * 500, id="500-below-recursion-limit"),
            pytest.param(b"[" * 60000, id="60000-unclosed"),
            pytest.param(b'{"a":' * 10000 + b"1" + b"}" * 10000, id="10000-objects"),
        ],
    )
    def test_too_deep(self, body: bytes) -> None:
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")
        assert "deeper than 32" in problem.problem_detail

    def test_recursion_error_is_caught(self) -> None:
        # Deeper than the interpreter's recursion limit, still under the body cap.
        depth = sys.getrecursionlimit() * 2
        problem = parse_problem(b"[" * depth + b"]" * depth)
        assert problem.problem_code == "invalid_json"

    def test_limit_is_a_class_attribute(self) -> None:
        class Shallow(OrdersJSONParser):
            max_depth = 2

        assert Shallow().parse(io.BytesIO(b'{"m": {}}')) == {"m": {}}
        with pytest.raises(Problem, match="deeper than 2"):
            Shallow().parse(io.BytesIO(b'{"m": {"x": []}}'))


class TestNumbers:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"1" * 1001, id="1001-digits"),
            pytest.param(b"-" + b"1" * 1001, id="negative-1001-digits"),
            pytest.param(b'{"totalCents": 1' + b"0" * 5000 + b"}", id="10^5000"),
            pytest.param(b"[" + b"9" * 50000 + b"]", id="50000-digits"),
        ],
    )
    def test_enormous_integers(self, body: bytes) -> None:
        problem = parse_problem(body)
        assert (problem.status_code, problem.problem_code) == (400, "invalid_json")

    def test_interpreter_int_limit_is_a_400_too(self) -> None:
        class Unbounded(OrdersJSONParser):
            max_int_digits = 10**9

        previous = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(640)
        try:
            with pytest.raises(Problem) as caught:
                Unbounded().parse(io.BytesIO(b"1" * 700))
        finally:
            sys.set_int_max_str_digits(previous)
        assert caught.value.problem_code == "invalid_json"

    def test_long_float_literal_is_fine(self) -> None:
        assert parse(b"0." + b"0" * 5000 + b"1") == pytest.approx(0.0)


class TestBodySize:
    def test_body_at_the_cap_is_read(self) -> None:
        body = json.dumps({"pad": "x" * 65000}).encode()
        body += b" " * (65536 - len(body))
        assert len(body) == 65536
        assert parse(body)["pad"] == "x" * 65000

    def test_body_over_the_cap_is_413(self) -> None:
        problem = parse_problem(b" " * 65537)
        assert (problem.status_code, problem.problem_code) == (413, "payload_too_large")

    def test_reads_at_most_one_byte_past_the_cap(self) -> None:
        stream = io.BytesIO(b"x" * 10_000_000)
        with pytest.raises(Problem):
            OrdersJSONParser().parse(stream, "application/json", {})
        assert stream.tell() == 65537

    @override_settings(DJANGO_ORDERS={"MAX_BODY_BYTES": 10})
    def test_cap_is_the_setting(self) -> None:
        assert parse(b'{"a": 123}') == {"a": 123}  # 10 bytes
        problem = parse_problem(b'{"a": 1234}')
        assert problem.status_code == 413
        assert "10 bytes" in problem.problem_detail

    def test_declared_content_length_over_the_cap_is_413_before_reading(self) -> None:
        class Request:
            META = {"CONTENT_LENGTH": "1000000"}

        stream = io.BytesIO(b"{}")
        with pytest.raises(Problem) as caught:
            OrdersJSONParser().parse(stream, "application/json", {"request": Request()})
        assert caught.value.status_code == 413
        assert stream.tell() == 0

    @pytest.mark.parametrize("declared", ["", "abc", "-1", None])
    def test_odd_content_length_falls_back_to_the_read_cap(self, declared: str | None) -> None:
        class Request:
            META = {"CONTENT_LENGTH": declared}

        context = {"request": Request()}
        assert OrdersJSONParser().parse(io.BytesIO(b"{}"), "application/json", context) == {}


class TestCharset:
    @pytest.mark.parametrize("charset", ["latin-1", "utf-16", "ascii", "bz2_codec", "nonsense"])
    def test_other_charsets_are_415(self, charset: str) -> None:
        problem = parse_problem(b"{}", f"application/json; charset={charset}")
        assert (problem.status_code, problem.problem_code) == (415, "unsupported_media_type")


# Through DRF: content negotiation, Content-Length and the package's exception handler.


class EchoView(APIView):
    parser_classes = (OrdersJSONParser,)
    authentication_classes = ()
    permission_classes = ()

    def get_exception_handler(self) -> Any:
        return problems.exception_handler

    def post(self, request: Request) -> Response:
        return Response({"data": request.data})


factory = APIRequestFactory()


def post(body: bytes, content_type: str | None = "application/json", **extra: Any) -> Response:
    if content_type is None:
        request = factory.generic("POST", "/echo", body, **extra)
        request.META.pop("CONTENT_TYPE", None)
    else:
        request = factory.generic("POST", "/echo", body, content_type=content_type, **extra)
    response = EchoView.as_view()(request)
    response.render()
    return response


def assert_problem(response: Response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["status"] == status
    assert body["code"] == code


class TestThroughAView:
    def test_valid_body(self) -> None:
        response = post(b'{"a": [1, 2]}')
        assert response.status_code == 200
        assert json.loads(response.content) == {"data": {"a": [1, 2]}}

    def test_no_body_is_an_empty_object(self) -> None:
        response = post(b"")
        assert json.loads(response.content) == {"data": {}}

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (b"{", 400, "invalid_json"),
            (b'{"a": "\\ud800"}', 400, "invalid_json"),
            (b'{"a": "\\u0000"}', 400, "invalid_json"),
            (b"[" * 60000, 400, "invalid_json"),
            (b"[" * 100000, 413, "payload_too_large"),
            (b" " * 65537, 413, "payload_too_large"),
        ],
    )
    def test_problems(self, body: bytes, status: int, code: str) -> None:
        assert_problem(post(body), status, code)

    def test_declared_length_over_the_cap(self) -> None:
        assert_problem(post(b"{}", CONTENT_LENGTH="70000"), 413, "payload_too_large")

    @pytest.mark.parametrize(
        "content_type",
        [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "application/merge-patch+json",
            "application/problem+json",
            "application/jsonx",
            "json",
            "*/*",
            "application/*",
            "*/*; charset=utf-8",
        ],
    )
    def test_other_media_types_are_415(self, content_type: str) -> None:
        assert_problem(post(b'{"a": 1}', content_type), 415, "unsupported_media_type")

    def test_body_without_content_type_is_415(self) -> None:
        assert_problem(post(b'{"a": 1}', content_type=None), 415, "unsupported_media_type")

    def test_media_type_is_case_insensitive(self) -> None:
        response = post(b'{"a": 1}', "Application/JSON; Charset=UTF-8")
        assert response.status_code == 200

    def test_non_utf8_charset_is_415(self) -> None:
        response = post(b'{"a": 1}', "application/json; charset=latin-1")
        assert_problem(response, 415, "unsupported_media_type")

    def test_parse_error_is_not_repeated_on_second_access(self) -> None:
        # DRF resets request.data after a parser raises; the problem is raised once.
        request = factory.generic("POST", "/echo", b"{", content_type="application/json")
        drf_request = Request(request, parsers=[OrdersJSONParser()])
        with pytest.raises(Problem):
            _ = drf_request.data
        assert not drf_request.data

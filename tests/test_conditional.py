"""ETag, If-Match and If-None-Match helpers (docs/guide/conditional-requests.md; RFC 9110
§8.8.3, §13.1)."""

from __future__ import annotations

import pytest

from django_orders.conditional import (
    EntityTag,
    etag,
    evaluate_if_match,
    if_match_version,
    if_none_match_is_newer,
    if_none_match_matches,
    parse_entity_tags,
)
from django_orders.problems import Problem


@pytest.mark.parametrize(("version", "expected"), [(1, '"1"'), (3, '"3"'), (2**31, '"2147483648"')])
def test_etag_is_the_quoted_version(version: int, expected: str) -> None:
    assert etag(version) == expected


class TestParseEntityTags:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ('"3"', [EntityTag("3")]),
            ('W/"3"', [EntityTag("3", weak=True)]),
            ("3", [EntityTag("3")]),
            ('""', [EntityTag("")]),
            ('"2", "3"', [EntityTag("2"), EntityTag("3")]),
            ('"2","3"', [EntityTag("2"), EntityTag("3")]),
            (' \t"2" \t, \tW/"3" \t', [EntityTag("2"), EntityTag("3", weak=True)]),
            ("2, 3", [EntityTag("2"), EntityTag("3")]),
            ('2, "3", W/"4"', [EntityTag("2"), EntityTag("3"), EntityTag("4", weak=True)]),
            # RFC 9110 §5.6.1.2: recipients skip empty list elements.
            ('"2",,"3"', [EntityTag("2"), EntityTag("3")]),
            (', "3" ,', [EntityTag("3")]),
            # A comma is a valid etagc, so lists are scanned, not split on commas.
            ('"a,b", "3"', [EntityTag("a,b"), EntityTag("3")]),
            ('"xyzzy"', [EntityTag("xyzzy")]),
            ('"!#~"', [EntityTag("!#~")]),
            ('"caf\xe9"', [EntityTag("caf\xe9")]),  # obs-text, as WSGI delivers it
            ("", []),
            ("  ", []),
            (",", []),
        ],
    )
    def test_valid(self, value: str, expected: list[EntityTag]) -> None:
        assert parse_entity_tags(value) == expected

    @pytest.mark.parametrize(
        "value",
        [
            "abc",
            '"3',
            '3"',
            "'3'",
            '"3" "4"',
            '"3";"4"',
            'w/"3"',
            'W/ "3"',
            "W/3",
            '"a b"',  # SP is not an etagc
            '"a"b"',
            '"tab\there"',
            "3a",
            "-3",
            "3.0",
            "*",
            '*, "3"',
            '"\u0100"',  # not obs-text: cannot come from a real HTTP header
            '"\x7f"',
        ],
    )
    def test_invalid(self, value: str) -> None:
        assert parse_entity_tags(value) is None


class TestEvaluateIfMatch:
    @pytest.mark.parametrize(
        "value",
        ['"3"', "3", ' "3" ', '"2", "3"', '"3", "4"', "2, 3", 'W/"3", "3"', "*", " * ", '"2",,"3"'],
    )
    def test_matches(self, value: str) -> None:
        evaluate_if_match(value, 3)  # does not raise

    def test_missing_is_428_when_required(self) -> None:
        with pytest.raises(Problem) as caught:
            evaluate_if_match(None, 3)
        assert (caught.value.status_code, caught.value.problem_code) == (
            428,
            "precondition_required",
        )

    def test_missing_passes_when_not_required(self) -> None:
        evaluate_if_match(None, 3, required=False)

    @pytest.mark.parametrize("required", [True, False])
    @pytest.mark.parametrize(
        "value", ["abc", '"3', "", "   ", ",", "W/3", '*, "3"', "3 4", "\u00e9", "\u2603", "3\x00"]
    )
    def test_unparseable_is_400(self, value: str, required: bool) -> None:
        with pytest.raises(Problem) as caught:
            evaluate_if_match(value, 3, required=required)
        assert (caught.value.status_code, caught.value.problem_code) == (400, "invalid_if_match")

    @pytest.mark.parametrize(
        "value",
        [
            '"2"',
            "2",
            '"4"',
            '"2", "4"',
            'W/"3"',  # weak tags never match: strong comparison (RFC 9110 §8.8.3.2)
            'W/"3", W/"2"',
            '"03"',  # opaque tags compare character by character
            "03",
            '""',
            '"caf\xe9"',
        ],
    )
    def test_mismatch_is_412_with_current_version_and_etag(self, value: str) -> None:
        with pytest.raises(Problem) as caught:
            evaluate_if_match(value, 3)
        problem = caught.value
        assert (problem.status_code, problem.problem_code) == (412, "version_mismatch")
        assert problem.headers == {"ETag": '"3"'}
        assert problem.body()["currentVersion"] == 3
        assert problem.body()["code"] == "version_mismatch"

    def test_order_of_checks_presence_then_syntax_then_match(self) -> None:
        # RFC 9110 §13.2.1 via docs/api/confirm-order.md: 428 before 400 before 412.
        with pytest.raises(Problem, match="requires an If-Match"):
            evaluate_if_match(None, 1)
        with pytest.raises(Problem) as caught:
            evaluate_if_match("garbage", 1)
        assert caught.value.status_code == 400


class TestIfNoneMatch:
    @pytest.mark.parametrize(
        "value",
        ['"3"', 'W/"3"', "3", '"1", "3"', '"1", W/"3"', 'W/"1", W/"3"', "*", " * ", '"a,b", "3"'],
    )
    def test_matches_by_weak_comparison(self, value: str) -> None:
        assert if_none_match_matches(value, 3) is True

    @pytest.mark.parametrize(
        "value",
        [None, '"2"', 'W/"2"', '"2", "4"', '"03"', '""', "", ","],
    )
    def test_does_not_match(self, value: str | None) -> None:
        assert if_none_match_matches(value, 3) is False

    @pytest.mark.parametrize("value", ["abc", '"3', '"3" "3"', "W/3", '*, "3"', "\u2603"])
    def test_malformed_is_ignored(self, value: str) -> None:
        # A server may ignore a header it cannot parse and answer normally (200).
        assert if_none_match_matches(value, 3) is False


class TestIfNoneMatchIsNewer:
    """Whether the client holds a version newer than the one read (docs/guide/replicas.md)."""

    @pytest.mark.parametrize("value", ['"4"', 'W/"4"', "4", '"1", "9"', '"x", W/"12"'])
    def test_a_newer_version_is_named(self, value: str) -> None:
        assert if_none_match_is_newer(value, 3) is True

    @pytest.mark.parametrize(
        "value",
        [None, '"3"', '"2"', "*", '"abc"', "", '"4', '"\u00b2"', '"' + "9" * 19 + '"'],
    )
    def test_nothing_newer(self, value: str | None) -> None:
        assert if_none_match_is_newer(value, 3) is False


class TestIfMatchVersion:
    """The one version a conditional write may test for (docs/benchmarks.md, Finding 16):
    exactly what evaluate_if_match() lets through for that version alone."""

    @pytest.mark.parametrize(
        ("value", "version"),
        [('"3"', 3), ("3", 3), (' "3"\t', 3), ('"3",', 3), ('"2147483646"', 2**31 - 2)],
    )
    def test_one_strong_tag_of_a_version(self, value: str, version: int) -> None:
        assert if_match_version(value) == version
        evaluate_if_match(value, version)  # passes
        with pytest.raises(Problem):
            evaluate_if_match(value, version + 1)

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "*",
            "",
            'W/"3"',
            '"3", "4"',
            'W/"3", "3"',
            '"03"',
            '"0"',
            # The largest version has no next one: the locked path answers.
            '"2147483647"',
            '"-3"',
            '"3.0"',
            '"abc"',
            '"\u00b3"',
            '"2147483648"',
            '"' + "9" * 19 + '"',
            '"3',
        ],
    )
    def test_anything_else_is_left_to_evaluate_if_match(self, value: str | None) -> None:
        assert if_match_version(value) is None

"""The conformance table and the tests agree: no case without a test, no test unlisted."""

from __future__ import annotations

from collections import Counter

from .conformance import DOC, GROUPS, collect, listed_ids, render


def test_every_case_has_a_test_and_every_test_is_listed() -> None:
    """Each ID in docs/CONFORMANCE.md has a test, and each test's ID is in the table."""
    cases = collect()
    in_tests = {case.case_id for case in cases}
    in_doc = set(listed_ids(DOC.read_text(encoding="utf-8")))
    assert in_doc - in_tests == set(), "listed cases without a test"
    assert in_tests - in_doc == set(), "unlisted: run python -m tests.conformance"


def test_case_ids_are_in_known_groups_and_numbered_densely() -> None:
    """Every ID is in a known group (GW, RT, WS, SEC, USR); each family is numbered 1..n."""
    counts = Counter(case.case_id for case in collect())
    assert {case_id.split("-")[0] for case_id in counts} <= set(GROUPS)
    families: dict[str, set[int]] = {}
    for case_id in counts:
        family, _, number = case_id.rpartition("-")
        families.setdefault(family, set()).add(int(number))
    gaps = {f: sorted(set(range(1, max(n) + 1)) - n) for f, n in families.items()}
    assert {f: g for f, g in gaps.items() if g} == {}


def test_table_is_up_to_date() -> None:
    """docs/CONFORMANCE.md is exactly what the tests' docstrings generate."""
    assert DOC.read_text(encoding="utf-8") == render(collect())

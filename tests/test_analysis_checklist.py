"""Stable test IDs: first build, reorder, insert, delete, reword, revert, author IDs, random edits."""

from __future__ import annotations

import random
import string
import time

from quantumreview.analysis.checklist import Item, Reconciliation, reconcile, tid_number
from quantumreview.analysis.criteria import Criterion


def crit(text: str, author_tid: str | None = None, detail: str = "") -> Criterion:
    """Build a criterion for a test."""
    return Criterion(text=text, detail=detail, author_tid=author_tid)


def build(*texts: str) -> Reconciliation:
    """Reconcile a first version of a body."""
    return reconcile([], {}, 1, [crit(text) for text in texts])


def edit(before: Reconciliation, *texts: str) -> Reconciliation:
    """Reconcile an edited body against the previous result."""
    return reconcile(before.items, before.retired, before.next_number, [crit(text) for text in texts])


def ids(result: Reconciliation) -> list[tuple[str, str]]:
    """Return (tid, text) pairs in body order."""
    return [(item.tid, item.text) for item in result.items]


def test_first_build_numbers_criteria_in_body_order() -> None:
    result = reconcile([], {}, 1, [crit("Login works", detail="- with SSO"), crit("Logout works")])
    assert result.items == (Item("T1", "Login works", "- with SSO"), Item("T2", "Logout works", ""))
    assert (result.next_number, result.added, result.removed, result.reworded) == (3, ("T1", "T2"), (), ())
    assert result.retired == {}


def test_reorder_keeps_every_id() -> None:
    after = edit(build("Login works", "Logout works", "Profile saves"), "Profile saves", "Login works", "Logout works")
    assert ids(after) == [("T3", "Profile saves"), ("T1", "Login works"), ("T2", "Logout works")]
    assert (after.added, after.removed, after.reworded) == ((), (), ())


def test_insert_gets_the_next_number_and_others_keep_theirs() -> None:
    after = edit(build("Login works", "Logout works"), "Login works", "Password reset emails", "Logout works")
    assert ids(after) == [("T1", "Login works"), ("T3", "Password reset emails"), ("T2", "Logout works")]
    assert after.added == ("T3",)
    assert after.next_number == 4


def test_delete_retires_the_id_and_it_is_not_given_to_a_new_criterion() -> None:
    first = build("Login works", "Logout works", "Profile saves")
    deleted = edit(first, "Login works", "Profile saves")
    assert deleted.removed == ("T2",)
    assert deleted.retired == {"T2": "Logout works"}
    added = edit(deleted, "Login works", "Profile saves", "Avatar uploads")
    assert ids(added)[-1] == ("T4", "Avatar uploads")


def test_reworded_criterion_keeps_its_id() -> None:
    after = edit(
        build("The user can log in with email", "Logout works"), "Logout works", "A user can log in with e-mail"
    )
    assert ids(after) == [("T2", "Logout works"), ("T1", "A user can log in with e-mail")]
    assert after.reworded == ("T1",)
    assert (after.added, after.removed) == ((), ())


def test_case_and_spacing_edits_match_exactly_but_count_as_reworded() -> None:
    after = edit(build("Login works"), "  LOGIN   works ")
    assert ids(after) == [("T1", "  LOGIN   works ")]
    assert after.reworded == ("T1",)


def test_rewrite_beyond_the_threshold_is_a_new_criterion() -> None:
    after = edit(build("Login works"), "Export the error log as CSV")
    assert ids(after) == [("T2", "Export the error log as CSV")]
    assert (after.added, after.removed) == (("T2",), ("T1",))


def test_best_reword_match_wins_and_each_old_item_matches_once() -> None:
    first = build("Users can export the report as CSV", "Users can export the report as PDF")
    after = edit(first, "Users can export the report as PDF files", "Users can export the report as CSV files")
    assert ids(after) == [
        ("T2", "Users can export the report as PDF files"),
        ("T1", "Users can export the report as CSV files"),
    ]


def test_edit_then_revert_gets_the_old_id_back() -> None:
    first = build("Login works", "Logout works")
    edited = edit(first, "Login works", "Shopping cart keeps items overnight")
    assert ids(edited)[1] == ("T3", "Shopping cart keeps items overnight")
    reverted = edit(edited, "Login works", "Logout works")
    assert ids(reverted) == [("T1", "Login works"), ("T2", "Logout works")]
    assert reverted.added == ("T2",)
    assert reverted.removed == ("T3",)
    assert reverted.retired == {"T3": "Shopping cart keeps items overnight"}
    assert reverted.next_number == 4


def test_author_id_is_kept_and_moves_next_number_past_it() -> None:
    result = reconcile([], {}, 1, [crit("Login works"), crit("T7: Logout works", "T7"), crit("Profile saves")])
    assert [item.tid for item in result.items] == ["T1", "T7", "T8"]
    assert result.next_number == 9


def test_repeated_author_id_goes_to_the_first_item_only() -> None:
    result = reconcile([], {}, 1, [crit("T2: first", "T2"), crit("T2: second", "T2")])
    assert [item.tid for item in result.items] == ["T2", "T3"]


def test_author_id_wins_over_text_matching() -> None:
    first = build("Login works", "Logout works")
    after = reconcile(first.items, first.retired, first.next_number, [crit("T1: Logout works", "T1")])
    assert ids(after) == [("T1", "T1: Logout works")]
    assert after.removed == ("T2",)


def test_duplicate_criteria_get_distinct_ids_and_keep_them() -> None:
    first = build("AC", "AC", "AC")
    assert [item.tid for item in first.items] == ["T1", "T2", "T3"]
    after = edit(first, "AC", "AC")
    assert [item.tid for item in after.items] == ["T1", "T2"]
    assert after.removed == ("T3",)


def test_stored_next_number_below_used_ids_is_corrected() -> None:
    previous = [Item("T5", "Login works", "")]
    after = reconcile(previous, {"T9": "Old"}, 1, [crit("Login works"), crit("New thing entirely")])
    assert [item.tid for item in after.items] == ["T5", "T10"]


def test_malformed_stored_ids_do_not_break_numbering() -> None:
    previous = [Item("bogus", "Login works", ""), Item("T0", "Logout", "")]
    after = reconcile(previous, {"x": "y"}, 0, [crit("Login works"), crit("Profile saves")])
    assert [item.tid for item in after.items] == ["bogus", "T1"]
    assert tid_number("T0") is None
    assert tid_number("T12") == 12


def test_ids_are_never_reused_for_a_different_criterion_across_random_edits() -> None:
    rng = random.Random(20240601)

    def sentence() -> str:
        return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(8))

    owner: dict[str, int] = {}  # tid -> identity of the criterion it was first given to
    body: list[tuple[int, str]] = []  # (identity, text)
    gone: list[tuple[int, str]] = []
    state = reconcile([], {}, 1, [])
    next_identity = 0
    for _ in range(300):
        action = rng.choice(["insert", "delete", "reword", "reorder", "revert"])
        if action == "insert" or not body:
            body.insert(rng.randint(0, len(body)), (next_identity, sentence()))
            next_identity += 1
        elif action == "delete":
            gone.append(body.pop(rng.randrange(len(body))))
        elif action == "reword":
            index = rng.randrange(len(body))
            identity, text = body[index]
            words = text.split()
            words[rng.randrange(len(words))] = "".join(rng.choices(string.ascii_lowercase, k=5))
            body[index] = (identity, " ".join(words))
        elif action == "reorder":
            rng.shuffle(body)
        elif gone:
            body.insert(rng.randint(0, len(body)), gone.pop(rng.randrange(len(gone))))
        state = reconcile(state.items, state.retired, state.next_number, [crit(text) for _, text in body])
        tids = [item.tid for item in state.items]
        assert len(set(tids)) == len(tids)
        for (identity, _), tid in zip(body, tids, strict=True):
            assert owner.setdefault(tid, identity) == identity, f"{tid} moved to another criterion"
        assert set(state.retired).isdisjoint(tids)
    assert len(owner) > 50


def test_fresh_ids_skip_an_author_id_written_further_down() -> None:
    result = reconcile([], {}, 1, [crit("Login works"), crit("Logout works"), crit("T2: Profile saves", "T2")])
    assert [item.tid for item in result.items] == ["T1", "T3", "T2"]
    assert result.next_number == 4


def test_a_long_reworded_criterion_keeps_its_id_quickly() -> None:
    # Rewording was scored with a quadratic ratio over the whole texts: two 5,000-character lines took seconds
    # (a 60,000-character one, hours), blocking the server. Long texts are now compared by their start and end.
    first = build("x" * 5_000 + " login works", "Logout works")
    started = time.perf_counter()
    after = edit(first, "x" * 5_000 + " login still works", "Logout works")
    assert time.perf_counter() - started < 0.5
    assert [item.tid for item in after.items] == ["T1", "T2"] and after.reworded == ("T1",)
    prose = "The exported report lists every invoice of the month with its customer, amount and due date; " * 3
    moved = edit(build(prose + "as CSV", "Logout works"), "Logout works", prose + "as a CSV file")
    assert ids(moved)[1][0] == "T1"

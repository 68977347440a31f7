"""The hash input and digest, byte for byte as Odoo builds them, in every version."""

from __future__ import annotations

import hashlib
import json
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.finance import hashchain
from shared.finance.hashchain import HashLine, HashMove
from shared.finance.hashcheck import NULL_NAME, SEP_FIELD, SEP_LINE, payload_from_body, payload_v3
from shared.finance.numbering import split_name
from shared.finance.seed import money

names = st.one_of(st.none(), st.text(max_size=12))
ids = st.one_of(st.none(), st.integers(min_value=1, max_value=10**6))
amounts = st.integers(min_value=0, max_value=10**9)


@st.composite
def moves(draw):
    move = HashMove(
        id=draw(st.integers(1, 10**6)),
        name=draw(names),
        date=draw(st.dates(date(2000, 1, 1), date(2099, 12, 31))),
        journal_id=draw(ids),
        company_id=draw(ids),
    )
    line_ids = draw(st.lists(st.integers(1, 10**7), unique=True, max_size=6))
    lines = []
    for lid in line_ids:
        decimals = draw(st.sampled_from([0, 2, 3]))
        scale = draw(st.sampled_from([0, 2, 3]))
        debit = draw(amounts) / 10**scale
        lines.append(
            HashLine(
                lid,
                draw(names),
                debit,
                draw(st.sampled_from([None, 0.0])),
                draw(ids),
                draw(ids),
                decimals,
            )  # fmt: skip
        )
    return move, lines


@settings(max_examples=300, deadline=None)
@given(moves(), st.sampled_from([1, 2, 3, 4]))
def test_payload_is_byte_identical_to_sorted_json_dumps(data, version):
    move, lines = data
    assert hashchain.payload(move, lines, version) == hashchain.reference_payload(
        move, lines, version
    )


def test_line_keys_sort_as_text_so_line_10_comes_before_line_9():
    move = HashMove(1, "INV/2025/00001", date(2025, 1, 1), 1, 1)
    lines = [HashLine(9, "a", 1.0, 0.0, 1, None, 2), HashLine(10, "b", 0.0, 1.0, 2, None, 2)]
    text = hashchain.payload(move, lines, 3)
    assert text.index('"line_10_account_id"') < text.index('"line_9_account_id"')
    assert '"line_9_debit":"1.00"' in text and '"line_10_partner_id":"False"' in text


def test_money_uses_the_line_currency_decimals_in_v3_and_str_float_before():
    move = HashMove(1, "X", date(2025, 1, 1), 1, 1)
    jpy_line = [HashLine(1, "x", 1234.5, None, 1, 1, 0)]
    assert '"line_1_debit":"1234"' in hashchain.payload(move, jpy_line, 3)  # half to even
    assert '"line_1_debit":"1234.5"' in hashchain.payload(move, jpy_line, 2)
    assert '"line_1_credit":"0.0"' in hashchain.payload(move, jpy_line, 1)
    assert '"name"' not in hashchain.payload(move, jpy_line, 1)


def test_version_4_is_prefixed_and_chains_on_the_hex_part_only():
    move = HashMove(1, "INV/2025/00001", date(2025, 1, 1), 1, 1)
    first = hashchain.compute(None, move, [], 4)
    assert first.startswith("$4$") and len(first) == 67
    second = hashchain.compute(first, move, [], 4)
    expected = hashlib.sha256((first[3:] + hashchain.payload(move, [], 4)).encode()).hexdigest()
    assert second == "$4$" + expected


def test_verifier_raises_the_version_and_never_lowers_it():
    move = HashMove(1, "A", date(2025, 1, 1), 1, 1)
    verifier = hashchain.VersionedVerifier(3)
    v2 = hashchain.compute(None, move, [], 2)
    assert verifier.matches(None, move, [], v2) == 2
    v1 = hashchain.compute(None, move, [], 1)
    assert verifier.matches(None, move, [], v1) is None  # a chain at 2 cannot go back to 1


@st.composite
def text_moves(draw):
    """A move and its lines as the validator streams them (numeric amounts as text, with the
    scale they were stored with) and as floats, the way Odoo reads them."""
    move = draw(moves())[0]
    rows, floats = [], []
    for lid in sorted(draw(st.lists(st.integers(1, 10**7), unique=True, max_size=6))):
        decimals = draw(st.sampled_from([0, 2, 3]))
        texts = []
        for _ in range(2):
            scale = draw(st.sampled_from([0, 2, 3, decimals]))
            texts.append(draw(st.one_of(st.none(), amounts.map(lambda a, s=scale: money(a, s)))))
        name, account, partner = draw(names), draw(ids), draw(ids)
        rows.append(
            (move.id, str(lid), name, texts[0], texts[1],
             None if account is None else str(account),
             None if partner is None else str(partner), decimals)
        )  # fmt: skip
        floats.append(
            HashLine(
                lid,
                name,
                *(None if t is None else float(t) for t in texts),
                account,
                partner,
                decimals,
            )  # fmt: skip
        )
    return move, rows, floats


@settings(max_examples=400, deadline=None)
@given(text_moves())
def test_validator_payload_from_text_rows_matches_the_generator_payload(data):
    move, rows, floats = data
    decimals = {0: 0, 2: 2, 3: 3}  # currency id == its decimals, for the test
    move_row = (move.id, move.name, move.date.isoformat(), move.journal_id, move.company_id)
    assert payload_v3(move_row, rows, decimals) == hashchain.payload(move, floats, 3)


def test_reference_payload_is_what_json_dumps_gives():
    move = HashMove(7, "Café/2025/1", date(2025, 3, 1), 2, None)
    text = hashchain.reference_payload(move, [], 3)
    assert text == json.dumps(
        {"company_id": "False", "date": "2025-03-01", "journal_id": "2", "name": "Café/2025/1"},
        sort_keys=True, ensure_ascii=True, separators=(",", ":"),
    )  # fmt: skip


def test_sequence_prefix_and_number_split_like_odoo():
    assert split_name("INV/2025/00042") == ("INV/2025/", 42)
    assert split_name("BILL/2025/01/0007") == ("BILL/2025/01/", 7)
    assert split_name("/") == ("", 0)  # the lazy prefix leaves "/" to the suffix
    assert split_name(None) == ("", 0)
    assert split_name("2025-0001-A") == ("2025-", 1)


def _body(rows: list[tuple]) -> str:
    """The text BODIES_SQL aggregates for one move from the validator's text rows."""
    fields = []
    for _, lid, name, debit, credit, account, partner, currency in rows:
        parts = [lid, debit, credit, account, partner, str(currency)]
        parts = ["" if p is None else p for p in parts]
        fields.append(SEP_FIELD.join([*parts, NULL_NAME if name is None else name]))
    return SEP_LINE.join(fields)


@settings(max_examples=400, deadline=None)
@given(text_moves(), st.randoms(use_true_random=False))
def test_payload_from_a_body_in_any_line_order_matches_the_generator_payload(data, rnd):
    move, rows, floats = data
    rows = list(rows)
    rnd.shuffle(rows)  # string_agg gives the lines in no particular order
    decimals = {"0": 0, "2": 2, "3": 3}
    move_row = (move.id, move.name, move.date.isoformat(), move.journal_id, move.company_id)
    text = payload_from_body(move_row, _body(rows), decimals)
    expected = hashchain.payload(move, floats, 3)
    if any(r[2] is not None and (SEP_LINE in r[2] or r[2] == NULL_NAME) for r in rows):
        return  # such a move goes to the exact path when its text does not reproduce the hash
    assert text == expected


def test_a_label_holding_a_line_separator_gives_a_text_that_cannot_match():
    move_row = (1, "INV/1", "2025-01-01", 1, 1)
    rows = [(1, "7", "a\x1eb", "1.00", "0.00", "3", None, 2)]
    body = _body(rows)
    assert payload_from_body(move_row, body, {"2": 2}) != payload_v3(move_row, rows, {2: 2})


def test_ids_of_different_lengths_sort_as_json_keys_in_a_body():
    move_row = (1, "INV/1", "2025-01-01", 1, 1)
    rows = [(1, lid, "x", "1.00", "0.00", "3", "4", 2) for lid in ("9", "10", "1", "100")]
    text = payload_from_body(move_row, _body(rows), {"2": 2})
    keys = [text.index(f'"line_{i}_account_id"') for i in ("100", "10", "1", "9")]
    assert keys == sorted(keys)

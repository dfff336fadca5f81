"""FilterExpression: what it evaluates, what it refuses, and agreement with Python."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from technic_panel.engine.expressions import MAX_DEPTH, MAX_LENGTH, FilterExpression

COLUMNS = ("close", "sma_200", "rsi_14", "volume", "change_pct", "signal", "sector")
ROW = {"close": 120.0, "sma_200": 100.0, "rsi_14": 28.0, "volume": 2_000_000,
       "change_pct": -1.5, "signal": "BUY", "sector": "Energy"}


def passes(text: str, row: dict | None = None, columns=COLUMNS) -> bool:
    return FilterExpression(text, columns)(ROW if row is None else row)


@pytest.mark.parametrize(("text", "expected"), [
    ("close > sma_200", True),
    ("close < sma_200", False),
    ("rsi_14 < 30 and close > sma_200", True),
    ("rsi_14 < 30 and close < sma_200", False),
    ("rsi_14 > 70 or close > sma_200", True),
    ("rsi_14 > 70 or close < sma_200", False),
    ("not close < sma_200", True),
    ("not (rsi_14 < 30)", False),
    ("20 < rsi_14 < 30", True),
    ("20 < rsi_14 < 25", False),
    ("sma_200 < close <= 120 < volume", True),
    ("sma_200 < close < 120", False),
    ("close >= 120 and close <= 120", True),
    ("close == 120", True),
    ("close != 120", False),
    ("close / sma_200 > 1.19", True),
    ("close / sma_200 > 1.21", False),
    ("close - sma_200 == 20", True),
    ("close * 2 == 240", True),
    ("close + sma_200 * 2 == 320", True),  # precedence: * before +
    ("(close + sma_200) * 2 == 440", True),
    ("close - sma_200 - 10 == 10", True),  # left-associative
    ("close / 2 / 3 == 20", True),
    ("-change_pct > 1", True),
    ("-change_pct < 0", False),
    ("- -change_pct == change_pct", True),
    ("change_pct < -1", True),
    ("volume * close > 1e8", True),
    ("volume > 1_000_000", True),
    ("close", True),  # a bare number is truthy unless 0
    ("close - 120", False),
    ("signal == 'BUY'", True),
    ('signal == "BUY"', True),
    ("signal == 'SELL'", False),
    ("signal != 'SELL' and sector == 'Energy'", True),
    ("signal == 'STRONG_BUY' or signal == 'BUY'", True),
    ("'BUY' == signal", True),
    ("sector < 'F'", True),  # strings compare lexicographically
    ("not (signal == 'BUY' and rsi_14 < 30)", False),
    ("rsi_14 < 30 and (signal == 'SELL' or close > sma_200)", True),
    ("  close > sma_200  ", True),
])
def test_valid_expressions_evaluate(text: str, expected: bool):
    result = passes(text)
    assert result is expected


def test_same_expression_on_different_rows():
    expression = FilterExpression("rsi_14 < 30 and close > sma_200", COLUMNS)
    assert expression({**ROW, "rsi_14": 25.0})
    assert not expression({**ROW, "rsi_14": 35.0})
    assert not expression({**ROW, "close": 90.0})
    assert expression.text == "rsi_14 < 30 and close > sma_200"
    assert "rsi_14 < 30" in repr(expression)


def test_unknown_column_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown column 'sma_300'") as info:
        FilterExpression("close > sma_300", COLUMNS)
    message = str(info.value)
    for name in COLUMNS:
        assert name in message
    assert "close > sma_300" in message


@pytest.mark.parametrize(("text", "construct"), [
    ("abs(change_pct) > 1", "Call"),
    ("__import__('os').system('true')", "Call"),
    ("close.real > 1", "Attribute"),
    ("signal[0] == 'B'", "Subscript"),
    ("(lambda: 1)() > 0", "Call"),
    ("lambda: close", "Lambda"),
    ("[c for c in signal]", "ListComp"),
    ("{c for c in signal}", "SetComp"),
    ("close ** 2 > 1", "Pow"),
    ("9 ** 9 ** 9 > 1", "Pow"),
    ("'B' in signal", "In"),
    ("'B' not in signal", "NotIn"),
    ("+close > 1", "UAdd"),
    ("~volume > 1", "Invert"),
    ("close // 2 > 1", "FloorDiv"),
    ("close % 2 == 0", "Mod"),
    ("volume & 1", "BitAnd"),
    ("close is sma_200", "Is"),
    ("close if signal else sma_200", "IfExp"),
    ("(close := 1)", "NamedExpr"),
    ("(close, sma_200)", "Tuple"),
    ("f'{signal}' == 'BUY'", "JoinedStr"),
    ("True", "True"),
    ("close > None", "None"),
])
def test_disallowed_constructs_are_named(text: str, construct: str):
    with pytest.raises(ValueError, match="not allowed") as info:
        FilterExpression(text, COLUMNS)
    assert construct in str(info.value)


@pytest.mark.parametrize("text", ["close >", "close > > 1", "", "   ", "and close", "close ="])
def test_syntax_error_says_so_with_an_example(text: str):
    with pytest.raises(ValueError, match="is not a valid expression") as info:
        FilterExpression(text, COLUMNS)
    assert "example" in str(info.value)
    assert isinstance(info.value.__cause__, SyntaxError)


# --- size and depth caps: refused before any recursion ---------------------------------------


@pytest.mark.parametrize("nots", [5000, 100_000])
def test_a_filter_longer_than_the_cap_is_refused_by_its_length(nots: int):
    text = "not " * nots + "close > 1"
    with pytest.raises(ValueError) as info:
        FilterExpression(text, COLUMNS)
    assert str(info.value) == (f"filter is {len(text)} characters long; "
                               f"the most allowed is {MAX_LENGTH}")


def test_a_filter_of_exactly_the_cap_is_accepted_and_one_more_character_is_not():
    head = "close > 1 and " * 142 + "close > 0."
    text = head + "0" * (MAX_LENGTH - len(head) - 1) + "1"
    assert len(text) == MAX_LENGTH
    assert passes(text)
    with pytest.raises(ValueError, match=f"^filter is {MAX_LENGTH + 1} characters long"):
        FilterExpression(text + "1", COLUMNS)


@pytest.mark.parametrize(("text", "depth"), [
    ("not " * 31 + "close > 1", 33),
    ("not " * 450 + "close > 1", 452),
    ("-" * 40 + "close > 1", 42),
    (" + ".join(["close"] * 40) + " > 1", 41),
])
def test_a_filter_nested_deeper_than_the_cap_is_refused_naming_the_limit(text: str, depth: int):
    with pytest.raises(ValueError) as info:
        FilterExpression(text, COLUMNS)
    assert str(info.value) == (f"filter nests {depth} levels deep; the most allowed is "
                               f"{MAX_DEPTH} (a chain like 'a and b and c' counts as one level)")


@pytest.mark.parametrize("text", [
    "not " * 30 + "close > 1",
    " and ".join(["close > 1"] * 140),
    " + ".join(["close"] * 30) + " > 1",
    "-" * 30 + "close > 1",  # an even count: close itself
    "(" * 150 + "close > 1" + ")" * 150,  # brackets make no node
])
def test_filters_within_the_caps_evaluate(text: str):
    assert passes(text)


def test_brackets_nested_past_the_parsers_limit_are_a_syntax_error():
    with pytest.raises(ValueError, match="is not a valid expression: too many nested parentheses"):
        FilterExpression("(" * 250 + "close > 1" + ")" * 250, COLUMNS)


@pytest.mark.parametrize("text", [
    "signal + 1 > 0", "signal * 3 == 'BUYBUYBUY'", "-signal == 'x'", "signal - 'B' == 'UY'",
    "signal + sector == 'BUYEnergy'", "signal > 3", "close < signal",
])
def test_arithmetic_or_ordering_on_strings_is_a_miss(text: str):
    assert passes(text) is False


@pytest.mark.parametrize("text", [
    "close / 0 > 1", "close / (sma_200 - 100) > 0", "1 / (close - 120) < 0",
    "not (close / 0 > 1)",
])
def test_division_by_zero_is_a_miss(text: str):
    assert passes(text) is False


def test_division_by_zero_short_circuited_away_is_no_miss():
    assert passes("close > 1 or close / 0 > 1") is True
    assert passes("close < 1 and close / 0 > 1") is False


def test_missing_value_is_a_miss_not_an_error():
    expression = FilterExpression("close > sma_200", COLUMNS)
    assert expression({**ROW, "sma_200": None}) is False
    assert expression({**ROW, "close": math.nan}) is False


# --- Property: agreement with Python on numeric expressions ----------------------------------

NUMERIC = ("a", "b", "c", "d")
COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")
ARITH_OPS = ("+", "-", "*", "/")

constants = st.one_of(st.integers(0, 20).map(str),
                      st.sampled_from(["0.5", "2.5", "1e3", "0.0", "3.25"]))
atoms = st.one_of(st.sampled_from(NUMERIC), constants)


def _arith(children):
    binary = st.tuples(children, st.sampled_from(ARITH_OPS), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})" if len(t[0]) > 3 else f"{t[0]} {t[1]} {t[2]}")
    negated = children.map(lambda t: f"-{t}" if t[0] != "-" else f"-({t})")
    return st.one_of(binary, negated, children.map(lambda t: f"({t})"))


arithmetic = st.recursive(atoms, _arith, max_leaves=6)


@st.composite
def comparisons(draw) -> str:
    terms = draw(st.lists(arithmetic, min_size=2, max_size=4))
    ops = draw(st.lists(st.sampled_from(COMPARE_OPS), min_size=len(terms) - 1,
                        max_size=len(terms) - 1))
    text = terms[0]
    for op, term in zip(ops, terms[1:], strict=True):
        text += f" {op} {term}"
    return text


def _logic(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["and", "or"]), children).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        children.map(lambda t: f"not ({t})"),
        children.map(lambda t: f"not {t}"),
    )


expressions = st.recursive(st.one_of(comparisons(), arithmetic), _logic, max_leaves=4)
values = st.one_of(st.integers(-3, 3), st.floats(-1e6, 1e6, allow_nan=False),
                   st.sampled_from([0.0, -0.0, 0.5, 1e-300, 1e300]))
rows = st.fixed_dictionaries({name: values for name in NUMERIC})


def python_truth(text: str, row: dict) -> bool:
    try:
        return bool(eval(text, {"__builtins__": {}}, dict(row)))  # noqa: S307 - test oracle
    except ZeroDivisionError:
        return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=expressions, row=rows)
def test_agrees_with_python_on_numeric_expressions(text: str, row: dict):
    expression = FilterExpression(text, NUMERIC)
    assert expression(row) is python_truth(text, row), text


@pytest.mark.parametrize(("text", "expected"), [
    ("(a and b) > 1.5", True),
    ("(a or b) > 1.5", False),
    ("(c and a) == 0", True),
    ("(c or b) == 2", True),
])
def test_and_or_give_an_operand_like_python(text, expected):
    row = {"a": 1, "b": 2, "c": 0}
    assert FilterExpression(text, ["a", "b", "c"])(row) is expected
    assert bool(eval(text, {}, row)) is expected  # noqa: S307 - the reference semantics

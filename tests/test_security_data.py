"""One symbol's failure stays that symbol's: hostile or inconsistent data never ends a scan.

Attacks, each replayed for real: a CSV whose last close is 1.5x its high (the rating
used to leave [0, 100] and fail the whole scan), a file whose name gives an empty
symbol (a result that breaks the contract), secrets in a file's header and cells (which
errors used to quote), a file over the size budget, and a filter of thousands of nested
``not`` (a RecursionError and exit 1, not a usage error). Plus a property: no finite
OHLCV input makes the scorer leave the message contract or fail the scan.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from technic_panel import cli
from technic_panel.data import DataError, FileSource
from technic_panel.data.base import (
    OHLCV_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    snapshot_from_bars,
)
from technic_panel.engine.executors import ScanJob, scan_symbols
from technic_panel.engine.expressions import MAX_DEPTH, MAX_LENGTH
from technic_panel.engine.indicators import MIN_BARS, latest_indicators
from technic_panel.engine.scanner import Scanner
from technic_panel.engine.scoring import Strategy
from technic_panel.streaming.contract import validate_data
from technic_panel.streaming.jsonsafe import from_json
from technic_panel.vocabulary import SCORE_COLUMNS
from technic_panel.vocabulary import SCORE_COMPONENTS as COMPONENTS

SCORER = Strategy().scorer()
PLAN = ("entry", "stop", "target", "reward_risk")


class BarsSource:
    """A DataSource over bars held in memory, as any third-party source may hand them over."""

    name = "bars"

    def __init__(self, bars: dict[str, Bars]) -> None:
        self._bars = bars

    def universe(self) -> pd.DataFrame:
        """Return one row per symbol with unknown metadata."""
        symbols = list(self._bars)
        return pd.DataFrame({"symbol": symbols, "name": symbols, "sector": "Unknown",
                             "industry": "Unknown", "market_cap": np.nan,
                             "avg_dollar_volume": np.nan}, columns=list(UNIVERSE_COLUMNS))

    def snapshot(self) -> pd.DataFrame:
        """Return the last bar of every symbol."""
        rows = [snapshot_from_bars(symbol, bars) for symbol, bars in self._bars.items()]
        return pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS))

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s bars as a DataFrame."""
        return self.bars(symbol).to_frame()

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars; raise DataError for an unknown symbol."""
        if symbol not in self._bars:
            raise DataError(f"BarsSource has no symbol {symbol!r}")
        return self._bars[symbol]


def random_walk(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A calm uptrend of consistent daily bars: its 52-week range is narrow."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.004, n)))
    return pd.DataFrame({"date": pd.bdate_range("2022-01-03", periods=n), "open": close,
                         "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": rng.integers(1_000, 9_000, n).astype(float)})


def close_above_high(frame: pd.DataFrame, factor: float = 1.5) -> pd.DataFrame:
    """The attack: the last close is ``factor`` times the last high."""
    frame = frame.copy()
    frame.loc[frame.index[-1], "close"] = factor * frame["high"].iloc[-1]
    return frame


def bars_of(frame: pd.DataFrame) -> Bars:
    return Bars.from_frame(frame.set_index("date"))


def stream(capsys, *argv: str) -> tuple[int, list[dict], str]:
    """Run technic-scan in process; return its status, its parsed messages and its stderr."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, [from_json(line) for line in out.splitlines()], err


def of_type(messages: list[dict], kind: str) -> list[dict]:
    return [msg["data"] for msg in messages if msg["type"] == kind]


def assert_scores_keep_the_contract(symbol: str, row: dict) -> None:
    """The scored row passes the message contract, is finite and has a sensible trade plan."""
    validate_data("result", {"symbol": symbol, **row})
    for name, value in row.items():
        assert value is None or isinstance(value, str) or math.isfinite(value), (name, value)
    for name in COMPONENTS:
        assert 0.0 <= row[f"score_{name}"] <= 1.0, (name, row)
    plan = [row[name] for name in PLAN]
    assert all(value is None for value in plan) or None not in plan, row
    if row["entry"] is None:
        return
    entry, stop, target = row["entry"], row["stop"], row["target"]
    assert min(entry, stop, target) >= 0.0 and row["reward_risk"] >= 0.0, row
    if row["side"] == "long":
        assert stop <= entry <= target, row
    else:
        assert target <= entry <= stop, row


# --- attack 1: a close 1.5x its high ---------------------------------------------------------


def test_attack_close_above_high_fails_only_that_file_through_the_cli(tmp_path: Path, capsys):
    for seed, symbol in enumerate(["AAA", "BBB", "CCC", "DDD"]):
        frame = random_walk(seed=seed + 3)
        if symbol == "BBB":
            frame = close_above_high(frame)
        frame.to_csv(tmp_path / f"{symbol}.csv", index=False)
    status, messages, err = stream(capsys, "--source", "files", "--path", str(tmp_path))
    assert status == 0, err
    assert sorted(data["symbol"] for data in of_type(messages, "result")) == ["AAA", "CCC", "DDD"]
    errors = of_type(messages, "error")
    assert [data["symbol"] for data in errors] == ["BBB"]
    assert errors[0]["message"] == "FileSource: BBB.csv row 300: close must be <= high"
    final = of_type(messages, "final")[0]
    assert (final["status"], final["results"], final["errors"]) == ("completed", 3, 1)


def test_a_close_above_high_from_any_source_still_scores_inside_the_contract():
    frames = {"GOOD": random_walk(seed=3), "HOT": close_above_high(random_walk(seed=4)),
              "COLD": close_above_high(random_walk(seed=5), factor=0.2)}
    bars = {symbol: bars_of(frame) for symbol, frame in frames.items()}
    hot = latest_indicators(bars["HOT"], "HOT")
    assert hot["range_pos_52w"] > 1.4  # outside [0, 1]: unclipped, it once took the rating past 100
    assert 0 <= SCORER.score(hot)["tech_rating"] <= 100
    events = []
    summary = Scanner(BarsSource(bars)).run(events.append)
    assert (summary.status, summary.results, summary.errors) == ("completed", 3, 0)
    for event in events:
        assert_scores_keep_the_contract(event.symbol, dict(event.data))
    ratings = {event.symbol: event.data["tech_rating"] for event in events}
    assert ratings["HOT"] > 50 > ratings["COLD"]  # each still leans its way, and being
    assert abs(ratings["HOT"] - 50) < abs(ratings["GOOD"] - 50)  # parabolic, is pulled to 50


def test_negative_prices_score_inside_the_contract_without_a_trade_plan():
    frame = random_walk(seed=6)
    for column in ("open", "high", "low", "close"):
        frame[column] = -frame[column]
    row = latest_indicators(bars_of(frame), "NEG")
    scores = SCORER.score(row)
    assert_scores_keep_the_contract("NEG", scores)
    assert [scores[name] for name in PLAN] == [None] * 4


# --- (b): a result that breaks the contract becomes that symbol's error -----------------------


def test_a_result_breaking_the_contract_is_that_symbols_error_through_the_cli(tmp_path, capsys):
    for symbol in ("AAA", "CCC"):
        random_walk(seed=len(symbol) + ord(symbol[0])).to_csv(tmp_path / f"{symbol}.csv",
                                                              index=False)
    random_walk(seed=9).to_csv(tmp_path / " .csv", index=False)  # its symbol is ""
    status, messages, err = stream(capsys, "--source", "files", "--path", str(tmp_path))
    assert status == 0, err
    assert sorted(data["symbol"] for data in of_type(messages, "result")) == ["AAA", "CCC"]
    errors = of_type(messages, "error")
    assert len(errors) == 1
    assert (errors[0]["symbol"], errors[0]["error"]) == ("", "contract")
    assert errors[0]["message"] == (
        "the result for symbol '' breaks the message contract: "
        "message.data.symbol must be a non-empty string, not ''")
    assert of_type(messages, "final")[0]["status"] == "completed"


# --- the property: no finite input leaves the contract or fails the scan ----------------------


FINITE = st.floats(allow_nan=False, allow_infinity=False)
LEVELS = st.sampled_from([1e-300, 1e-9, 1e-3, 1.0, 50.0, 1e6, 1e150, 1e300])


@st.composite
def walks(draw) -> Bars:
    """Random walks at any level and sign, with any spread (inconsistent OHLC too) and spikes."""
    n = draw(st.integers(MIN_BARS, MIN_BARS + 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sign = draw(st.sampled_from([1.0, 1.0, 1.0, -1.0, 0.0]))
    volatility = draw(st.floats(0.0005, 0.2))
    close = sign * draw(LEVELS) * np.exp(np.cumsum(rng.normal(0, volatility, n)))
    spread = draw(st.floats(-1.0, 1.0))  # negative: the high below the low
    volume = draw(st.sampled_from([1.0, 1.0, 1.0, 0.0, -1.0])) * rng.integers(0, 10**6, n)
    columns = {"open": close * (1 + spread * rng.uniform(-1, 1, n)),
               "high": close * (1 + spread * rng.random(n)),
               "low": close * (1 - spread * rng.random(n)), "close": close, "volume": volume}
    for index, column, value in draw(st.lists(
            st.tuples(st.integers(0, n - 1), st.sampled_from(OHLCV_COLUMNS), FINITE),
            max_size=6)):
        columns[column][index] = value
    columns["close"][-1] *= draw(st.floats(-3.0, 3.0))
    return make_bars(columns, n)


@st.composite
def arbitrary(draw) -> Bars:
    """Five arrays of any finite floats: zero, negative, subnormal, huge."""
    n = draw(st.integers(MIN_BARS, MIN_BARS + 10))
    columns = {name: draw(hnp.arrays(np.float64, n, elements=FINITE)) for name in OHLCV_COLUMNS}
    return make_bars(columns, n)


def make_bars(columns: dict[str, np.ndarray], n: int) -> Bars:
    arrays = {name: np.nan_to_num(np.asarray(values, dtype=np.float64), posinf=1e308,
                                  neginf=-1e308)
              for name, values in columns.items()}
    dates = np.arange(n).astype("datetime64[D]").astype("datetime64[ns]")
    return Bars(dates, *(np.ascontiguousarray(arrays[name]) for name in OHLCV_COLUMNS))


ANY_BARS = st.one_of(walks(), arbitrary())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_BARS)
def test_no_finite_bars_make_the_scorer_leave_the_contract(bars: Bars):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow on 1e300 prices
        try:
            row = latest_indicators(bars, "X")
        except DataError:
            row = None  # not scorable: the symbol's own error
        [(symbol, ok, outcome)] = scan_symbols(ScanJob(BarsSource({"X": bars}), SCORER), ["X"])
    assert symbol == "X"
    if row is None:
        assert (ok, outcome["error"]) == (False, "data"), outcome
        return
    assert ok, outcome  # never an exception from scoring
    assert_scores_keep_the_contract("X", SCORER.score(row))
    assert outcome == {**row, **SCORER.score(row)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ANY_BARS, min_size=1, max_size=4))
def test_no_finite_bars_fail_a_scan(many: list[Bars]):
    symbols = [f"S{i}" for i in range(len(many))]
    events = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = Scanner(BarsSource(dict(zip(symbols, many, strict=True)))).run(events.append)
    assert summary.status == "completed"
    assert sorted(event.symbol for event in events) == symbols
    for event in events:
        assert event.kind in ("result", "error")
        if event.kind == "result":
            validate_data("result", dict(event.data))
            assert_scores_keep_the_contract(
                event.symbol, {key: event.data[key] for key in SCORE_COLUMNS})
        else:
            validate_data("error", dict(event.data))
            assert event.data["error"] == "data", event.data


# --- errors never quote what the file holds ---------------------------------------------------


SECRET_FILES = {
    "HEADER.csv": "user,password,apikey\nbob,hunter2,AKIA-s3cr3t\n",
    "CELL.csv": "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,s3cr3t-value,9\n",
    "DATE.csv": "date,open,high,low,close,volume\ns3cr3t-date,1,2,0.5,1,9\n",
    "EXTRA.csv": "date,open,high,low,close,volume,password\n2024-01-02,1,2,0.5,,9,hunter2\n",
}
SECRETS = ("password", "apikey", "hunter2", "s3cr3t", "AKIA", "bob")


def test_errors_name_file_row_and_rule_but_quote_no_cell_or_header(tmp_path: Path, capsys):
    for name, text in SECRET_FILES.items():
        (tmp_path / name).write_text(text)
    random_walk().to_csv(tmp_path / "GOOD.csv", index=False)
    source = FileSource(tmp_path)
    messages = {}
    for symbol in ("HEADER", "CELL", "DATE", "EXTRA"):
        with pytest.raises(DataError) as info:
            source.bars(symbol)
        messages[symbol] = str(info.value)
    assert messages == {
        "HEADER": "FileSource: HEADER.csv lacks the columns date, open, high, low, close, volume "
                  "(needs date, open, high, low, close, volume; the date may also be called "
                  "datetime or timestamp)",
        "CELL": "FileSource: CELL.csv row 1: close is not a number",
        "DATE": "FileSource: DATE.csv row 1: date is not a date like 2024-01-31",
        "EXTRA": "FileSource: EXTRA.csv row 1: close is empty",
    }
    status, stream_messages, err = stream(capsys, "--source", "files", "--path", str(tmp_path))
    assert status == 0
    assert [data["symbol"] for data in of_type(stream_messages, "result")] == ["GOOD"]
    errors = {data["symbol"]: data["message"] for data in of_type(stream_messages, "error")}
    assert errors == messages
    for line in [*errors.values(), err]:
        assert not [secret for secret in SECRETS if secret in line], line


def test_an_unreadable_file_names_the_exception_type_not_its_text(tmp_path: Path):
    (tmp_path / "ACME.parquet").write_bytes(b"PAR1 s3cr3t not really parquet")
    with pytest.raises(DataError) as info:
        FileSource(tmp_path).bars("ACME")
    assert str(info.value).startswith("FileSource: ACME.parquet cannot be read as Parquet (")
    assert "s3cr3t" not in str(info.value)


# --- attack 3: a file too large for the budget ------------------------------------------------


def test_a_file_over_max_file_bytes_fails_only_its_symbol_before_it_is_read(tmp_path: Path):
    for seed, symbol in enumerate(["AAA", "CCC"]):
        random_walk(seed=seed + 3).to_csv(tmp_path / f"{symbol}.csv", index=False)
    budget = max((tmp_path / f"{s}.csv").stat().st_size for s in ("AAA", "CCC"))
    big = tmp_path / "BIG.csv"
    big.write_text("not,a,price,file\n" + "x" * budget)  # unreadable, were it read
    size = big.stat().st_size
    source = FileSource(tmp_path, max_file_bytes=budget)
    with pytest.raises(DataError) as info:
        source.bars("BIG")
    assert str(info.value) == (f"FileSource: BIG.csv is {size:,} bytes; the most allowed is "
                               f"{budget:,} (FileSource.max_file_bytes)")
    events = []
    summary = Scanner(source).run(events.append)
    assert (summary.status, summary.results, summary.errors) == ("completed", 2, 1)
    [error] = [event for event in events if event.kind == "error"]
    assert (error.symbol, error.data["message"]) == ("BIG", str(info.value))
    assert FileSource(tmp_path, max_file_bytes=size).bars("AAA") is not None
    with pytest.raises(DataError, match=r"BIG\.csv lacks the columns"):
        FileSource(tmp_path, max_file_bytes=size).bars("BIG")  # at the budget: read


def test_a_long_table_over_max_file_bytes_fails_the_whole_source(tmp_path: Path):
    long = pd.concat([random_walk(seed=3).assign(symbol="AAA"),
                      random_walk(seed=4).assign(symbol="BBB")])
    path = tmp_path / "prices.csv"
    long.to_csv(path, index=False)
    size = path.stat().st_size
    source = FileSource(path, max_file_bytes=size - 1)
    message = (rf"^FileSource: prices\.csv is {size:,} bytes; the most allowed is {size - 1:,} "
               r"\(FileSource\.max_file_bytes\)$")
    for method in (source.symbols, source.universe, source.snapshot):
        with pytest.raises(DataError, match=message):
            method()
    assert FileSource(path, max_file_bytes=size).symbols() == ["AAA", "BBB"]


def test_a_universe_file_over_max_file_bytes_is_refused_at_construction(tmp_path: Path):
    (tmp_path / "prices").mkdir()
    random_walk().to_csv(tmp_path / "prices" / "AAA.csv", index=False)
    meta = tmp_path / "meta.csv"
    meta.write_text("symbol,sector\nAAA,Energy\n")
    with pytest.raises(ValueError) as info:
        FileSource(tmp_path / "prices", universe_path=meta, max_file_bytes=10)
    assert str(info.value) == ("FileSource.universe_path is unusable: meta.csv is 25 bytes; the "
                               "most allowed is 10 (FileSource.max_file_bytes)")
    assert FileSource(tmp_path / "prices", universe_path=meta,
                      max_file_bytes=25).universe()["sector"].tolist() == ["Energy"]


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True])
def test_max_file_bytes_must_be_a_positive_integer(tmp_path: Path, value):
    random_walk().to_csv(tmp_path / "AAA.csv", index=False)
    with pytest.raises(ValueError, match=rf"^FileSource\.max_file_bytes must be a positive "
                                         rf"integer or None, not {value!r}$"):
        FileSource(tmp_path, max_file_bytes=value)


# --- attack 4: a filter of thousands of nested nots -------------------------------------------


@pytest.mark.parametrize(("nots", "words"), [
    (5000, f"filter is 20010 characters long; the most allowed is {MAX_LENGTH}"),
    (200, f"filter nests 202 levels deep; the most allowed is {MAX_DEPTH}"),
])
def test_deeply_nested_filter_is_a_usage_error_in_the_cli(capsys, nots: int, words: str):
    status = cli.main(["--symbols", "5", "--filter", "not " * nots + "rsi_14 > 1"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("technic-scan: --filter: "), err
    assert words in lines[0]

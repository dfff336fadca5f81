"""Index universes shipped offline (pytickersymbols), and a user's own symbol lists.

``index_universe("sp500")`` returns one row per member with ``symbol``, ``name``,
``sector``, ``industry`` and ``market_cap`` (NaN: pytickersymbols has none), ready for
:meth:`BarStore.set_universe` or a universe file that ``FileSource(universe_path=...)``
reads. No network is needed: the member lists ship inside the pytickersymbols package,
as of its release.

Symbols are Yahoo Finance symbols, one per company:

- US indices (S&P 100/500/600, NASDAQ 100, Dow Jones): the company's primary US
  ticker, class shares in Yahoo's spelling (``BRK.B`` is ``BRK-B``).
- Other indices: the listing on the index's home exchange (``SAP.DE``, ``AIR.PA``,
  ``7203.T``); for German indices a Xetra code pytickersymbols gives bare (and lists on
  Frankfurt) gets ``.DE``. A company with no home listing is left out, not replaced by a
  foreign or over-the-counter listing whose prices and volumes would mislead;
  :attr:`IndexMembers.skipped` names it. EURO STOXX 50 spans exchanges: each member keeps
  its own home symbol.

Sectors are the 11 GICS sectors the dashboard filters on. pytickersymbols gives each
company a free list of industry labels (GICS names for the S&P indices, Refinitiv's
TRBC economic sectors for European ones, Wikipedia phrases); a label that names a
sector decides (GICS names first), else each label votes by keyword and the most
voted sector wins; a company nothing matches is ``"Unknown"``. The industry is the
company's most widely used label that does not name a sector (a common term, not a
one-off phrase).
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from technic_panel.data.synthetic import SECTORS

logger = logging.getLogger(__name__)

UNKNOWN = "Unknown"
UNIVERSE_FILE_COLUMNS = ("symbol", "name", "sector", "industry", "market_cap")
"""Columns of an index universe, in this order (the universe table's own columns)."""
_US = ""
_HOME_SUFFIX: dict[str, str | None] = {
    "S&P 100": _US, "S&P 500": _US, "S&P 600": _US, "NASDAQ 100": _US, "DOW JONES": _US,
    "DAX": ".DE", "MDAX": ".DE", "SDAX": ".DE", "TecDAX": ".DE", "CAC_40": ".PA",
    "CAC Mid 60": ".PA", "AEX": ".AS", "BEL 20": ".BR", "FTSE 100": ".L", "IBEX 35": ".MC",
    "NIKKEI 225": ".T", "OMX Helsinki 25": ".HE", "OMX Stockholm 30": ".ST",
    "Switzerland 20": ".SW", "EURO STOXX 50": None,
}
"""Each index's home exchange as a Yahoo suffix; "" for US listings, None for several."""
_NAMES = {"DOW JONES": "dow30", "Switzerland 20": "smi", "OMX Helsinki 25": "omxh25",
          "OMX Stockholm 30": "omxs30"}
"""Short names that differ from the index's name without spaces and signs (``sp500``)."""

_GICS = {name.lower(): name for name in SECTORS}
_SECTOR_WORDS = {
    "technology": "Information Technology", "healthcare": "Health Care",
    "financial services": "Financials", "finance": "Financials",
    "consumer cyclicals": "Consumer Discretionary", "consumer cyclical": "Consumer Discretionary",
    "consumer non-cyclicals": "Consumer Staples", "consumer defensive": "Consumer Staples",
    "basic materials": "Materials", "basic resources": "Materials",
    "telecommunications services": "Communication Services",
    "industrial goods": "Industrials",
}
"""Whole labels naming a sector in other taxonomies (TRBC, Yahoo, ICB), onto GICS."""
_KEYWORDS = (
    ("Consumer Staples", r"food & drug|drug retail|grocer|supermarket"),
    ("Financials", r"insur|versicher|bank|capital market|asset manage|invest|broker|financ"
                   r"|lending|credit|mortgage|securities|exchange|fund|private equity|leasing"
                   r"|payment|beteiligung|fintech"),
    ("Real Estate", r"reit|real estate|realty|immobilien|propert|apartment|self storage"),
    ("Health Care", r"pharma|biotech|medic|health|diagnos|dental|ophthalm|life science"
                    r"|laborator|pflege|caregiv|drug|biopharm|medizin"),
    ("Utilities", r"utilit|electric power|electricity|power generation|\bwater\b|versorger"
                  r"|ipps|renewable|wind ?energ"),
    ("Materials", r"construction material|building material|chemi|steel|stahl|metal|mining"
                  r"|mineral|\bgold\b|alumin|paper|pulp|forest|packag|container|glass|ceramic"
                  r"|cement|fertili|rubber|\bgases\b"),
    ("Energy", r"\boil|\bgas\b|petrol|fossil|coal|energy|refin|drilling|pipeline"),
    ("Communication Services", r"telecom|telekom|wireless|media|medien|broadcast|publish"
                               r"|entertainment|advertis|marketing|video game|social network"
                               r"|cable|satellite|movie|music|television|internet content"),
    ("Information Technology", r"software|semiconductor|halbleiter|computer|information tech"
                               r"|technolog|electronic|cloud|saas|cyber|network|data process"
                               r"|internet|\bit\b|it-|edp|digital|hardware|instrument"),
    ("Consumer Staples", r"food|beverage|drink|brew|distill|tobacco|household product|personal"
                         r"|cosmetic|toiletr|soft drink|agricultur|fish|farm|getränke|pet food"
                         r"|confection|consumer goods"),
    ("Consumer Discretionary", r"retail|\bauto(?!mation)|automobil|\bcar\b|apparel|textile"
                               r"|footwear|luxury|hotel|restaurant|leisure|travel|touris"
                               r"|casino|gambl|lotter|hospitality|home ?build|housebuild"
                               r"|home construction|furniture|e-commerce|consumer electronic"
                               r"|department store|sport|toys|education|cruise|lodging|fashion"
                               r"|cloth|tire|gaming"),
    ("Industrials", r"aerospace|defen|machine|industrial|engineer|construct|transport|logisti"
                    r"|rail|airline|air freight|aviation|shipping|freight|courier|trucking"
                    r"|airport|conglomerate|electrical|building product|employ|staffing"
                    r"|professional|commercial service|consult|waste|environmental|security"
                    r"|trading compan|sogo shosha|heavy equipment|manufactur|hvac|printing"
                    r"|support service|business service|outsourc|infrastructure|anlagenbau"
                    r"|luftfahrt|rüstung|holding|ordnance|inspection|certification|personnel"),
)
"""Keyword rules (regular expressions on a lower-cased label), the first match voting."""
_RULES = tuple((sector, re.compile(pattern)) for sector, pattern in _KEYWORDS)
_SYMBOL = re.compile(r"^[A-Z0-9^][A-Z0-9.\-=&_]{0,24}$")
"""A symbol of a user's list: Yahoo's alphabet (``BRK-B``, ``SAP.DE``, ``^GSPC``, ``EUR=X``)."""


@dataclass(frozen=True)
class IndexMembers:
    """An index's members as a universe frame, and the companies left out (and why)."""

    index: str
    """The index as pytickersymbols names it (``"S&P 500"``)."""
    frame: pd.DataFrame
    """One row per member with :data:`UNIVERSE_FILE_COLUMNS`, sorted by symbol."""
    skipped: tuple[str, ...]
    """``"company: reason"`` for each member left out."""


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@functools.cache
def _indices() -> dict[str, dict[str, Any]]:
    """Return pytickersymbols' indices by short name: name, companies and label pools."""
    from pytickersymbols import PyTickerSymbols

    tickers = PyTickerSymbols()
    return {_NAMES.get(name, _key(name)): {
        "name": name, "companies": list(tickers.get_stocks_by_index(name))}
        for name in tickers.get_all_indices()}


@functools.cache
def _pools() -> dict[str, list[str]]:
    """Every industry label of each company, pooled over all indices by ISIN and by name.

    The same company carries GICS labels in the S&P lists and TRBC ones in NASDAQ 100,
    so pooling lets the GICS sector decide wherever any index gives one.
    """
    pools: dict[str, list[str]] = {}
    for index in _indices().values():
        for company in index["companies"]:
            for key in _identities(company):
                pools.setdefault(key, []).extend(company.get("industries") or [])
    return pools


def _identities(company: Mapping[str, Any]) -> list[str]:
    return [f"isin:{isin}" for isin in company.get("isins") or []] + [
        f"name:{company.get('name')}"]


def _labels(company: Mapping[str, Any]) -> list[str]:
    """Return the company's own labels, then those other indices give it, each once."""
    pools = _pools()
    pooled = [label for key in _identities(company) for label in pools.get(key, [])]
    return [label for label in dict.fromkeys([*(company.get("industries") or []), *pooled])
            if label]


@functools.cache
def index_names() -> list[str]:
    """Return the short names of the indices with members to offer, sorted (``sp500``...).

    An index none of whose members pytickersymbols lists on its home exchange (CAC Mid
    60 in pytickersymbols 1.17) is left out.
    """
    return sorted(name for name in _indices() if not index_members(name).frame.empty)


def index_members(name: str) -> IndexMembers:
    """Return index ``name``'s members (short name, or pytickersymbols' own name).

    Raises
    ------
    ValueError
        For a name that is no index, listing the names there are.
    """
    key = _key(name)
    index = next((value for short, value in _indices().items()
                  if key in (short, _key(value["name"]))), None)
    if index is None:
        raise ValueError(f"universe {name!r} is not an index pytickersymbols ships; use one of "
                         f"{', '.join(index_names())} (or a file of symbols)")
    suffix = _HOME_SUFFIX.get(index["name"])
    rows, skipped, seen = [], [], set()
    for company in index["companies"]:
        symbol = _listing(company, suffix)
        if symbol is None or symbol in seen:
            reason = "no listing on the index's home exchange" if symbol is None else (
                f"{symbol} already stands for another member")
            skipped.append(f"{company.get('name')}: {reason}")
            continue
        seen.add(symbol)
        labels = _labels(company)
        sector = sector_for(labels)
        rows.append({"symbol": symbol, "name": company.get("name") or symbol,
                     "sector": sector, "industry": _industry(labels, sector)})
    if skipped:
        logger.info("%s: %d members left out: %s", index["name"], len(skipped),
                    "; ".join(skipped))
    frame = pd.DataFrame(rows, columns=list(UNIVERSE_FILE_COLUMNS[:4]))
    frame["market_cap"] = np.nan
    frame = frame.sort_values("symbol", ignore_index=True)
    return IndexMembers(index["name"], frame, tuple(skipped))


def index_universe(name: str) -> pd.DataFrame:
    """Return index ``name``'s members with :data:`UNIVERSE_FILE_COLUMNS`, offline.

    Raises
    ------
    ValueError
        For a name that is no index, or an index with no member to offer.

    Examples
    --------
    >>> frame = index_universe("dow30")
    >>> len(frame), sorted(set(frame["sector"]) - set(SECTORS))
    (30, [])
    """
    members = index_members(name)
    if members.frame.empty:
        raise ValueError(f"universe {name!r}: pytickersymbols lists none of the "
                         f"{len(members.skipped)} members of {members.index} on its home "
                         "exchange; use a file of symbols instead")
    return members.frame


def _listing(company: Mapping[str, Any], suffix: str | None) -> str | None:
    """Return the Yahoo symbol of ``company``'s listing chosen as the module docstring says."""
    primary = (company.get("symbol") or "").strip().upper()
    if suffix == _US:
        return primary.replace(".", "-") or None
    if suffix is None:
        return primary or None
    listed = [str(s.get("yahoo") or "").upper() for s in company.get("symbols") or []]
    if primary.endswith(suffix):
        return primary.split(".")[0] + suffix  # "AIR.PA.DE" lists Airbus on Xetra: AIR.DE
    home = [symbol for symbol in listed if symbol.endswith(suffix)]
    if home:
        return home[0]
    if suffix == ".DE" and primary and f"{primary}.F" in listed:
        return primary + suffix
    return None


def _rule(label: str) -> int | None:
    """Return the index of the first keyword rule ``label`` (lower-cased) matches."""
    return next((i for i, (_, pattern) in enumerate(_RULES) if pattern.search(label)), None)


def sector_for(labels: Iterable[str]) -> str:
    """Return the GICS sector of a company's industry ``labels``, or ``"Unknown"``.

    Examples
    --------
    >>> sector_for(["Conglomerate", "Industrial Conglomerates", "Industrials"])
    'Industrials'
    >>> sector_for(["Consumer Cyclicals", "Footwear"]), sector_for(["Semiconductor equipment"])
    ('Consumer Discretionary', 'Information Technology')
    """
    labels = [label.strip() for label in labels]
    for named in ([label for label in labels if label in SECTORS],
                  [_SECTOR_WORDS[key] for key in map(str.lower, labels) if key in _SECTOR_WORDS],
                  [_GICS[key] for key in map(str.lower, labels) if key in _GICS]):
        if named:
            return Counter(named).most_common(1)[0][0]
    votes = Counter(rule for rule in map(_rule, map(str.lower, labels)) if rule is not None)
    if not votes:
        return UNKNOWN
    top = max(votes.values())
    return _RULES[min(rule for rule, count in votes.items() if count == top)][0]


@functools.cache
def _label_counts() -> Counter[str]:
    """How many companies across every index carry each industry label."""
    return Counter(label for index in _indices().values() for company in index["companies"]
                   for label in company.get("industries") or [] if label)


def _industry(labels: list[str], sector: str) -> str:
    """Return the most widely used label naming no sector, preferring those voting ``sector``."""
    plain = [label for label in labels if label.strip().lower() not in _GICS
             and label.strip().lower() not in _SECTOR_WORDS]
    agreeing = [label for label in plain
                if (rule := _rule(label.lower())) is not None and _RULES[rule][0] == sector]
    if not plain:
        return UNKNOWN
    counts = _label_counts()
    return min(agreeing or plain, key=lambda label: (-counts[label], len(label), label))


def read_symbol_list(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a user's universe: one symbol a line, or a CSV/Parquet file with a symbol column.

    A table's ``name``, ``sector``, ``industry`` and ``market_cap`` columns are kept (and
    any other column, as the store keeps a user's extra columns); sector names of other
    taxonomies (``Technology``, ``Healthcare``...) become GICS names. Blank lines and
    lines starting with ``#`` are skipped; symbols are upper-cased and kept once.

    Raises
    ------
    ValueError
        Naming the file, the line and the rule, for an unreadable file, a table without
        a symbol column, a malformed symbol or a list without symbols.
    """
    file = Path(path)
    label = f"universe file {file}"
    try:
        frame, first_row = _read_list(file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{label} cannot be read ({type(exc).__name__}); give one symbol a "
                         "line, or a CSV/Parquet file with a symbol column") from exc
    names = {str(column).strip().lower(): column for column in frame.columns}
    if "symbol" not in names:
        raise ValueError(f"{label} has no symbol column; a table needs one (and may have "
                         "name, sector, industry, market_cap)")
    frame = frame.rename(columns={names[key]: key for key in UNIVERSE_FILE_COLUMNS
                                  if key in names})
    frame["symbol"] = frame["symbol"].astype("string").str.strip().str.upper()
    frame = frame[frame["symbol"].notna() & (frame["symbol"] != "")]
    bad = ~frame["symbol"].str.fullmatch(_SYMBOL.pattern).astype(bool)
    if bad.any():
        row = int(frame.index[int(np.argmax(bad.to_numpy()))]) + first_row
        raise ValueError(f"{label} line {row}: a symbol is letters, digits and . - ^ = & _ "
                         "(at most 25, e.g. AAPL, BRK-B, SAP.DE)")
    if frame.empty:
        raise ValueError(f"{label} holds no symbols; give one symbol a line")
    if "sector" in frame:
        frame["sector"] = frame["sector"].map(_gics_or_given)
    frame = frame.drop_duplicates("symbol", keep="first").astype({"symbol": object})
    return frame.reset_index(drop=True)


def _read_list(file: Path) -> tuple[pd.DataFrame, int]:
    """Return the file's rows and the line number of its first row (header counted)."""
    suffix = file.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(file)
        named_index = not isinstance(frame.index, pd.RangeIndex)
        return (frame.reset_index() if named_index else frame), 1
    text = file.read_text(encoding="utf-8-sig")
    header = next((line for line in text.splitlines() if line.strip()), "")
    if "," in header:  # a table: it must have a symbol column
        return pd.read_csv(file, skip_blank_lines=True), 2
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    kept = [(number, line) for number, line in lines if line and not line.startswith("#")]
    frame = pd.DataFrame({"symbol": [line for _, line in kept]},
                         index=[number - 1 for number, _ in kept])
    return frame, 1


def _gics_or_given(value: object) -> object:
    """Map a sector name of another taxonomy onto GICS; keep any other value as given."""
    if not isinstance(value, str):
        missing = value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
        return UNKNOWN if missing else value
    text = value.strip().lower()
    return _GICS.get(text) or _SECTOR_WORDS.get(text) or value.strip()


def load_universe(spec: str | PathLike[str]) -> pd.DataFrame:
    """Return the universe ``spec`` names: an existing file (a user's list), else an index."""
    path = Path(spec)
    if path.is_file():
        return read_symbol_list(path)
    if path.suffix or len(path.parts) > 1:
        raise ValueError(f"universe {str(spec)!r} is neither an existing file nor an index; "
                         f"use one of {', '.join(index_names())} or a file of symbols")
    return index_universe(str(spec))


def write_universe_file(frame: pd.DataFrame, path: str | PathLike[str]) -> Path:
    """Write ``frame`` as a universe file (CSV, or Parquet for .parquet/.pq); return its path."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"universe file {file} must end in .csv, .parquet or .pq (the formats "
                         "FileSource(universe_path=...) reads)")
    file.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(file, index=False)
    else:
        frame.to_parquet(file, index=False)
    return file

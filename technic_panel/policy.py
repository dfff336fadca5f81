"""ServerPolicy: what remote clients (the API, the served dashboard) may ask of this server.

The operator sets it through environment variables, read by
:meth:`ServerPolicy.from_env`; a request never widens it. Settings that name server
resources (a folder, a Dask scheduler, a pool size) are checked here, after paths are
resolved (symlinks, ``..``), and refusals never reveal whether something outside the
policy exists. The notebook and the CLI run as the user and use no policy
(``policy=None``): they keep full freedom.

=============================  ==========================================================
``TECHNIC_DATA_DIRS``          folders ``path`` and ``universe_path`` may point into
                               (``os.pathsep``-separated); default none: ``source='files'``
                               and ``source='store'`` are refused
``TECHNIC_DASK_SCHEDULER``     the only Dask scheduler the server uses; default a local
                               cluster. A request's ``scheduler`` is always refused
``TECHNIC_EXECUTORS``          executors a request may choose (comma-separated);
                               default ``thread,process,dask``
``TECHNIC_MAX_WORKERS``        most threads a scan may ask for (default 32)
``TECHNIC_MAX_PROCESSES``      most processes of the shared process pool and local Dask
                               cluster (default: the number of cores)
``TECHNIC_MAX_SYMBOLS``        largest synthetic universe (default 100,000)
``TECHNIC_MAX_SCANS``          most scans held, running or finished (default 4)
``TECHNIC_INACTIVITY_TIMEOUT`` seconds an unwatched scan is kept after its end, or run
                               without anyone polling it (default 300)
``TECHNIC_MAX_HELD_MESSAGES``  most messages all held scans keep (default 100,000, about
                               1.4 GB); the oldest finished, unwatched scans go first
``TECHNIC_MAX_FILE_MB``        largest price file a ``source='files'`` scan reads, in MB
                               (default 256); a store is memory-mapped, never read whole
``TECHNIC_API_TOKEN``          the token(s) the API and the dashboard require, comma-
                               separated, one per client (unset: none). A client sees and
                               stops only the scans started with its own token
``TECHNIC_ALLOWED_ORIGINS``    extra browser origins (``host:port``, comma-separated)
                               allowed to open the API's WebSocket
=============================  ==========================================================
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from technic_panel.vocabulary import EXECUTOR_KINDS


class PolicyError(ValueError):
    """A setting the server's policy refuses; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _int_env(env: Mapping[str, str], name: str, default: int, low: int = 1) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or int(text) < low:
        raise ValueError(f"{name} must be an integer >= {low}, not {text!r}")
    return int(text)


def _seconds_env(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a number of seconds > 0, not {text!r}")
    return value


def _list_env(env: Mapping[str, str], name: str, sep: str = ",") -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(sep) if part.strip())


@dataclass(frozen=True)
class ServerPolicy:
    """The operator's limits on remote requests; see the module docs for each variable.

    Parameters
    ----------
    data_dirs
        Resolved folders a request's ``path`` may point into; empty refuses files.
    dask_scheduler
        The scheduler every Dask scan of this server uses (None: a LocalCluster).
    executors
        Executors a request may choose.
    max_workers, max_processes
        Most threads of one scan; most processes of the shared pool and cluster.
    max_symbols
        Largest synthetic universe.
    max_scans, max_held_messages
        Most scans held (running or finished) and messages they keep together.
    inactivity_timeout
        Seconds an unwatched scan is kept after its end (or run unpolled).
    max_file_bytes
        Largest data file read; a larger one fails its symbol.
    token
        The token(s) remote clients must send, comma-separated (None: no token).
    allowed_origins
        Extra ``host:port`` origins allowed to open the API's WebSocket.
    """

    data_dirs: tuple[Path, ...] = ()
    dask_scheduler: str | None = None
    executors: tuple[str, ...] = EXECUTOR_KINDS
    max_workers: int = 32
    max_processes: int = os.cpu_count() or 1
    max_symbols: int = 100_000
    max_scans: int = 4
    max_held_messages: int = 100_000
    inactivity_timeout: float = 300.0
    max_file_bytes: int = 256 * 2**20
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.executors if kind not in EXECUTOR_KINDS]
        if unknown or not self.executors:
            raise ValueError(f"TECHNIC_EXECUTORS must list some of {', '.join(EXECUTOR_KINDS)}, "
                             f"not {','.join(self.executors)!r}")
        object.__setattr__(self, "data_dirs", tuple(Path(p).resolve() for p in self.data_dirs))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerPolicy:
        """Read the policy from ``env`` (default ``os.environ``); ValueError names a bad one."""
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            data_dirs=tuple(Path(p) for p in _list_env(env, "TECHNIC_DATA_DIRS", os.pathsep)),
            dask_scheduler=env.get("TECHNIC_DASK_SCHEDULER", "").strip() or None,
            executors=_list_env(env, "TECHNIC_EXECUTORS") or EXECUTOR_KINDS,
            max_workers=_int_env(env, "TECHNIC_MAX_WORKERS", defaults.max_workers),
            max_processes=_int_env(env, "TECHNIC_MAX_PROCESSES", defaults.max_processes),
            max_symbols=_int_env(env, "TECHNIC_MAX_SYMBOLS", defaults.max_symbols),
            max_scans=_int_env(env, "TECHNIC_MAX_SCANS", defaults.max_scans),
            max_held_messages=_int_env(env, "TECHNIC_MAX_HELD_MESSAGES",
                                       defaults.max_held_messages),
            inactivity_timeout=_seconds_env(env, "TECHNIC_INACTIVITY_TIMEOUT", 300.0),
            max_file_bytes=_int_env(env, "TECHNIC_MAX_FILE_MB", 256) * 2**20,
            token=env.get("TECHNIC_API_TOKEN") or None,
            allowed_origins=tuple(o.lower() for o in _list_env(env, "TECHNIC_ALLOWED_ORIGINS")))

    @property
    def tokens(self) -> tuple[str, ...]:
        """The accepted tokens, one per client (empty: none needed)."""
        return tuple(t.strip() for t in (self.token or "").split(",") if t.strip())

    def owner_of(self, token: str | None) -> str | None:
        """Return the identity ``token`` gives (None if no token is required or it is wrong).

        The identity is a digest, so it can be shown and logged without the token.
        """
        if token is None:
            return None
        for accepted in self.tokens:
            if hmac.compare_digest(token.encode(), accepted.encode()):
                return "client_" + hashlib.sha256(accepted.encode()).hexdigest()[:16]
        return None

    def data_path(self, path: str) -> Path:
        """Return ``path`` resolved, if it lies inside an allowed folder; else PolicyError.

        The message is the same whether or not the path exists outside the folders.
        """
        refused = PolicyError("ScanConfig.path must lie inside a folder the server's operator "
                              "allows (TECHNIC_DATA_DIRS)" + ("" if self.data_dirs else
                              "; this server allows none, so source='files' and source='store' "
                              "are refused"),
                              field="path")
        if not self.data_dirs:
            raise refused
        try:
            resolved = Path(path).resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise refused from exc
        if not any(resolved == root or root in resolved.parents for root in self.data_dirs):
            raise refused
        if not resolved.exists():
            raise PolicyError("ScanConfig.path names nothing inside the allowed folders",
                              field="path")
        return resolved

    def check_executor(self, executor: str, workers: int | None, scheduler: str | None) -> None:
        """Raise PolicyError if the executor, its worker count or a scheduler is refused."""
        if scheduler:
            raise PolicyError("ScanConfig.scheduler is set by the server's operator "
                              "(TECHNIC_DASK_SCHEDULER), never by a request; leave it out",
                              field="scheduler")
        if executor not in self.executors:
            raise PolicyError(f"ScanConfig.executor must be one of {', '.join(self.executors)} "
                              f"on this server, not {executor!r}", field="executor")
        limit = self.max_workers if executor == "thread" else self.max_processes
        if workers is not None and workers > limit:
            raise PolicyError(f"ScanConfig.workers must be at most {limit} for "
                              f"executor={executor!r} on this server, not {workers}",
                              field="workers")

    def check_symbols(self, symbols: int) -> None:
        """Raise PolicyError if a synthetic universe of ``symbols`` is larger than allowed."""
        if symbols > self.max_symbols:
            raise PolicyError(f"ScanConfig.symbols must be at most {self.max_symbols} on this "
                              f"server, not {symbols}", field="symbols")

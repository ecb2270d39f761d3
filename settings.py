"""Settings: one frozen value built once at start-up from a `KEY=value` file and the environment.

Order of precedence: defaults < config file (`--config FILE`) < environment variables. Every
problem found is reported as one line naming the setting; `main.py` prints them and exits 2.
Secrets are held in `Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from messages.models import parse_trail_start

MAINNET_URL = "https://api.bybit.com"
TESTNET_URL = "https://api-testnet.bybit.com"
DEMO_URL = "https://api-demo.bybit.com"
DEMO_TESTNET_URL = "https://api-demo-testnet.bybit.com"
# Stream hosts by REST host (bybit-v5.md section 5); demo accounts have private streams only, their
# public data is mainnet's (testnet's for demo on testnet).
STREAM_HOSTS = {
    MAINNET_URL: ("stream.bybit.com", "stream.bybit.com"),
    TESTNET_URL: ("stream-testnet.bybit.com", "stream-testnet.bybit.com"),
    DEMO_URL: ("stream-demo.bybit.com", "stream.bybit.com"),
    DEMO_TESTNET_URL: ("stream-demo-testnet.bybit.com", "stream-testnet.bybit.com"),
}


class SettingsError(Exception):
    """Invalid settings. `problems` holds one line per problem, each naming its setting."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class Secret:
    """A credential. Shown as '***' everywhere; `reveal()` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self):  # pickling would write the value somewhere: refuse
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, slots=True)
class Account:
    """Credentials of one exchange account ("main" or "mirror")."""

    name: str
    api_key: Secret
    api_secret: Secret


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _parse_positive_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a number greater than 0")
    return value


def _parse_percent(text: str) -> Decimal:
    """A distance in percent of the price, above 0 and below 50."""
    value = _parse_positive_decimal(text)
    if value >= 50:
        raise ValueError("must be a percent above 0 and below 50")
    return value


def _parse_share(text: str) -> Decimal:
    """A share of a budget: above 0, at most 1 (0.5 = half)."""
    value = _parse_positive_decimal(text)
    if value > 1:
        raise ValueError("must be a share above 0 and at most 1 (0.5 = half)")
    return value


def _parse_fraction(text: str) -> Decimal:
    """A rate given as a fraction (0.00055 = 0.055 %)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not value.is_finite() or not 0 <= value < 1:
        raise ValueError("must be a fraction from 0 to below 1 (0.00055 means 0.055 %)")
    return value


def _parse_positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value <= 0:
        raise ValueError("must be a whole number greater than 0")
    return value


def _parse_percent_list(text: str) -> tuple[Decimal, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("must be a comma-separated list of percentages")
    try:
        values = tuple(Decimal(p) for p in parts)
    except InvalidOperation:
        raise ValueError("must be a comma-separated list of numbers") from None
    if any(not v.is_finite() or v <= 0 for v in values):
        raise ValueError("every percentage must be greater than 0")
    return values


def _parse_choice(*choices: str) -> Callable[[str], str]:
    """One of `choices`, in any letter case; returned as the choice is spelled."""
    canonical = {choice.lower(): choice for choice in choices}

    def parse(text: str) -> str:
        value = canonical.get(text.strip().lower())
        if value is None:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _parse_log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return value


def _parse_url(text: str) -> str:
    value = text.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _parse_ws_url(text: str) -> str:
    value = text.strip().rstrip("/")
    if not value.startswith(("ws://", "wss://")):
        raise ValueError("must start with ws:// or wss://")
    return value


def _parse_address(text: str) -> str:
    """`host:port` (port 0 picks a free one), or empty to switch the server off."""
    value = text.strip()
    if not value:
        return ""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be host:port (e.g. 127.0.0.1:9464), or empty to switch it off")
    return value


def _parse_alert_urls(text: str) -> tuple[str, ...]:
    """Apprise URLs separated by commas, spaces or new lines; each must name a scheme."""
    urls = tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)
    for url in urls:
        if "://" not in url:
            raise ValueError("each URL must look like scheme://..., e.g. tgram://<bot token>/<chat id>")
    return urls


def _text(text: str) -> str:
    return text.strip()


@dataclass(frozen=True, slots=True)
class Settings:
    # Exchange access. Empty keys mean: run against the embedded simulator.
    bybit_api_key: Secret = field(default_factory=lambda: Secret(""))
    bybit_api_secret: Secret = field(default_factory=lambda: Secret(""))
    bybit_testnet: bool = False
    bybit_demo: bool = False
    enable_mirror_trading: bool = False
    bybit_api_key_2: Secret = field(default_factory=lambda: Secret(""))
    bybit_api_secret_2: Secret = field(default_factory=lambda: Secret(""))
    bybit_base_url: str = ""
    # Gateway.
    http_pool_size: int = 10
    http_timeout_seconds: Decimal = Decimal("10")
    recv_window_ms: int = 5000
    cache_ttl_seconds: Decimal = Decimal("15")
    stale_limit_seconds: Decimal = Decimal("90")
    instruments_refresh_seconds: Decimal = Decimal("300")  # R19: how soon a delisting is seen
    # Streams: pushes keep the cache fresh, REST resyncs it.
    bybit_streams: bool = True
    bybit_ws_private_url: str = ""
    bybit_ws_public_url: str = ""
    stream_heartbeat_seconds: Decimal = Decimal("10")
    resync_seconds: Decimal = Decimal("60")
    # Urgency intervals (tpsl-rules.md).
    urgency_critical_seconds: Decimal = Decimal("2")
    urgency_active_seconds: Decimal = Decimal("5")
    urgency_standard_seconds: Decimal = Decimal("12")
    urgency_inactive_seconds: Decimal = Decimal("30")
    urgency_idle_seconds: Decimal = Decimal("60")
    # Persistence.
    state_path: str = "state/guardian.db"
    flush_interval_seconds: Decimal = Decimal("30")
    # Alerts through Apprise: one or more URLs (secrets: they carry tokens).
    alert_urls: tuple[Secret, ...] = ()
    enable_mirror_alerts: bool = True
    alert_max_age_seconds: Decimal = Decimal("3600")
    # Operations: /metrics, /healthz and /status.
    metrics_address: str = "127.0.0.1:9464"
    # Logging.
    log_level: str = "INFO"
    log_format: str = "human"
    # Rules.
    taker_fee_rate: Decimal = Decimal("0.00055")
    breakeven_safety_margin: Decimal = Decimal("0.0001")
    adoption_policy: str = "protect"
    stop_after_tp: str = "breakeven"  # R13
    stop_trigger_by: str = "LastPrice"  # R15
    trail_activate: str = "off"  # R14: off | tp1..tp4 | profit:<percent>
    trail_distance_percent: Decimal = Decimal("1.0")
    trail_step_percent: Decimal | None = None  # None: a quarter of the distance
    trail_min_interval_seconds: Decimal = Decimal("1")
    trail_write_share: Decimal = Decimal("0.5")  # of an account's write budget
    tp_ladder_percents: tuple[Decimal, ...] = (Decimal(85), Decimal(5), Decimal(5), Decimal(5))
    default_tp_distance_percents: tuple[Decimal, ...] = (Decimal(1), Decimal(2), Decimal(3), Decimal(4))
    default_stop_distance_percent: Decimal = Decimal("3")

    @property
    def live(self) -> bool:
        """True when keys are set: trade on Bybit (or BYBIT_BASE_URL), not the simulator."""
        return bool(self.bybit_api_key)

    @property
    def base_url(self) -> str:
        if self.bybit_base_url:
            return self.bybit_base_url
        if self.bybit_demo:
            return DEMO_TESTNET_URL if self.bybit_testnet else DEMO_URL
        return TESTNET_URL if self.bybit_testnet else MAINNET_URL

    def stream_urls(self, base_url: str) -> tuple[str, str] | None:
        """The private and public stream URLs for this REST base URL (the overrides win); None
        when streams are off, or when BYBIT_BASE_URL points elsewhere and no override says where."""
        if not self.bybit_streams:
            return None
        private_host, public_host = STREAM_HOSTS.get(base_url.rstrip("/"), (None, None))
        private = self.bybit_ws_private_url or (f"wss://{private_host}/v5/private" if private_host else "")
        public = self.bybit_ws_public_url or (f"wss://{public_host}/v5/public/linear" if public_host else "")
        return (private, public) if private else None

    @property
    def breakeven_offset(self) -> Decimal:
        """2 x taker fee + safety margin (0.12 % by default)."""
        return 2 * self.taker_fee_rate + self.breakeven_safety_margin

    def intervals(self) -> dict[str, float]:
        """Check interval in seconds per urgency tier name."""
        return {
            "critical": float(self.urgency_critical_seconds),
            "active": float(self.urgency_active_seconds),
            "standard": float(self.urgency_standard_seconds),
            "inactive": float(self.urgency_inactive_seconds),
            "idle": float(self.urgency_idle_seconds),
        }

    def accounts(self) -> tuple[Account, ...]:
        main = Account("main", self.bybit_api_key, self.bybit_api_secret)
        if not self.enable_mirror_trading:
            return (main,)
        return (main, Account("mirror", self.bybit_api_key_2, self.bybit_api_secret_2))

    @property
    def metrics_bind(self) -> tuple[str, int] | None:
        if not self.metrics_address:
            return None
        host, _, port = self.metrics_address.rpartition(":")
        return host.strip("[]"), int(port)

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


_SECRETS = {"BYBIT_API_KEY", "BYBIT_API_SECRET", "BYBIT_API_KEY_2", "BYBIT_API_SECRET_2", "ALERT_URLS"}

# Setting name (environment variable and config-file key) -> (field, parser).
PARSERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "BYBIT_API_KEY": ("bybit_api_key", _text),
    "BYBIT_API_SECRET": ("bybit_api_secret", _text),
    "BYBIT_TESTNET": ("bybit_testnet", _parse_bool),
    "BYBIT_DEMO": ("bybit_demo", _parse_bool),
    "ENABLE_MIRROR_TRADING": ("enable_mirror_trading", _parse_bool),
    "BYBIT_API_KEY_2": ("bybit_api_key_2", _text),
    "BYBIT_API_SECRET_2": ("bybit_api_secret_2", _text),
    "BYBIT_BASE_URL": ("bybit_base_url", _parse_url),
    "BYBIT_STREAMS": ("bybit_streams", _parse_bool),
    "BYBIT_WS_PRIVATE_URL": ("bybit_ws_private_url", _parse_ws_url),
    "BYBIT_WS_PUBLIC_URL": ("bybit_ws_public_url", _parse_ws_url),
    "STREAM_HEARTBEAT_SECONDS": ("stream_heartbeat_seconds", _parse_positive_decimal),
    "RESYNC_SECONDS": ("resync_seconds", _parse_positive_decimal),
    "HTTP_POOL_SIZE": ("http_pool_size", _parse_positive_int),
    "HTTP_TIMEOUT_SECONDS": ("http_timeout_seconds", _parse_positive_decimal),
    "RECV_WINDOW_MS": ("recv_window_ms", _parse_positive_int),
    "CACHE_TTL_SECONDS": ("cache_ttl_seconds", _parse_positive_decimal),
    "INSTRUMENTS_REFRESH_SECONDS": ("instruments_refresh_seconds", _parse_positive_decimal),
    "STALE_LIMIT_SECONDS": ("stale_limit_seconds", _parse_positive_decimal),
    "URGENCY_CRITICAL_SECONDS": ("urgency_critical_seconds", _parse_positive_decimal),
    "URGENCY_ACTIVE_SECONDS": ("urgency_active_seconds", _parse_positive_decimal),
    "URGENCY_STANDARD_SECONDS": ("urgency_standard_seconds", _parse_positive_decimal),
    "URGENCY_INACTIVE_SECONDS": ("urgency_inactive_seconds", _parse_positive_decimal),
    "URGENCY_IDLE_SECONDS": ("urgency_idle_seconds", _parse_positive_decimal),
    "STATE_PATH": ("state_path", _text),
    "FLUSH_INTERVAL_SECONDS": ("flush_interval_seconds", _parse_positive_decimal),
    "ALERT_URLS": ("alert_urls", _parse_alert_urls),
    "ENABLE_MIRROR_ALERTS": ("enable_mirror_alerts", _parse_bool),
    "ALERT_MAX_AGE_SECONDS": ("alert_max_age_seconds", _parse_positive_decimal),
    "METRICS_ADDRESS": ("metrics_address", _parse_address),
    "LOG_LEVEL": ("log_level", _parse_log_level),
    "LOG_FORMAT": ("log_format", _parse_choice("human", "json")),
    "TAKER_FEE_RATE": ("taker_fee_rate", _parse_fraction),
    "BREAKEVEN_SAFETY_MARGIN": ("breakeven_safety_margin", _parse_fraction),
    "ADOPTION_POLICY": ("adoption_policy", _parse_choice("protect", "observe")),
    "STOP_AFTER_TP": ("stop_after_tp", _parse_choice("breakeven", "previous_tp", "two_back")),
    "STOP_TRIGGER_BY": ("stop_trigger_by", _parse_choice("LastPrice", "MarkPrice", "IndexPrice")),
    "TRAIL_ACTIVATE": ("trail_activate", parse_trail_start),
    "TRAIL_DISTANCE_PERCENT": ("trail_distance_percent", _parse_percent),
    "TRAIL_STEP_PERCENT": ("trail_step_percent", _parse_percent),
    "TRAIL_MIN_INTERVAL_SECONDS": ("trail_min_interval_seconds", _parse_positive_decimal),
    "TRAIL_WRITE_SHARE": ("trail_write_share", _parse_share),
    "TP_LADDER_PERCENTS": ("tp_ladder_percents", _parse_percent_list),
    "DEFAULT_TP_DISTANCE_PERCENTS": ("default_tp_distance_percents", _parse_percent_list),
    "DEFAULT_STOP_DISTANCE_PERCENT": ("default_stop_distance_percent", _parse_positive_decimal),
}


def read_config_file(path: str | Path) -> dict[str, str]:
    """`KEY=value` lines; blank lines and `#` comments are ignored; quotes around a value are
    stripped. Unknown names are an error (a typo must not silently fall back to a default)."""
    values, problems = _read_config(path)
    if problems:
        raise SettingsError(problems)
    return values


def _read_config(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """The known settings of a config file, and one line per problem in it."""
    problems: list[str] = []
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return {}, [f"--config: cannot read {path}: {exc.strerror}"]
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if stripped.startswith("export "):
            name = name[len("export ") :].strip()
        if not sep:
            problems.append(f"--config {path} line {number}: expected KEY=value")
            continue
        if name not in PARSERS:
            problems.append(f"{name}: unknown setting (in {path} line {number})")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values, problems


def load_settings(environ: Mapping[str, str], config_path: str | Path | None = None) -> Settings:
    """Build and validate Settings. Raises SettingsError listing every problem."""
    raw, problems = _read_config(config_path) if config_path else ({}, [])
    raw.update({name: environ[name] for name in PARSERS if name in environ})

    fields: dict[str, Any] = {}
    for name, text in raw.items():
        attribute, parse = PARSERS[name]
        try:
            value = parse(text)
        except ValueError as exc:
            # Never echo a secret's value, even a malformed one.
            shown = "" if name in _SECRETS else f" (got {text.strip()[:40]!r})"
            problems.append(f"{name}: {exc}{shown}")
            continue
        if name in _SECRETS:
            value = tuple(Secret(str(v)) for v in value) if isinstance(value, tuple) else Secret(str(value))
        fields[attribute] = value
    # Cross-checks run on what did parse, so every problem is reported in one go.
    settings = Settings(**fields)
    problems += _cross_checks(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def state_path_problem(path: str) -> str | None:
    """Why the daemon could not keep its state at `path` (one line naming STATE_PATH), or None.
    Creates missing parent folders, as the daemon would; writes nothing else."""
    target = Path(path)
    if target.is_dir():
        return f"STATE_PATH: {path} is a directory, not a database file"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):  # write permission, and not a read-only filesystem
            pass
    except OSError as exc:
        return f"STATE_PATH: cannot write in {target.parent} ({exc.strerror or exc})"
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        return f"STATE_PATH: {path} is not readable and writable"
    return None


def _cross_checks(s: Settings) -> list[str]:
    problems = []
    if bool(s.bybit_api_key) != bool(s.bybit_api_secret):
        problems.append(
            "BYBIT_API_SECRET: must be set together with BYBIT_API_KEY"
            if s.bybit_api_key
            else "BYBIT_API_KEY: must be set together with BYBIT_API_SECRET"
        )
    if bool(s.bybit_api_key_2) != bool(s.bybit_api_secret_2):
        problems.append(
            "BYBIT_API_SECRET_2: must be set together with BYBIT_API_KEY_2"
            if s.bybit_api_key_2
            else "BYBIT_API_KEY_2: must be set together with BYBIT_API_SECRET_2"
        )
    if s.enable_mirror_trading and s.live and not s.bybit_api_key_2:
        problems.append("ENABLE_MIRROR_TRADING: mirror enabled but BYBIT_API_KEY_2 and BYBIT_API_SECRET_2 are not set")
    if s.bybit_api_key_2 and not s.live:
        problems.append("BYBIT_API_KEY_2: mirror keys are set but the main BYBIT_API_KEY is not")
    if s.bybit_api_key and s.bybit_api_key == s.bybit_api_key_2:
        problems.append(
            "BYBIT_API_KEY_2: the mirror key is the same as the main key; the mirror must be a separate account"
        )
    intervals = [
        s.urgency_critical_seconds,
        s.urgency_active_seconds,
        s.urgency_standard_seconds,
        s.urgency_inactive_seconds,
        s.urgency_idle_seconds,
    ]
    if intervals != sorted(intervals):
        problems.append("URGENCY_*_SECONDS: intervals must grow from critical to active, standard, inactive and idle")
    if s.bybit_streams and s.resync_seconds < 2 * s.stream_heartbeat_seconds:
        problems.append(
            "RESYNC_SECONDS: must be at least two STREAM_HEARTBEAT_SECONDS (a resync per heartbeat "
            "would be REST polling)"
        )
    total = sum(s.tp_ladder_percents)
    if total != 100:
        problems.append(f"TP_LADDER_PERCENTS: shares must add up to 100 (they add up to {total})")
    if len(s.default_tp_distance_percents) != len(s.tp_ladder_percents):
        problems.append("DEFAULT_TP_DISTANCE_PERCENTS: needs one distance per TP_LADDER_PERCENTS level")
    return problems

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
import tomllib
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


SIZINGS = ("same_qty", "balance_percent", "ratio")


@dataclass(frozen=True, slots=True)
class Account:
    """One exchange account: its name, credentials and environment, and its role: a leader
    (`leader` is None) or a follower of the named leader, sized by `sizing` (SIZINGS)."""

    name: str
    api_key: Secret
    api_secret: Secret
    testnet: bool = False
    demo: bool = False
    leader: str | None = None
    sizing: str = "same_qty"
    ratio: Decimal | None = None  # sizing "ratio": the follower's qty per unit of the leader's
    alerts: bool = True

    @property
    def base_url(self) -> str:
        if self.demo:
            return DEMO_TESTNET_URL if self.testnet else DEMO_URL
        return TESTNET_URL if self.testnet else MAINNET_URL


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
    # Many accounts (docs/deploy.md): a TOML file naming each account, read into `account_specs`;
    # without it the variables above give main and, with ENABLE_MIRROR_TRADING, its mirror.
    accounts_file: str = ""
    account_specs: tuple[Account, ...] = ()
    ip_budget_share: Decimal = Decimal("1")  # of Bybit's per-IP budgets, when shards share an IP
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
        return bool(self.bybit_api_key) or bool(self.account_specs)

    @property
    def base_url(self) -> str:
        """The REST host of the first account (every account's, unless the accounts file mixes
        real and demo accounts: `base_url_of`)."""
        return self.base_url_of(self.accounts()[0])

    def base_url_of(self, account: Account) -> str:
        return self.bybit_base_url or account.base_url

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
        """The accounts file's accounts, else main and the optional mirror (a follower of main
        by balance, alerted unless ENABLE_MIRROR_ALERTS is off)."""
        if self.account_specs:
            return self.account_specs
        testnet, demo = self.bybit_testnet, self.bybit_demo
        main = Account("main", self.bybit_api_key, self.bybit_api_secret, testnet, demo)
        if not self.enable_mirror_trading:
            return (main,)
        mirror = Account(
            "mirror",
            self.bybit_api_key_2,
            self.bybit_api_secret_2,
            testnet,
            demo,
            leader="main",
            sizing="balance_percent",
            alerts=self.enable_mirror_alerts,
        )
        return (main, mirror)

    def shard(self, index: int, count: int) -> Settings:
        """The settings of shard `index` (0-based) of `count`: its accounts (whole leader groups,
        dealt out by `shard_accounts`) and its own state database beside the configured one."""
        mine = shard_accounts(self.accounts(), count)[index]
        path = Path(self.state_path)
        state = str(path.with_name(f"{path.stem}-shard{index}of{count}{path.suffix}"))
        return self.replace(account_specs=mine, state_path=state)

    @property
    def metrics_bind(self) -> tuple[str, int] | None:
        if not self.metrics_address:
            return None
        host, _, port = self.metrics_address.rpartition(":")
        return host.strip("[]"), int(port)

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


def shard_accounts(accounts: tuple[Account, ...], count: int) -> list[tuple[Account, ...]]:
    """`accounts` dealt out to `count` shards, a leader and its followers always together (a trade
    fans out within one process): each group in file order to the shard with the fewest accounts
    so far (the lowest index on a tie). The same file gives every shard the same answer."""
    groups: dict[str, list[Account]] = {}
    for account in accounts:
        groups.setdefault(account.leader or account.name, []).append(account)
    shards: list[list[Account]] = [[] for _ in range(count)]
    for group in groups.values():
        min(shards, key=len).extend(group)
    return [tuple(a for a in accounts if a in shard) for shard in shards]


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
    "ACCOUNTS_FILE": ("accounts_file", _text),
    "IP_BUDGET_SHARE": ("ip_budget_share", _parse_share),
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
    if fields.get("accounts_file"):
        defaults = {"testnet": fields.get("bybit_testnet", False), "demo": fields.get("bybit_demo", False)}
        fields["account_specs"], found = read_accounts_file(fields["accounts_file"], environ, defaults)
        problems += found
    # Cross-checks run on what did parse, so every problem is reported in one go.
    settings = Settings(**fields)
    problems += _cross_checks(settings)
    if problems:
        raise SettingsError(problems)
    return settings


ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
RESERVED_NAMES = {"all", "both", "leader", "daemon"}  # words of `trade --account`, and the journal's daemon
_ACCOUNT_KEYS = {
    "api_key_env",
    "api_secret_env",
    "api_key_file",
    "api_secret_file",
    "testnet",
    "demo",
    "role",
    "leader",
    "sizing",
    "ratio",
    "alerts",
}


def read_accounts_file(
    path: str, environ: Mapping[str, str], defaults: Mapping[str, bool] | None = None
) -> tuple[tuple[Account, ...], list[str]]:
    """The accounts of an ACCOUNTS_FILE (TOML, one `[accounts.NAME]` table each, in file order)
    and one line per problem in it. Keys and secrets come from the environment variables or
    the owner-only files it names, never from the file itself; `testnet` and `demo` default to
    `defaults` (BYBIT_TESTNET, BYBIT_DEMO). docs/deploy.md shows one."""
    flag_defaults = {"testnet": False, "demo": False, **(defaults or {}), "alerts": True}
    where = f"ACCOUNTS_FILE {path}"
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        return (), [f"ACCOUNTS_FILE: cannot read {path}: {exc.strerror}"]
    except tomllib.TOMLDecodeError as exc:
        return (), [f"{where}: not valid TOML ({exc})"]
    tables = document.get("accounts")
    problems = [
        f"{where}: unknown section [{name}] (only [accounts.NAME] tables)" for name in document if name != "accounts"
    ]
    if not isinstance(tables, dict) or not tables:
        return (), [*problems, f"{where}: no [accounts.NAME] table"]
    accounts: list[Account] = []
    for name, table in tables.items():
        account = _account_of(
            f"{where}: account {name}", name, table, environ, Path(path).parent, flag_defaults, problems
        )
        if account is not None:
            accounts.append(account)
    problems += _account_cross_checks(where, accounts, tables)
    return tuple(accounts), problems


def _account_of(
    where: str,
    name: str,
    table: Any,
    environ: Mapping[str, str],
    folder: Path,
    defaults: Mapping[str, bool],
    problems: list[str],
) -> Account | None:
    found = len(problems)
    if not ACCOUNT_NAME.fullmatch(name) or name.lower() in RESERVED_NAMES:
        problems.append(f"{where}: a name is 1-32 of A-Z a-z 0-9 _ - and not {', '.join(sorted(RESERVED_NAMES))}")
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table of settings")
        return None
    problems += [f"{where}: unknown setting {key}" for key in table if key not in _ACCOUNT_KEYS]
    key = _credential(where, "api_key", table, environ, folder, problems)
    secret = _credential(where, "api_secret", table, environ, folder, problems)
    flags = {}
    for flag in ("testnet", "demo", "alerts"):
        value = table.get(flag, defaults[flag])
        if not isinstance(value, bool):
            problems.append(f"{where}: {flag} must be true or false")
        flags[flag] = value is True
    role, leader = table.get("role", "leader"), table.get("leader")
    sizing, ratio = table.get("sizing"), None
    if role == "leader":
        if leader is not None or sizing is not None or "ratio" in table:
            problems.append(f'{where}: a leader has no leader, sizing or ratio (role = "follower" copies one)')
    elif role == "follower":
        if not isinstance(leader, str) or not leader:
            problems.append(f'{where}: a follower names its leader (leader = "NAME")')
        if sizing not in SIZINGS:
            problems.append(f"{where}: sizing must be one of {', '.join(SIZINGS)}")
        elif sizing == "ratio":
            try:
                ratio = _parse_positive_decimal(str(table.get("ratio", "")))
            except ValueError:
                problems.append(f'{where}: sizing "ratio" needs ratio, a number greater than 0 (e.g. "0.5")')
        elif "ratio" in table:
            problems.append(f'{where}: ratio is only for sizing "ratio"')
    else:
        problems.append(f"{where}: role must be leader or follower")
    if len(problems) > found:
        return None
    return Account(
        name,
        Secret(key),
        Secret(secret),
        flags["testnet"],
        flags["demo"],
        str(leader) if role == "follower" else None,
        str(sizing) if role == "follower" else "same_qty",
        ratio,
        flags["alerts"],
    )


def _credential(
    where: str, what: str, table: dict, environ: Mapping[str, str], folder: Path, problems: list[str]
) -> str:
    """An account's key or secret: from the environment variable `<what>_env` names, or from the
    owner-only file `<what>_file` names (a Kubernetes or compose secret mounted as a file; a
    relative path is from the accounts file's folder)."""
    variable, path = table.get(f"{what}_env"), table.get(f"{what}_file")
    if (variable is None) == (path is None):
        problems.append(f"{where}: give exactly one of {what}_env and {what}_file")
        return ""
    if variable is not None:
        value = environ.get(str(variable), "").strip()
        if not value:
            problems.append(f"{where}: {what}_env names {variable}, which is not set")
        return value
    path = folder / str(path)
    try:
        mode = path.stat().st_mode
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"{where}: {what}_file: cannot read {path} ({exc.strerror})")
        return ""
    if mode & 0o077:
        problems.append(f"{where}: {what}_file {path} is readable by others (chmod 600 it)")
    elif not value:
        problems.append(f"{where}: {what}_file {path} is empty")
    return value


def _account_cross_checks(where: str, accounts: list[Account], tables: dict) -> list[str]:
    problems = []
    by_name = {a.name: a for a in accounts}
    for account in accounts:
        leader = by_name.get(account.leader) if account.leader else None
        if account.leader and account.leader not in tables:
            problems.append(f"{where}: account {account.name}: its leader {account.leader} is not in the file")
        elif leader is not None and leader.leader is not None:
            problems.append(
                f"{where}: account {account.name}: its leader {leader.name} is itself a follower (one level only)"
            )
    keys: dict[Secret, str] = {}
    for account in accounts:
        other = keys.setdefault(account.api_key, account.name)
        if other != account.name:
            problems.append(f"{where}: accounts {other} and {account.name} have the same API key")
    public_hosts = {STREAM_HOSTS[a.base_url][1] for a in accounts}
    if len(public_hosts) > 1:
        problems.append(
            f"{where}: testnet and mainnet accounts cannot share one daemon (one public stream); "
            "give each its own accounts file"
        )
    return problems


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
    if s.accounts_file and (s.bybit_api_key or s.enable_mirror_trading):
        problems.append(
            "ACCOUNTS_FILE: set either ACCOUNTS_FILE or BYBIT_API_KEY (with its mirror), not both: "
            "the accounts file names every account"
        )
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

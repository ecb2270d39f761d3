"""Settings: defaults, precedence, and one clear line per invalid setting (exit code 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from settings import PARSERS, Secret, Settings, SettingsError, load_settings, state_path_problem

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "AbCdEfKeyValue123", "TopSecretValue987654321"


def problems(environ: dict, config: str | None = None, tmp_path: Path | None = None) -> list[str]:
    path = None
    if config is not None:
        path = tmp_path / "guardian.conf"
        path.write_text(config)
    with pytest.raises(SettingsError) as info:
        load_settings(environ, path)
    return info.value.problems


def test_defaults_need_no_environment():
    settings = load_settings({})
    assert not settings.live
    assert settings.urgency_critical_seconds == 2 and settings.urgency_idle_seconds == 60
    assert settings.breakeven_offset == Decimal("0.0012")
    assert settings.base_url == "https://api.bybit.com"
    assert [a.name for a in settings.accounts()] == ["main"]


def test_environment_overrides_config_file(tmp_path):
    path = tmp_path / "guardian.conf"
    path.write_text("# comment\n\nHTTP_POOL_SIZE=4\nexport LOG_LEVEL='debug'\nSTATE_PATH=\"/tmp/x.db\"\n")
    settings = load_settings({"HTTP_POOL_SIZE": "12"}, path)
    assert settings.http_pool_size == 12
    assert settings.log_level == "DEBUG"
    assert settings.state_path == "/tmp/x.db"


def test_testnet_demo_and_base_url_pick_the_host():
    assert load_settings({"BYBIT_TESTNET": "true"}).base_url == "https://api-testnet.bybit.com"
    assert load_settings({"BYBIT_DEMO": "1"}).base_url == "https://api-demo.bybit.com"
    assert load_settings({"BYBIT_BASE_URL": "http://127.0.0.1:9/", "BYBIT_DEMO": "1"}).base_url == "http://127.0.0.1:9"


def test_stream_urls_follow_the_host_and_the_overrides_win():
    assert load_settings({}).stream_urls("https://api.bybit.com") == (
        "wss://stream.bybit.com/v5/private",
        "wss://stream.bybit.com/v5/public/linear",
    )
    assert load_settings({"BYBIT_DEMO": "1"}).stream_urls("https://api-demo.bybit.com") == (
        "wss://stream-demo.bybit.com/v5/private",
        "wss://stream.bybit.com/v5/public/linear",
    )
    assert load_settings({}).stream_urls("http://127.0.0.1:9") is None  # not Bybit: no guess
    local = load_settings({"BYBIT_WS_PRIVATE_URL": "ws://127.0.0.1:9/v5/private"})
    assert local.stream_urls("http://127.0.0.1:9") == ("ws://127.0.0.1:9/v5/private", "")
    assert load_settings({"BYBIT_STREAMS": "false"}).stream_urls("https://api.bybit.com") is None


def test_mirror_accounts_when_enabled():
    settings = load_settings(
        {
            "BYBIT_API_KEY": KEY,
            "BYBIT_API_SECRET": SECRET,
            "ENABLE_MIRROR_TRADING": "yes",
            "BYBIT_API_KEY_2": "OtherKey",
            "BYBIT_API_SECRET_2": "OtherSecret",
            "ENABLE_MIRROR_ALERTS": "false",
        }
    )
    main, mirror = settings.accounts()
    assert (main.name, mirror.name) == ("main", "mirror")
    assert mirror.api_key.reveal() == "OtherKey"
    # The mirror is a follower of main by balance, as the accounts file would say it.
    assert (main.leader, mirror.leader, mirror.sizing, mirror.alerts) == (None, "main", "balance_percent", False)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"BYBIT_API_KEY": KEY}, "BYBIT_API_SECRET: must be set together with BYBIT_API_KEY"),
        ({"BYBIT_API_SECRET": SECRET}, "BYBIT_API_KEY: must be set together with BYBIT_API_SECRET"),
        (
            {"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET, "ENABLE_MIRROR_TRADING": "true"},
            "ENABLE_MIRROR_TRADING: mirror enabled but BYBIT_API_KEY_2",
        ),
        (
            {
                "BYBIT_API_KEY": KEY,
                "BYBIT_API_SECRET": SECRET,
                "ENABLE_MIRROR_TRADING": "true",
                "BYBIT_API_KEY_2": KEY,
                "BYBIT_API_SECRET_2": "x",
            },
            "BYBIT_API_KEY_2: the mirror key is the same",
        ),
        ({"URGENCY_CRITICAL_SECONDS": "-2"}, "URGENCY_CRITICAL_SECONDS: must be a number greater than 0"),
        ({"URGENCY_IDLE_SECONDS": "0"}, "URGENCY_IDLE_SECONDS: must be a number greater than 0"),
        ({"URGENCY_STANDARD_SECONDS": "1"}, "URGENCY_*_SECONDS: intervals must grow"),
        ({"HTTP_POOL_SIZE": "ten"}, "HTTP_POOL_SIZE: must be a whole number (got 'ten')"),
        ({"STALE_LIMIT_SECONDS": "soon"}, "STALE_LIMIT_SECONDS: must be a number"),
        ({"BYBIT_TESTNET": "maybe"}, "BYBIT_TESTNET: must be true or false"),
        ({"ADOPTION_POLICY": "ignore"}, "ADOPTION_POLICY: must be one of protect, observe"),
        ({"TP_LADDER_PERCENTS": "50,40,5,4"}, "TP_LADDER_PERCENTS: shares must add up to 100"),
        ({"TAKER_FEE_RATE": "5"}, "TAKER_FEE_RATE: must be a fraction"),
        ({"BYBIT_BASE_URL": "ftp://x"}, "BYBIT_BASE_URL: must start with http:// or https://"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: must be one of human, json"),
        (
            {"BYBIT_WS_PRIVATE_URL": "https://stream.bybit.com/v5/private"},
            "BYBIT_WS_PRIVATE_URL: must start with ws://",
        ),
        ({"STREAM_HEARTBEAT_SECONDS": "0"}, "STREAM_HEARTBEAT_SECONDS: must be a number greater than 0"),
        ({"RESYNC_SECONDS": "15"}, "RESYNC_SECONDS: must be at least two STREAM_HEARTBEAT_SECONDS"),
    ],
)
def test_each_invalid_setting_is_one_line_naming_it(environ, expected):
    found = problems(environ)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_unknown_name_in_config_file_is_an_error(tmp_path):
    found = problems({}, "HTTP_POOL_SIZ=3\n", tmp_path)
    assert found == [f"HTTP_POOL_SIZ: unknown setting (in {tmp_path / 'guardian.conf'} line 1)"]


def test_line_without_equals_is_an_error(tmp_path):
    assert "expected KEY=value" in problems({}, "LOG_LEVEL\n", tmp_path)[0]


def test_every_problem_is_reported_not_just_the_first():
    assert len(problems({"HTTP_POOL_SIZE": "0", "RECV_WINDOW_MS": "x", "LOG_LEVEL": "LOUD"})) == 3


def test_secrets_never_appear_in_repr_or_errors():
    settings = load_settings({"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
    assert KEY not in repr(settings) and SECRET not in repr(settings) and SECRET not in str(settings)
    assert repr(Secret(SECRET)) == "Secret('***')"
    # Even a key left without its partner is not echoed.
    text = " ".join(problems({"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET_2": SECRET}))
    assert KEY not in text and SECRET not in text


def test_secret_refuses_pickling():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret(SECRET))


def test_every_setting_has_a_row_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in PARSERS if f"`{name}`" not in readme]
    assert not missing, f"settings without a README row: {missing}"


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().http_pool_size = 3  # type: ignore[misc]


def run_main(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in PARSERS}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_invalid_settings_exit_2_with_one_line_each_and_no_secret():
    result = run_main(env={"BYBIT_API_KEY": KEY, "HTTP_POOL_SIZE": "-1"})
    assert result.returncode == 2
    assert sorted(result.stderr.strip().splitlines()) == [
        "invalid setting: BYBIT_API_SECRET: must be set together with BYBIT_API_KEY",
        "invalid setting: HTTP_POOL_SIZE: must be a whole number greater than 0 (got '-1')",
    ]
    assert KEY not in result.stderr + result.stdout


def test_unknown_config_setting_exits_2(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("NOT_A_SETTING=1\n")
    result = run_main("--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"invalid setting: NOT_A_SETTING: unknown setting (in {path} line 1)"


def test_missing_config_file_exits_2(tmp_path):
    result = run_main("--config", str(tmp_path / "absent.conf"))
    assert result.returncode == 2 and "--config: cannot read" in result.stderr


def test_a_config_file_reports_every_problem_at_once(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("NOT_A_SETTING=1\nHTTP_POOL_SIZE=many\nnonsense\nLOG_LEVEL=LOUD\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({}, path)
    names = [line.split(":")[0] for line in caught.value.problems]
    assert names == ["NOT_A_SETTING", f"--config {path} line 3", "HTTP_POOL_SIZE", "LOG_LEVEL"]


@pytest.mark.parametrize(
    "make_path, expected",
    [
        (lambda tmp: "/proc/nowhere/state.db", "cannot write in /proc/nowhere"),
        (lambda tmp: str(tmp), "is a directory"),
        (lambda tmp: str((tmp / "file").absolute()) + "/state.db", "cannot write in"),
    ],
    ids=["parent-cannot-be-created", "a-directory", "parent-is-a-file"],
)
def test_an_unusable_state_path_is_one_line_and_exit_2_before_anything_starts(tmp_path, make_path, expected):
    (tmp_path / "file").write_text("not a folder")
    result = run_main("--duration", "5", env={"STATE_PATH": make_path(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invalid setting: STATE_PATH: ") and expected in lines[0]
    assert "Running against" not in result.stderr and "Traceback" not in result.stderr


def test_a_usable_state_path_has_no_problem_and_its_folder_is_made(tmp_path):
    path = tmp_path / "deeper" / "state.db"
    assert state_path_problem(str(path)) is None and path.parent.is_dir()


# --- the accounts file (ACCOUNTS_FILE) --------------------------------------------------------

ACCOUNTS = """
[accounts.lead]
api_key_env = "LEAD_KEY"
api_secret_env = "LEAD_SECRET"

[accounts.copy-half]
api_key_env = "HALF_KEY"
api_secret_file = "half.secret"
role = "follower"
leader = "lead"
sizing = "ratio"
ratio = "0.5"
alerts = false

[accounts.by_balance]
api_key_env = "BAL_KEY"
api_secret_env = "BAL_SECRET"
role = "follower"
leader = "lead"
sizing = "balance_percent"

[accounts.solo]
api_key_env = "SOLO_KEY"
api_secret_env = "SOLO_SECRET"
demo = true
"""
ACCOUNT_KEYS = {
    "LEAD_KEY": "k-lead",
    "LEAD_SECRET": "s-lead",
    "HALF_KEY": "k-half",
    "BAL_KEY": "k-bal",
    "BAL_SECRET": "s-bal",
    "SOLO_KEY": "k-solo",
    "SOLO_SECRET": "s-solo",
}


def accounts_file(tmp_path: Path, text: str = ACCOUNTS) -> dict[str, str]:
    (tmp_path / "accounts.toml").write_text(text)
    secret = tmp_path / "half.secret"
    secret.write_text("s-half\n")
    secret.chmod(0o600)
    return {"ACCOUNTS_FILE": str(tmp_path / "accounts.toml"), **ACCOUNT_KEYS}


def test_an_accounts_file_names_leaders_and_followers_with_keys_from_variables_or_files(tmp_path):
    settings = load_settings(accounts_file(tmp_path))
    lead, half, balance, solo = settings.accounts()
    assert settings.live and [a.name for a in settings.accounts()] == ["lead", "copy-half", "by_balance", "solo"]
    assert (lead.leader, half.leader, half.sizing, half.alerts) == (None, "lead", "ratio", False)
    assert half.ratio == Decimal("0.5")
    assert half.api_secret.reveal() == "s-half" and balance.sizing == "balance_percent" and lead.alerts
    assert (
        settings.base_url_of(lead) == "https://api.bybit.com"
        and settings.base_url_of(solo) == "https://api-demo.bybit.com"
    )
    assert "s-half" not in repr(settings) and "k-lead" not in repr(settings)
    testnet = load_settings({**accounts_file(tmp_path, ACCOUNTS.replace("demo = true", "")), "BYBIT_TESTNET": "1"})
    assert {a.testnet for a in testnet.accounts()} == {True}  # BYBIT_TESTNET is every account's default
    # Shards take whole leader groups, the same answer in every process; each its own database.
    first, second = settings.shard(0, 2), settings.shard(1, 2)
    assert [a.name for a in first.accounts()] == ["lead", "copy-half", "by_balance"]
    assert [a.name for a in second.accounts()] == ["solo"]
    assert (first.state_path, second.state_path) == ("state/guardian-shard0of2.db", "state/guardian-shard1of2.db")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda t: t.replace('leader = "lead"\nsizing = "ratio"', 'leader = "boss"\nsizing = "ratio"'),
            "account copy-half: its leader boss is not in the file",
        ),
        (
            lambda t: t.replace(
                'leader = "lead"\nsizing = "balance_percent"', 'leader = "copy-half"\nsizing = "balance_percent"'
            ),
            "account by_balance: its leader copy-half is itself a follower",
        ),
        (lambda t: t.replace('"SOLO_KEY"', '"LEAD_KEY"'), "accounts lead and solo have the same API key"),
        (
            lambda t: t.replace('"SOLO_SECRET"', '"NOT_SET"'),
            "account solo: api_secret_env names NOT_SET, which is not set",
        ),
        (
            lambda t: t.replace('sizing = "ratio"', 'sizing = "half"'),
            "account copy-half: sizing must be one of same_qty, balance_percent, ratio",
        ),
        (lambda t: t.replace('ratio = "0.5"', 'ratio = "-1"'), 'account copy-half: sizing "ratio" needs ratio'),
        (lambda t: t.replace("[accounts.solo]", "[accounts.all]"), "account all: a name is 1-32 of"),
        (lambda t: t.replace("demo = true", "testnet = true"), "testnet and mainnet accounts cannot share one daemon"),
        (lambda t: t.replace("demo = true", "demo = 1"), "account solo: demo must be true or false"),
        (lambda t: t.replace("demo = true", 'api_key = "inline"'), "account solo: unknown setting api_key"),
        (lambda t: t + "\n[alerts]\n", "unknown section [alerts]"),
        (lambda t: t.replace("[accounts.lead]", "[accounts.lead"), "not valid TOML"),
    ],
    ids=[
        "unknown-leader",
        "follower-of-follower",
        "same-key",
        "missing-secret",
        "sizing",
        "ratio",
        "reserved-name",
        "testnet-mix",
        "not-bool",
        "inline-key",
        "section",
        "toml",
    ],
)
def test_each_problem_in_the_accounts_file_is_one_line_naming_it(tmp_path, edit, expected):
    found = problems(accounts_file(tmp_path, edit(ACCOUNTS)))
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith("ACCOUNTS_FILE"), found
    assert not any(value in found[0] for value in ACCOUNT_KEYS.values() if value.startswith("s-"))


def test_a_secret_file_others_can_read_is_refused(tmp_path):
    environ = accounts_file(tmp_path)
    (tmp_path / "half.secret").chmod(0o644)
    where = f"ACCOUNTS_FILE {tmp_path / 'accounts.toml'}: account copy-half"
    assert problems(environ) == [
        f"{where}: api_secret_file {tmp_path / 'half.secret'} is readable by others (chmod 600 it)"
    ]


def test_the_accounts_file_and_the_key_variables_are_not_both_set(tmp_path):
    found = problems({**accounts_file(tmp_path), "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
    line = "ACCOUNTS_FILE: set either ACCOUNTS_FILE or BYBIT_API_KEY (with its mirror), not both: the accounts file"
    assert found == [f"{line} names every account"]


def test_a_bad_accounts_file_or_shard_exits_2_with_one_line_each(tmp_path):
    environ = accounts_file(
        tmp_path, ACCOUNTS.replace('"SOLO_SECRET"', '"NOT_SET"').replace('sizing = "ratio"', 'sizing = "x"')
    )
    done = run_main("--duration", "1", env=environ)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 2 and "NOT_SET" in done.stderr and "sizing" in done.stderr
    environ = accounts_file(tmp_path)
    for shard, line in (("2/2", "must be I/N with 0 <= I < N"), ("2/3", "no account falls to this shard")):
        done = run_main("--shard", shard, "--duration", "1", env={**environ, "STATE_PATH": str(tmp_path / "s.db")})
        assert done.returncode == 2 and line in done.stderr, done.stderr
    done = run_main("trade", "list", "--shard", "one/2", env=environ)
    assert done.returncode == 2 and done.stderr.startswith("trade list: --shard 'one/2' must be I/N"), done.stderr

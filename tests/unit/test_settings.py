"""Settings: flags over environment variables over defaults, secrets from *_FILE variables,
one clear line for a bad value, and every setting documented (README, --help, `config`)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from customer_segments.cli import main
from customer_segments.config import Settings, flag_of, variable_of

README = Path(__file__).parents[2] / "README.md"
SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings of the machine running the tests are not these tests' inputs."""
    for variable in list(os.environ):
        if variable.startswith("CUSTOMER_SEGMENTS_"):
            monkeypatch.delenv(variable)


def config(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, tuple[str, str]]:
    """`customer-segments config`: setting -> (value, where it came from)."""
    main(["config", *flags])
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        name, value, *origin = [*line.split(maxsplit=2), ""]
        rows[name] = (value, origin[0].strip())
    return rows


def refused(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    """The one line a refused command prints, after checking it exits with 2."""
    with pytest.raises(SystemExit) as exited:
        main(list(arguments))
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_flags_win_over_the_environment_which_wins_over_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUSTOMER_SEGMENTS_GRPC_PORT", "6001")
    monkeypatch.setenv("CUSTOMER_SEGMENTS_HTTP_PORT", "6002")
    monkeypatch.setenv("CUSTOMER_SEGMENTS_WORKERS", "")  # empty: not set
    rows = config(capsys, "--grpc-port", "7001")
    assert rows["grpc_port"] == ("7001", "flag --grpc-port")
    assert rows["http_port"] == ("6002", "env CUSTOMER_SEGMENTS_HTTP_PORT")
    assert rows["workers"] == ("1", "default")


def test_access_log_is_a_flag_pair_and_true_or_false_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config(capsys)["access_log"] == ("True", "default")
    assert config(capsys, "--no-access-log")["access_log"] == ("False", "flag --access-log")
    monkeypatch.setenv("CUSTOMER_SEGMENTS_ACCESS_LOG", "false")
    assert config(capsys)["access_log"] == ("False", "env CUSTOMER_SEGMENTS_ACCESS_LOG")
    assert config(capsys, "--access-log")["access_log"] == ("True", "flag --access-log")


def test_events_are_a_flag_pair_and_their_retention_a_duration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config(capsys)["events"] == ("True", "default")
    assert config(capsys, "--no-events")["events"] == ("False", "flag --events")
    assert Settings().events_retention == timedelta(days=7)
    assert Settings(events_retention="PT1H").events_retention == timedelta(hours=1)
    monkeypatch.setenv("CUSTOMER_SEGMENTS_EVENTS_RETENTION", "90")
    assert Settings().events_retention == timedelta(seconds=90)
    line = refused(capsys, "config", "--events-retention", "a week")
    assert line.startswith("customer-segments: invalid --events-retention"), line
    line = refused(capsys, "config", "--events-retention", "0")
    assert "--events-retention" in line, line


def test_secrets_come_from_files_without_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "url").write_text("postgresql://app:hunter2@db.example:5432/segments\n")
    monkeypatch.setenv("CUSTOMER_SEGMENTS_JWT_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("CUSTOMER_SEGMENTS_DATABASE_URL_FILE", str(tmp_path / "url"))
    settings = Settings()
    assert settings.jwt_secret == SECRET
    assert settings.database_url == "postgresql://app:hunter2@db.example:5432/segments"
    rows = config(capsys)
    assert rows["jwt_secret"] == ("***", "file CUSTOMER_SEGMENTS_JWT_SECRET_FILE")
    assert rows["database_url"] == (
        "postgresql+asyncpg://app:***@db.example:5432/segments",
        "file CUSTOMER_SEGMENTS_DATABASE_URL_FILE",
    )


def test_secrets_given_directly_are_masked_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUSTOMER_SEGMENTS_JWT_SECRET", SECRET)
    rows = config(capsys, "--database-url", "postgresql://app:hunter2@db.example/segments")
    assert rows["jwt_secret"] == ("***", "env CUSTOMER_SEGMENTS_JWT_SECRET")
    assert "hunter2" not in rows["database_url"][0]
    assert SECRET not in str(rows)


def test_nats_urls_are_checked_and_shown_without_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls = "nats://app:hunter2@nats-1.example:4222, tls://s3cr3t-token@nats-2.example"
    rows = config(capsys, "--events-nats-url", urls)
    assert rows["events_nats_url"] == (
        "nats://***@nats-1.example:4222,tls://***@nats-2.example",
        "flag --events-nats-url",
    )
    assert refused(capsys, "serve", "--events-nats-url", "nats-1.example:4222") == (
        "customer-segments: invalid --events-nats-url: 'nats-1.example:4222' is not a NATS URL "
        "(nats://host:4222; also tls://, ws://, wss://)"
    )
    assert refused(capsys, "serve", "--events-nats-stream", "customer.segments").startswith(
        "customer-segments: invalid --events-nats-stream: String should match pattern"
    )


def test_a_missing_secret_file_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("CUSTOMER_SEGMENTS_JWT_SECRET_FILE", str(missing))
    assert refused(capsys, "config") == (
        f"customer-segments: CUSTOMER_SEGMENTS_JWT_SECRET_FILE: cannot read {missing}: "
        "No such file or directory"
    )


def test_a_secret_and_its_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "url").write_text("postgresql://app@db/segments")
    monkeypatch.setenv("CUSTOMER_SEGMENTS_DATABASE_URL_FILE", str(tmp_path / "url"))
    monkeypatch.setenv("CUSTOMER_SEGMENTS_DATABASE_URL", "postgresql://app@db/segments")
    assert refused(capsys, "migrate") == (
        "customer-segments: CUSTOMER_SEGMENTS_DATABASE_URL and "
        "CUSTOMER_SEGMENTS_DATABASE_URL_FILE are both set: give one"
    )


def test_bad_values_name_the_flag_or_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refused(capsys, "serve", "--grpc-port", "70000").startswith(
        "customer-segments: invalid --grpc-port: Input should be less than or equal to 65535"
    )
    assert refused(capsys, "serve", "--log-level", "loud") == (
        "customer-segments: invalid --log-level: 'loud' is not one of DEBUG, INFO,"
        " WARNING, ERROR, CRITICAL"
    )
    monkeypatch.setenv("CUSTOMER_SEGMENTS_LOG_FORMAT", "xml")
    assert refused(capsys, "config").startswith(
        "customer-segments: invalid CUSTOMER_SEGMENTS_LOG_FORMAT: Input should be 'text' or 'json'"
    )
    monkeypatch.delenv("CUSTOMER_SEGMENTS_LOG_FORMAT")
    (tmp_path / "short").write_text("too short\n")
    monkeypatch.setenv("CUSTOMER_SEGMENTS_JWT_SECRET_FILE", str(tmp_path / "short"))
    assert refused(capsys, "config").startswith(
        "customer-segments: invalid CUSTOMER_SEGMENTS_JWT_SECRET_FILE: String should have at least 32"
    )


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def _readme_settings_table() -> str:
    section = README.read_text().split("\n## PostgreSQL\n", 1)[1].split("\n#", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented_and_shown(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _readme_settings_table()
    assert f"`{variable_of(name)}`" in table, f"README settings table lacks {variable_of(name)}"
    helps = _help(capsys, "serve") + _help(capsys, "gateway")
    if name == "jwt_secret":  # environment only: a secret on a command line shows in `ps`
        assert variable_of(name) in helps
        assert f"`{variable_of(name)}_FILE`" in table
    else:
        assert f"`{flag_of(name)}" in table, f"README settings table lacks {flag_of(name)}"
        assert f"{flag_of(name)} " in helps or f"{flag_of(name)}," in helps
    assert name in config(capsys)


def test_the_readme_names_the_secret_files() -> None:
    table = _readme_settings_table()
    for variable in ("CUSTOMER_SEGMENTS_JWT_SECRET_FILE", "CUSTOMER_SEGMENTS_DATABASE_URL_FILE"):
        assert f"`{variable}`" in table


def test_the_listen_url_is_a_masked_postgresql_secret_that_defaults_to_the_database_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pooled = "postgresql://app:hunter2@pgbouncer:6432/segments"
    (tmp_path / "direct").write_text("postgresql://owner:s3cret@postgres:5432/segments\n")
    assert Settings(database_url=pooled).effective_listen_url == pooled
    monkeypatch.setenv("CUSTOMER_SEGMENTS_DATABASE_LISTEN_URL_FILE", str(tmp_path / "direct"))
    settings = Settings(database_url=pooled)
    assert settings.effective_listen_url == "postgresql://owner:s3cret@postgres:5432/segments"
    rows = config(capsys)
    assert rows["database_listen_url"] == (
        "postgresql+asyncpg://owner:***@postgres:5432/segments",
        "file CUSTOMER_SEGMENTS_DATABASE_LISTEN_URL_FILE",
    )
    monkeypatch.delenv("CUSTOMER_SEGMENTS_DATABASE_LISTEN_URL_FILE")
    assert refused(capsys, "serve", "--database-listen-url", "sqlite:///x.db") == (
        "customer-segments: invalid --database-listen-url: must be a postgresql:// URL "
        "(LISTEN is PostgreSQL's)"
    )

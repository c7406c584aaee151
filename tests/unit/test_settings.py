"""The settings contract: names operators rely on, defaults, actionable errors, secrets never shown."""

from __future__ import annotations

import json
import sys
import zoneinfo
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from service.settings import (
    API_MAX_BODY_BYTES,
    API_MAX_ITEMS,
    AccountSettings,
    ApiSettings,
    ConfigError,
    PerAccount,
    load_settings,
    masked_config,
)

SECRET = "s3cr3t-VALUE-never-printed"


pytestmark = pytest.mark.usefixtures("settings_from_the_test_only")


def test_defaults_match_the_documented_contract() -> None:
    settings = load_settings()
    assert settings.kafka.input_topic == "catalog.product-delisted"
    assert settings.kafka.outcome_topic == "catalog.product-image-deletions"
    assert settings.kafka.dlq_topic == "catalog.product-delisted.dlq"
    assert str(settings.api.endpoint) == "https://aiapi.jdcloud.com/jdai/product_image_del_image"
    assert settings.api.region == "cn-north-1"
    assert settings.api.qps == 2
    assert settings.batch.max_items == API_MAX_ITEMS == 200
    assert settings.batch.max_bytes == API_MAX_BODY_BYTES == 5 * 1024 * 1024
    assert settings.dry_run is False
    assert settings.api.absent_reasons == {"NO_AVAILABLE_FEATURE", "NO_RELATIVE_IMAGE"}
    assert settings.api.quota_reset_zone.utcoffset(None) == timedelta(hours=8)
    assert settings.api.quota_reset_time == time(0, 0)


def test_every_documented_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
        "IMGSWEEP_KAFKA__GROUP_ID": "sweepers",
        "IMGSWEEP_KAFKA__INPUT_TOPIC": "in",
        "IMGSWEEP_KAFKA__OUTCOME_TOPIC": "out",
        "IMGSWEEP_KAFKA__DLQ_TOPIC": "dlq",
        "IMGSWEEP_API__ENDPOINT": "http://127.0.0.1:8900/jdai/product_image_del_image",
        "IMGSWEEP_API__ACCESS_KEY": "ak",
        "IMGSWEEP_API__SECRET_KEY": SECRET,
        "IMGSWEEP_API__REGION": "cn-east-2",
        "IMGSWEEP_API__SERVICE": "jdai",
        "IMGSWEEP_API__QPS": "5",
        "IMGSWEEP_BATCH__MAX_ITEMS": "150",
        "IMGSWEEP_BATCH__LINGER_SECONDS": "0.5",
        "IMGSWEEP_HTTP__PORT": "9100",
        "IMGSWEEP_DRY_RUN": "true",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9093"
    # dry-run is on: the group and both output topics take their dry-run form; the input is read as it is
    assert settings.kafka.group_id == "sweepers.dry-run"
    assert (settings.kafka.input_topic, settings.kafka.outcome_topic, settings.kafka.dlq_topic) == (
        "in",
        "out.dry-run",
        "dlq.dry-run",
    )
    assert settings.api.endpoint.port == 8900
    assert settings.api.access_key is not None
    assert settings.api.access_key.get_secret_value() == "ak"
    assert settings.api.secret_key is not None
    assert settings.api.secret_key.get_secret_value() == SECRET
    assert (settings.api.region, settings.api.service, settings.api.qps) == ("cn-east-2", "jdai", 5)
    assert (settings.batch.max_items, settings.batch.linger_seconds) == (150, 0.5)
    assert settings.http.port == 9100
    assert settings.dry_run is True


def test_secrets_come_from_files_in_the_secrets_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "IMGSWEEP_API__ACCESS_KEY").write_text("ak-from-file")
    (secrets / "IMGSWEEP_API__SECRET_KEY").write_text(SECRET + "\n")
    (secrets / "IMGSWEEP_KAFKA__SASL_PASSWORD").write_text("kafka-pass")
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets))
    settings = load_settings()
    assert settings.api.access_key is not None
    assert settings.api.access_key.get_secret_value() == "ak-from-file"
    assert settings.api.secret_key is not None
    assert settings.api.secret_key.get_secret_value().strip() == SECRET
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.librdkafka_common()["sasl.password"] == "kafka-pass"
    settings.require_credentials()


def test_environment_wins_over_secret_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "IMGSWEEP_API__ACCESS_KEY").write_text("from-file")
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("IMGSWEEP_API__ACCESS_KEY", "from-env")
    settings = load_settings()
    assert settings.api.access_key is not None
    assert settings.api.access_key.get_secret_value() == "from-env"


def test_librdkafka_properties_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "IMGSWEEP_KAFKA__PROPERTIES",
        json.dumps({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}),
    )
    config = load_settings().kafka.librdkafka_common()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("IMGSWEEP_BATCH__MAX_ITEMS", "500", "IMGSWEEP_BATCH__MAX_ITEMS: 500 is above the API's cap of 200"),
        (
            "IMGSWEEP_BATCH__MAX_ITEMS",
            "0",
            "IMGSWEEP_BATCH__MAX_ITEMS: Input should be greater than or equal",
        ),
        ("IMGSWEEP_BATCH__MAX_BYTES", "6000000", "5 MB"),
        ("IMGSWEEP_API__QPS", "0", "IMGSWEEP_API__QPS: Input should be greater than 0"),
        ("IMGSWEEP_API__QPS", "fast", "IMGSWEEP_API__QPS: Input should be a valid number"),
        ("IMGSWEEP_API__ENDPOINT", "not a url", "IMGSWEEP_API__ENDPOINT"),
        ("IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS", "kafka", "'kafka' is not host:port"),
        ("IMGSWEEP_KAFKA__INPUT_TOPIC", "bad topic!", "is not a valid Kafka topic name"),
        ("IMGSWEEP_KAFKA__OUTCOME_TOPIC", "catalog.product-delisted", "three different topics"),
        ("IMGSWEEP_KAFKA__PROPERTIES", '{"enable.auto.commit": "true"}', "managed by imgsweep"),
        ("IMGSWEEP_HTTP__PORT", "70000", "IMGSWEEP_HTTP__PORT"),
        ("IMGSWEEP_LOG__LEVEL", "LOUD", "IMGSWEEP_LOG__LEVEL"),
        ("IMGSWEEP_API__QUOTA_RESET_UTC_OFFSET", "8", "'8' is not a time zone: use an IANA name like Asia/Shanghai"),
        ("IMGSWEEP_API__QUOTA_RESET_ZONE", "Mars/Olympus", "IMGSWEEP_API__QUOTA_RESET_ZONE: 'Mars/Olympus' is not a"),
        ("IMGSWEEP_API__QUOTA_RESET_ZONE", "+15:00", "IMGSWEEP_API__QUOTA_RESET_ZONE: '+15:00' is not a UTC offset"),
        ("IMGSWEEP_API__QUOTA_RESET_ZONE", "../../etc/passwd", "IMGSWEEP_API__QUOTA_RESET_ZONE: '../../etc/passwd'"),
        ("IMGSWEEP_KAFKA__BOOTSTRAPSERVERS", "k:9092", "IMGSWEEP_KAFKA__BOOTSTRAPSERVERS: is not a known"),
        ("IMGSWEEP_DRYRUN", "true", "IMGSWEEP_DRYRUN: is not a known setting"),
    ],
)
def test_bad_config_names_the_setting_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert expected in str(raised.value)


def test_missing_credentials_are_named_unless_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_API__ACCESS_KEY", "ak")
    with pytest.raises(ConfigError, match="IMGSWEEP_API__SECRET_KEY must be set") as raised:
        load_settings().require_credentials()
    assert "IMGSWEEP_API__ACCESS_KEY" not in str(raised.value)
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "1")
    load_settings().require_credentials()


def test_secret_values_never_appear_in_errors_or_masked_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_API__SECRET_KEY", SECRET)
    monkeypatch.setenv("IMGSWEEP_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("IMGSWEEP_KAFKA__PROPERTIES", json.dumps({"ssl.key.password": SECRET}))
    settings = load_settings()
    shown = json.dumps(masked_config(settings))
    assert SECRET not in shown
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert masked_config(settings)["api"]["secret_key"] == "**********"
    # An invalid neighbour must not make the error message echo the secret either.
    monkeypatch.setenv("IMGSWEEP_API__SECRET_KEY", SECRET)
    monkeypatch.setenv("IMGSWEEP_API__QPS", "-3")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert SECRET not in str(raised.value)


def test_a_missing_secrets_directory_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"IMGSWEEP_SECRETS_DIR=.*is not a directory"):
        load_settings()


def test_an_oversized_secrets_directory_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    with (secrets / "huge").open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets))
    with pytest.raises(ConfigError, match=r"IMGSWEEP_SECRETS_DIR=.*secrets_dir size is above"):
        load_settings()


def test_an_unreadable_secrets_directory_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets))

    def refuse(_self: Path) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(ConfigError, match=r"IMGSWEEP_SECRETS_DIR=.* cannot be read: Permission denied"):
        load_settings()


def test_secret_properties_reach_librdkafka_from_files_and_the_environment_and_are_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # A mounted Secret's key per property, as the chart renders kafka.secretProperties...
    (secrets / "IMGSWEEP_KAFKA__SECRET_PROPERTIES__ssl.key.password").write_text(SECRET + "\n")
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets))
    # ...and a variable per property, as the chart renders kafka.existingSecretProperties (a secretKeyRef).
    monkeypatch.setenv("IMGSWEEP_KAFKA__SECRET_PROPERTIES__sasl.password", SECRET + "-2")
    monkeypatch.setenv("IMGSWEEP_KAFKA__PROPERTIES", json.dumps({"security.protocol": "SASL_SSL"}))
    settings = load_settings()
    config = settings.kafka.librdkafka_common()
    assert config["ssl.key.password"] == SECRET
    assert config["sasl.password"] == SECRET + "-2"
    assert config["security.protocol"] == "SASL_SSL"
    shown = json.dumps(masked_config(settings)) + repr(settings)
    assert SECRET not in shown
    assert masked_config(settings)["kafka"]["secret_properties"] == {
        "ssl.key.password": "**********",
        "sasl.password": "**********",
    }


@pytest.mark.parametrize(
    ("properties", "secret_properties", "message"),
    [
        ({}, {"acks": "0"}, "IMGSWEEP_KAFKA__SECRET_PROPERTIES: librdkafka property 'acks' is managed by imgsweep"),
        (
            {"sasl.password": "a"},
            {"sasl.password": "b"},
            "'sasl.password' are set in both IMGSWEEP_KAFKA__PROPERTIES and IMGSWEEP_KAFKA__SECRET_PROPERTIES",
        ),
    ],
)
def test_secret_properties_are_checked_like_properties(
    monkeypatch: pytest.MonkeyPatch, properties: dict[str, str], secret_properties: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("IMGSWEEP_KAFKA__PROPERTIES", json.dumps(properties))
    monkeypatch.setenv("IMGSWEEP_KAFKA__SECRET_PROPERTIES", json.dumps(secret_properties))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert message in str(raised.value)
    assert '"b"' not in str(raised.value)


def test_dry_run_never_touches_the_live_group_or_output_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_KAFKA__GROUP_ID", "sweepers")
    live = load_settings()
    assert (live.kafka.group_id, live.kafka.outcome_topic) == ("sweepers", "catalog.product-image-deletions")
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "true")
    monkeypatch.setenv("IMGSWEEP_KAFKA__OUTCOME_TOPIC", "rehearsal.dry-run")  # already in its dry-run form: kept
    dry = load_settings()
    assert dry.kafka.group_id == "sweepers.dry-run"
    assert dry.kafka.outcome_topic == "rehearsal.dry-run"
    assert dry.kafka.dlq_topic == "catalog.product-delisted.dlq.dry-run"
    assert dry.kafka.input_topic == live.kafka.input_topic
    assert masked_config(dry)["kafka"]["group_id"] == "sweepers.dry-run"  # check-config shows what is used


def test_the_qps_is_shared_by_demand_on_its_own_topic_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    live = load_settings()
    assert (live.api.qps_share, live.kafka.demand_topic) == ("demand", "catalog.imgsweep.demand")
    monkeypatch.setenv("IMGSWEEP_API__QPS_SHARE", "partitions")
    assert load_settings().api.qps_share == "partitions"
    monkeypatch.setenv("IMGSWEEP_API__QPS_SHARE", "even")
    with pytest.raises(ConfigError, match="IMGSWEEP_API__QPS_SHARE: Input should be 'demand' or 'partitions'"):
        load_settings()
    monkeypatch.delenv("IMGSWEEP_API__QPS_SHARE")
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "true")
    assert load_settings().kafka.demand_topic == "catalog.imgsweep.demand.dry-run"  # never a live replica's share
    monkeypatch.setenv("IMGSWEEP_KAFKA__DEMAND_TOPIC", "catalog.product-delisted")
    with pytest.raises(
        ConfigError,
        match="deletions_topic, control_topic, budget_topic and collections_topic five more",
    ):
        load_settings()


def test_the_payment_probe_interval_defaults_to_an_hour_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().api.payment_probe_seconds == 3600
    monkeypatch.setenv("IMGSWEEP_API__PAYMENT_PROBE_SECONDS", "1800")
    assert load_settings().api.payment_probe_seconds == 1800
    monkeypatch.setenv("IMGSWEEP_API__PAYMENT_PROBE_SECONDS", "5")  # a refused call every 5 s is no probe
    with pytest.raises(ConfigError, match="IMGSWEEP_API__PAYMENT_PROBE_SECONDS: Input should be greater"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "offset", "shown"),
    [
        ("IMGSWEEP_API__QUOTA_RESET_ZONE", "Asia/Shanghai", timedelta(hours=8), "Asia/Shanghai"),
        ("IMGSWEEP_API__QUOTA_RESET_ZONE", "America/New_York", timedelta(hours=-5), "America/New_York"),
        ("IMGSWEEP_API__QUOTA_RESET_ZONE", "+08:00", timedelta(hours=8), "+08:00"),
        ("IMGSWEEP_API__QUOTA_RESET_ZONE", "-05:30", -timedelta(hours=5, minutes=30), "-05:30"),
        ("IMGSWEEP_API__QUOTA_RESET_UTC_OFFSET", "+09:00", timedelta(hours=9), "+09:00"),  # the old name still works
    ],
)
def test_the_reset_zone_is_an_iana_name_or_an_offset(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, offset: timedelta, shown: str
) -> None:
    monkeypatch.setenv(name, value)
    settings = load_settings()
    january = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert settings.api.quota_reset_zone.utcoffset(january) == offset
    assert masked_config(settings)["api"]["quota_reset_zone"] == shown


def test_the_reset_zone_and_its_old_name_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_API__QUOTA_RESET_ZONE", "Asia/Shanghai")
    monkeypatch.setenv("IMGSWEEP_API__QUOTA_RESET_UTC_OFFSET", "+08:00")
    with pytest.raises(ConfigError, match="IMGSWEEP_API__QUOTA_RESET_ZONE or its old name"):
        load_settings()


def test_without_a_zone_database_a_zone_name_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_API__QUOTA_RESET_ZONE", "Asia/Shanghai")
    for module in ["tzdata", *(name for name in sys.modules if name.startswith("tzdata."))]:
        monkeypatch.setitem(sys.modules, module, None)  # no PyPI tzdata (the development tools bring one along)
    zoneinfo.reset_tzpath(to=[])  # and no /usr/share/zoneinfo, as on a base image without Debian's tzdata
    zoneinfo.ZoneInfo.clear_cache()
    try:
        with pytest.raises(ConfigError, match=r"no IANA time zone database \(install .*or use a UTC offset like"):
            load_settings()
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


def test_without_accounts_there_is_one_default_account_of_every_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_API__QPS", "3")
    (account,) = load_settings().api_accounts()
    assert (account.name, account.collections, account.api.qps) == ("default", ("*",), 3)


def test_accounts_take_their_own_keys_from_files_and_the_rest_from_the_api_section(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "IMGSWEEP_ACCOUNTS__SHOES__ACCESS_KEY").write_text("ak-shoes")
    (secrets / "IMGSWEEP_ACCOUNTS__SHOES__SECRET_KEY").write_text(SECRET)
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("IMGSWEEP_API__QPS", "3")
    monkeypatch.setenv("IMGSWEEP_API__DAILY_CALLS", "1000")
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__SHOES__COLLECTIONS", '["shoes", "boots"]')
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__SHOES__QPS", "1.5")
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__REST__COLLECTIONS", '["*"]')
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__REST__ACCESS_KEY", "ak-rest")
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__REST__SECRET_KEY", "sk-rest")
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__REST__ENDPOINT", "http://127.0.0.1:8901/x")
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__REST__RESERVE_CALLS", "50")
    settings = load_settings()
    settings.require_credentials()
    rest, shoes = settings.api_accounts()
    assert (shoes.name, shoes.collections, shoes.api.qps, shoes.api.daily_calls) == (
        "shoes",
        ("shoes", "boots"),
        1.5,
        1000,
    )
    assert shoes.api.secret_key is not None
    assert shoes.api.secret_key.get_secret_value() == SECRET
    assert str(shoes.api.endpoint) == "https://aiapi.jdcloud.com/jdai/product_image_del_image"
    assert (rest.name, rest.collections, rest.api.qps, rest.api.reserve_calls) == ("rest", ("*",), 3, 50)
    assert rest.api.endpoint.port == 8901
    shown = masked_config(settings)
    assert SECRET not in json.dumps(shown)
    assert shown["accounts_in_effect"]["shoes"]["secret_key"] == "**********"
    assert (shown["accounts_in_effect"]["shoes"]["qps"], shown["accounts_in_effect"]["rest"]["qps"]) == (1.5, 3)
    assert shown["accounts_in_effect"]["rest"]["collections"] == ["*"]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"IMGSWEEP_ACCOUNTS__A__QPS": "1"}, "IMGSWEEP_ACCOUNTS__A__COLLECTIONS: Field required"),
        ({"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": "shoes"}, "IMGSWEEP_ACCOUNTS__A__COLLECTIONS: is not valid JSON"),
        ({"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": "[]"}, "IMGSWEEP_ACCOUNTS__A__COLLECTIONS: is empty"),
        ({"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["*", "x"]'}, '"*" (every other collection) stands alone'),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_ACCOUNTS__B__COLLECTIONS": '["y", "x"]'},
            "'x' is in the collections of both account 'a' and account 'b'",
        ),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["*"]', "IMGSWEEP_ACCOUNTS__B__COLLECTIONS": '["*"]'},
            "'every other collection' is in the collections of both",
        ),
        ({"IMGSWEEP_ACCOUNTS__A.B__COLLECTIONS": '["x"]'}, "account name 'a.b' (in IMGSWEEP_ACCOUNTS__A.B__*)"),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_ACCOUNTS__A__QPSS": "1"},
            "IMGSWEEP_ACCOUNTS__A__QPSS",
        ),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_ACCOUNTS__A__QPS": "0"},
            "IMGSWEEP_ACCOUNTS__A__QPS:",
        ),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_ACCOUNTS__A__PRICE_PER_CALL": "0.01"},
            "account 'a': set IMGSWEEP_ACCOUNTS__A__PRICE_PER_CALL and IMGSWEEP_ACCOUNTS__A__DAILY_SPEND_LIMIT",
        ),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_API__ACCESS_KEY": "ak"},
            "IMGSWEEP_API__ACCESS_KEY would be used by no account",
        ),
        (
            {"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '["x"]', "IMGSWEEP_ACCOUNTS__A__DAILY_CALLS": "0"},
            "account 'a': IMGSWEEP_ACCOUNTS__A__DAILY_CALLS: 0 calls a day would never delete anything",
        ),
        ({"IMGSWEEP_ACCOUNTS__A__COLLECTIONS": '[" x"]'}, "collection ' x' has spaces around its name"),
        (
            {"IMGSWEEP_ACCOUNTS": '{"a": {"collections": ["x"]}}'},
            "IMGSWEEP_ACCOUNTS: is not a setting: set each account's settings one by one",
        ),
    ],
)
def test_bad_accounts_are_named(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert expected in str(raised.value)


def test_an_account_sets_exactly_the_api_settings_marked_per_account(monkeypatch: pytest.MonkeyPatch) -> None:
    marked = {
        name
        for name, field in ApiSettings.model_fields.items()
        if {PerAccount.OWN, PerAccount.INHERITED} & set(field.metadata)
    }
    assert {"access_key", "secret_key", "endpoint", "qps", "daily_calls"} <= marked
    assert set(AccountSettings.model_fields) == {"collections", *marked}
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__A__COLLECTIONS", '["x"]')
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__A__SERVICE", "other")  # not marked: one value for every account
    with pytest.raises(ConfigError, match="IMGSWEEP_ACCOUNTS__A__SERVICE: is not a known setting"):
        load_settings()


def test_each_account_needs_its_own_keys_unless_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__A__COLLECTIONS", '["x"]')
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS__A__ACCESS_KEY", "ak")
    with pytest.raises(ConfigError, match="IMGSWEEP_ACCOUNTS__A__SECRET_KEY must be set") as raised:
        load_settings().require_credentials()
    assert "IMGSWEEP_ACCOUNTS__A__ACCESS_KEY" not in str(raised.value)
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "1")
    load_settings().require_credentials()


@pytest.mark.parametrize("name", ["shoes_", "_shoes", "a__b", "a-", "Shoes", "x" * 33])
def test_an_account_name_no_variable_could_carry_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"account name {name!r}"):
        load_settings(accounts={name: {"collections": ["x"]}})


def test_an_accounts_secret_given_whole_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSWEEP_ACCOUNTS", json.dumps({"a": {"collections": ["x"], "secret_key": SECRET}}))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert SECRET not in str(raised.value)

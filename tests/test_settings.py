"""The settings model: environment, YAML, and one clear message per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffqc.settings import SettingsError, load_settings, settings_table

DOCS = Path(__file__).parents[1] / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("DIFFQC_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_setup():
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.database.url.startswith("sqlite:///")


def test_environment_variables_set_nested_fields(monkeypatch):
    monkeypatch.setenv("DIFFQC_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    monkeypatch.setenv("DIFFQC_DATABASE_URL", "postgresql+psycopg://qc@db/qc")
    monkeypatch.setenv("DIFFQC_SERVICE_GRPC_PORT", "6000")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "kafka-0:9092,kafka-1:9092"
    assert settings.database.url == "postgresql+psycopg://qc@db/qc"
    assert settings.service.grpc_port == 6000


def test_yaml_file_with_environment_overriding_it(monkeypatch, tmp_path):
    config = tmp_path / "diffqc.yaml"
    config.write_text("log_level: DEBUG\nkafka:\n  bootstrap_servers: from-yaml:9092\n  max_retries: 9\n")
    monkeypatch.setenv("DIFFQC_CONFIG", str(config))
    monkeypatch.setenv("DIFFQC_KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    settings = load_settings()
    assert (settings.log_level, settings.kafka.max_retries) == ("DEBUG", 9)
    assert settings.kafka.bootstrap_servers == "from-env:9092"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DIFFQC_SERVICE_GRPC_PORT", "fifty", "DIFFQC_SERVICE_GRPC_PORT: Input should be a valid integer"),
        ("DIFFQC_SERVICE_GRPC_PORT", "70000", "DIFFQC_SERVICE_GRPC_PORT: Input should be less than or equal"),
        ("DIFFQC_LOG_LEVEL", "LOUD", "DIFFQC_LOG_LEVEL: Input should be 'DEBUG'"),
        ("DIFFQC_KAFKA_BOOTSTRAP_SERVERS", " ", "DIFFQC_KAFKA_BOOTSTRAP_SERVERS: String should have at least 1"),
        ("DIFFQC_KAFKA_RETRY_BACKOFF_S", "-1", "DIFFQC_KAFKA_RETRY_BACKOFF_S: Input should be greater than 0"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_a_missing_config_file_and_an_unknown_yaml_key_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFQC_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(SettingsError, match="DIFFQC_CONFIG: config file .*absent.yaml.* does not exist"):
        load_settings()
    typo = tmp_path / "typo.yaml"
    typo.write_text("kafka:\n  bootstrap_server: x:9092\n")
    monkeypatch.setenv("DIFFQC_CONFIG", str(typo))
    with pytest.raises(SettingsError, match="DIFFQC_KAFKA_BOOTSTRAP_SERVER: Extra inputs are not permitted"):
        load_settings()


def test_the_documented_table_matches_the_model():
    assert settings_table() in DOCS.read_text(), "regenerate docs/configuration.md: python -m diffqc.settings"

"""Settings are validated in one place: every out-of-range value names its variable."""

from __future__ import annotations

import pytest

from riskgraph.settings import Settings

BAD = {
    "RISKGRAPH_BATCH_SIZE": ["0", "-5"],
    "RISKGRAPH_PARTITIONS": ["0"],
    "RISKGRAPH_SESSION_TIMEOUT_S": ["5.9", "301", "nan", "inf"],
    "RISKGRAPH_BATCH_WINDOW_S": ["-0.1"],
    "RISKGRAPH_FETCH_MAX_BYTES": ["0"],
    "RISKGRAPH_CACHE_CAPACITY": ["0"],
    "RISKGRAPH_MEM_CACHE_CAPACITY": ["-1"],
    "RISKGRAPH_PIN_SCORING_CPU": ["-2"],
    "RISKGRAPH_COMMIT_EVERY": ["0"],
    "RISKGRAPH_MAX_EVENT_BYTES": ["0"],
    "RISKGRAPH_DLQ_RAW_MAX_BYTES": ["-1"],
    "RISKGRAPH_DEDUPE_WINDOW": ["-1"],
    "RISKGRAPH_SEED": ["-1"],
    "RISKGRAPH_METRICS_PORT": ["70000", "-1"],
    "RISKGRAPH_METRICS_HOST": [""],
    "RISKGRAPH_CONSUME": ["bulk"],
    "RISKGRAPH_EVENT_LOOP": ["trio"],
    "RISKGRAPH_STORE_COMPRESSION": ["zstd"],
    "RISKGRAPH_STORE_COMPACTION": ["fifo"],
    "RISKGRAPH_STORE_DIRECT_IO": ["maybe"],
    "RISKGRAPH_SECURITY_PROTOCOL": ["TLS"],
    "RISKGRAPH_EVENTS_TOPIC": [""],
    "RISKGRAPH_BROKER": ["", "kafka://", "kafka://host:port", "kafka://host:0"],
}


@pytest.mark.parametrize("var,value", [(k, v) for k, vs in BAD.items() for v in vs])
def test_a_bad_value_names_its_variable(var, value):
    with pytest.raises(ValueError, match=var):
        Settings.from_env({var: value})


@pytest.mark.parametrize("env", [
    {"RISKGRAPH_SESSION_TIMEOUT_S": "6"}, {"RISKGRAPH_SESSION_TIMEOUT_S": "300"},
    {"RISKGRAPH_METRICS_PORT": "0"}, {"RISKGRAPH_METRICS_PORT": "65535"}, {"RISKGRAPH_DEDUPE_WINDOW": "0"},
    {"RISKGRAPH_DLQ_RAW_MAX_BYTES": "0"}, {"RISKGRAPH_GROUP_INSTANCE_ID": ""}, {"RISKGRAPH_PIN_SCORING_CPU": "-1"},
    {"RISKGRAPH_BROKER": "kafka://h1:9092;h2:9093"}, {"RISKGRAPH_BROKER": "kafka://localhost"},
    {"RISKGRAPH_FEEDBACK_SECRET": ""},
])
def test_edge_values_are_accepted(env):
    Settings.from_env(env)


def test_flags_and_replace_are_validated_too():
    with pytest.raises(ValueError, match="RISKGRAPH_BATCH_SIZE"):
        Settings.from_env({}, batch_size=0)
    with pytest.raises(ValueError, match="RISKGRAPH_METRICS_PORT"):
        Settings().replace(metrics_port=99999)
    with pytest.raises(ValueError, match="RISKGRAPH_LEARN"):
        Settings(learn="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RISKGRAPH_BATCH_SIZE must be an integer"):
        Settings(batch_size=1.5)  # type: ignore[arg-type]


def test_the_defaults_are_valid():
    assert Settings() == Settings.from_env({})


def test_protocols_agree_with_the_security_module_and_any_case_is_accepted():
    from riskgraph.streams.security import PROTOCOLS

    for p in PROTOCOLS:
        assert Settings.from_env({"RISKGRAPH_SECURITY_PROTOCOL": p.lower()}).security_protocol == p.lower()
    with pytest.raises(ValueError, match="SASL_SSL"):
        Settings(security_protocol="SASL_TLS")

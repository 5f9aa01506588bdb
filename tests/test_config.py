"""Config loading: typed values, relative paths, ${VAR} expansion, errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.errors import ConfigError

FULL = """
registry = "state/registry.db"
read_only = true
[poll]
interval = 1.5
timeout = 0.5
drift_every = 3
[thresholds]
p95_ms_warn = 250
[[endpoints]]
name = "churn-prod"
model = "churn"
url = "http://127.0.0.1:8080/"
capture = "captures/churn/*.jsonl"
headers = { Authorization = "Bearer ${CHURN_TOKEN}" }
thresholds = { error_ratio_warn = 0.01 }
[[endpoints]]
name = "churn-staging"
model = "churn"
environment = "staging"
served_model = "churn-v2"
url = "http://127.0.0.1:9090"
metrics_url = "http://127.0.0.1:9092/metrics"
metrics_profile = "mlserver"
[models.churn]
retrain = { command = ["python", "train.py", "--model", "{model}"] }
deploy = { webhook = { url = "https://deploy.example/hook", secret = "${HOOK_SECRET}" } }
gates = [{ metric = "auc", min_absolute_change = -0.01, greater_is_better = true }]
bake_seconds = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "modeldeck.toml"
    p.write_text(text)
    return p


def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = config.parse_file(write(tmp_path, FULL))
    assert s.registry == tmp_path / "state" / "registry.db"
    assert s.read_only and s.poll.interval == 1.5 and s.poll.drift_every == 3
    prod, staging = s.endpoints
    assert prod.url == "http://127.0.0.1:8080" and prod.metrics_url == "http://127.0.0.1:8080/metrics"
    assert prod.served_model == "churn" and prod.environment == "production"
    assert prod.capture == str(tmp_path / "captures/churn/*.jsonl")
    assert prod.thresholds.error_ratio_warn == 0.01 and prod.thresholds.p95_ms_warn == 250
    assert staging.thresholds.error_ratio_warn == 0.05 and staging.metrics_profile == "mlserver"
    m = s.model("churn")
    assert m.retrain.command == ("python", "train.py", "--model", "{model}")
    assert m.gates[0].min_absolute_change == -0.01 and m.bake_seconds == 30
    assert s.model("unknown").gates == ()
    # ${VAR} is kept as written in settings, expanded only when used
    assert prod.headers["Authorization"] == "Bearer ${CHURN_TOKEN}"
    monkeypatch.setenv("CHURN_TOKEN", "s3cret")
    assert prod.resolved_headers() == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(s)


def test_missing_variable_names_key_not_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHURN_TOKEN", raising=False)
    s = config.parse_file(write(tmp_path, FULL))
    with pytest.raises(ConfigError, match="endpoint churn-prod: header Authorization: environment variable "
                                          "CHURN_TOKEN is not set"):
        s.endpoints[0].resolved_headers()


@pytest.mark.parametrize(("text", "message"), [
    ("registry = 3", "registry: must be a string, not a number"),
    ("[poll]\ninterval = 0", "poll.interval: must be greater than 0, not 0"),
    ("[poll]\nintervall = 2", "poll.intervall: unknown key (did you mean 'interval'?)"),
    ("[[endpoints]]\nname = 'a'\nmodel = 'm'", "endpoints[0]: missing required key 'url'"),
    ("[[endpoints]]\nname = 'a'\nmodel = 'm'\nurl = 'localhost:80'", "endpoints[0].url: must be an http"),
    ("[[endpoints]]\nname='a'\nmodel='m'\nurl='http://h'\n[[endpoints]]\nname='a'\nmodel='m'\nurl='http://h'",
     "endpoints[1].name: duplicate endpoint name 'a'"),
    ("[models.churn]\nretrain = { command = 'python train.py' }", "models.churn.retrain.command: must be a non-empty array"),
    ("[models.churn]\ngates = [{ metric = 'auc' }]", "models.churn.gates[0]: needs at least one of"),
    ("registry = ", "invalid TOML"),
])
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.parse_file(p)
    assert str(e.value).startswith(f"{p}: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.live
def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config.find_config() is None
    xdg = Path(config.paths.default_config_file())
    xdg.parent.mkdir(parents=True)
    xdg.write_text("")
    assert config.find_config() == xdg
    (tmp_path / "modeldeck.toml").write_text("")
    assert config.find_config() == Path("modeldeck.toml")
    monkeypatch.setenv("MODELDECK_CONFIG", "/elsewhere.toml")
    assert config.find_config() == Path("/elsewhere.toml")
    assert config.find_config("given.toml") == Path("given.toml")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        config.load(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(tmp_path / "bin.toml")
    with pytest.raises(ConfigError, match="no config file"):
        config.load(None, required=True)
    assert config.load(None).registry.name == "registry.db"

"""One typed, frozen configuration for every provault process.

Built once from (lowest to highest precedence) built-in defaults, an optional
TOML file, and ``PROVAULT_<SECTION>_<KEY>`` environment variables, then passed
down explicitly.  Every invalid or unknown key is reported in one
:class:`~ledger.core.errors.ConfigError`, not just the first.

The TOML file is named by ``--config`` or ``PROVAULT_CONFIG``.  Sections and
keys mirror the dataclasses below; ``docs/configuration.md`` lists them.
Secrets are never values here, only references (key file paths).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from ledger.core.errors import ConfigError

ENV_PREFIX = "PROVAULT_"
# Variables in our namespace that are not settings.
_ENV_NOT_SETTINGS = ("PROVAULT_CONFIG",)
_ENV_IGNORED_PREFIXES = ("PROVAULT_TEST_",)


def default_data_dir() -> Path:
    return Path(platformdirs.user_state_dir("provault", appauthor=False))


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresSettings:
    dsn: str | None = None
    """External PostgreSQL DSN; unset means the embedded server in the data dir."""
    port: int = 0
    """Port for the embedded server on 127.0.0.1; 0: the one kept in <data_dir>/ports.json, else a free one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsSettings:
    url: str | None = None
    """External NATS URL; unset means the embedded JetStream server."""
    port: int = 0
    """Port for the embedded server on 127.0.0.1; 0: the one kept in <data_dir>/ports.json, else a free one."""
    stream: str = "PROVAULT"
    subject_prefix: str = "provault.events"
    replicas: int = 1
    max_msg_size: int = 1_048_576
    duplicate_window_s: float = 600.0
    max_bytes: int = -1
    """Stream size limit in bytes; -1 means unlimited."""
    # Credentials (ledger/natsauth.py, `provault nats user ...`).
    nkey_seed_file: str | None = None
    """The NATS user nkey seed (mode 0600) this process connects with; unset: no credentials."""
    users_file: str | None = None
    """The NATS users registry for `provault nats`; default <data_dir>/auth/nats-users.json."""
    tls_ca: str | None = None
    """CA certificates (PEM) that sign the NATS servers' certificates; set: connect with TLS."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcSettings:
    ledger_listen: str = "127.0.0.1:7430"
    query_listen: str = "127.0.0.1:7431"
    max_message_bytes: int = 4 * 1_048_576
    # Servers (ledger serve, query serve); see ledger/grpckit/auth.py.
    tokens_file: str | None = None
    """Hashes of the bearer tokens the servers accept; default <data_dir>/auth/tokens.json."""
    tls_cert: str | None = None
    """The servers' TLS certificate chain (PEM); with tls_key, the servers speak TLS."""
    tls_key: str | None = None
    """The servers' TLS private key (PEM, mode 0600)."""
    tls_client_ca: str | None = None
    """CA certificates (PEM) that sign client certificates; set: mutual TLS, clients must present one."""
    # Clients (agents' grpc transport, provault keys).
    tls_ca: str | None = None
    """CA certificates (PEM) that sign the servers' certificate; set: clients use TLS."""
    client_cert: str | None = None
    """A client's certificate chain and private key in one PEM file (mode 0600), for mutual TLS."""
    client_token_file: str | None = None
    """A file (mode 0600) holding the client's bearer token, from `provault auth token create --out`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningSettings:
    checkpoint_key: str | None = None
    """Path of the checkpoint-signing private key; default <data_dir>/keys/checkpoint.key."""
    origin: str = "provault.local/log"
    """The checkpoint origin line: a unique name for this log."""
    checkpoint_every: int = 1000
    checkpoint_interval_s: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestSettings:
    batch_size: int = 1000
    fetch_timeout_s: float = 0.5
    max_payload_bytes: int = 784_384
    """Largest event payload; its base64 must fit in nats.max_msg_size."""
    max_clock_skew_s: float = 300.0
    ack_wait_s: float = 30.0
    """How long JetStream waits for the ledger's ack before redelivering."""
    workers: int = 0
    """Verification worker processes; 0 means one per CPU."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    producer_id: str | None = None
    """This producer's id; default '<user>@<host>/<program>'."""
    key_file: str | None = None
    """Path of the producer's private key; default <data_dir>/keys/producer.key."""
    transport: str = "nats"
    """'nats' (JetStream, the default) or 'grpc' (LedgerService.Append) where NATS is not allowed."""
    ledger_target: str | None = None
    """LedgerService HOST:PORT for the grpc transport; default: the running stack's."""
    spool_dir: str | None = None
    """Durable outbox; default <data_dir>/spool/<producer>."""
    spool_max_bytes: int = 1 << 30
    queue_size: int = 10_000
    """Events held in memory before the back-pressure policy applies."""
    backpressure: str = "block"
    """When the queue is full: 'block' (bounded wait), 'spool' (write on the caller's thread) or 'drop' (counted, warned)."""
    batch_max: int = 1000
    """Predictions per predictions.logged event."""
    batch_interval_s: float = 1.0
    """Longest a logged prediction waits before its batch is sealed."""
    publish_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLineageSettings:
    """The OpenLineage HTTP endpoint (docs/openlineage.md)."""

    enabled: bool = True
    """Whether `provault up` starts the endpoint."""
    listen: str = "127.0.0.1:5000"
    """HOST:PORT of `POST /api/v1/lineage` (5000 is Marquez's port, where clients look by default)."""
    producer_id: str | None = None
    """The endpoint's producer id; default 'openlineage/<host>'."""
    key_file: str | None = None
    """The endpoint's signing key; default <data_dir>/keys/openlineage.key."""
    max_body_bytes: int = 524_288
    """Largest request body accepted (413 beyond)."""
    tls_cert: str | None = None
    """Certificate chain (PEM); with tls_key the endpoint speaks HTTPS."""
    tls_key: str | None = None
    """Private key (PEM) of tls_cert."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MlflowSettings:
    """The MLflow webhook receiver (docs/mlflow.md)."""

    webhook_listen: str = "127.0.0.1:9450"
    """HOST:PORT of `POST /mlflow/webhook`."""
    webhook_secret_file: str | None = None
    """File holding the secret MLflow signs its webhooks with (required to serve)."""
    producer_id: str | None = None
    """The receiver's producer id; default 'mlflow-webhook/<host>'."""
    key_file: str | None = None
    """The receiver's signing key; default <data_dir>/keys/mlflow-webhook.key."""
    max_body_bytes: int = 1_048_576
    """Largest webhook body accepted (413 beyond)."""
    replay_window_s: int = 300
    """How far a delivery's X-MLflow-Timestamp may be from the receiver's clock (401 beyond)."""
    tls_cert: str | None = None
    """Certificate chain (PEM); with tls_key the receiver speaks HTTPS."""
    tls_key: str | None = None
    """Private key (PEM) of tls_cert."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SupplySettings:
    """Attestations, the deployment gate and its Kubernetes admission endpoint (docs/supply-chain.md)."""

    producer_id: str | None = None
    """The attestation key's producer id; default 'attestor/<host>'."""
    key_file: str | None = None
    """The attestation key, which signs attestations and gate decisions; default <data_dir>/keys/attestor.key."""
    admission_listen: str = "127.0.0.1:9443"
    """HOST:PORT of the admission endpoint's `POST /validate`."""
    admission_policy: str | None = None
    """The gate policy (TOML) the admission endpoint decides with (required to serve)."""
    tls_cert: str | None = None
    """Certificate chain (PEM); with tls_key the admission endpoint speaks HTTPS."""
    tls_key: str | None = None
    """Private key (PEM) of tls_cert."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    """Prometheus metrics endpoints (docs/operations.md, Monitoring)."""

    enabled: bool = True
    """Whether the servers serve /metrics."""
    ledger_listen: str = "127.0.0.1:9430"
    """HOST:PORT of `ledger serve`'s /metrics (and `provault up`'s, one process)."""
    query_listen: str = "127.0.0.1:9431"
    """HOST:PORT of `query serve`'s /metrics."""
    openlineage_listen: str = "127.0.0.1:9432"
    """HOST:PORT of `openlineage serve`'s /metrics."""
    agent_listen: str | None = None
    """HOST:PORT where an agent's process serves /metrics; unset: agents serve nothing."""


EXPLORER_MAX_NODES_CAP = 10_000
"""The explorer draws in the browser: beyond this a graph is a job for `provault export`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExplorerSettings:
    """The lineage explorer in the browser (docs/explorer.md), served by the query process."""

    enabled: bool = True
    """Whether `query serve` and `provault up` serve the explorer."""
    listen: str = "127.0.0.1:9440"
    """HOST:PORT of the explorer (HTTPS with grpc.tls_cert when set)."""
    max_nodes: int = 1000
    """Most nodes one graph or impact answer holds; a larger one is cut there and says so."""
    session_ttl_s: float = 28800.0
    """How long a sign-in lasts (the token is still checked on every request)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSettings:
    probe_interval_s: float = 1.0
    """How often the servers check PostgreSQL (and the ledger NATS) for their gRPC health."""
    probe_timeout_s: float = 2.0
    """Longest one check may take before it counts as a failure."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    format: str = "text"
    """'text' (one human line per record) or 'json' (one JSON object per line)."""
    level: str = "info"
    """'debug', 'info', 'warning' or 'error'."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    dev_mode: bool = False
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    nats: NatsSettings = field(default_factory=NatsSettings)
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    signing: SigningSettings = field(default_factory=SigningSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    openlineage: OpenLineageSettings = field(default_factory=OpenLineageSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    supply: SupplySettings = field(default_factory=SupplySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    explorer: ExplorerSettings = field(default_factory=ExplorerSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def checkpoint_key_path(self) -> Path:
        if self.signing.checkpoint_key:
            return Path(self.signing.checkpoint_key).expanduser()
        return self.data_dir / "keys" / "checkpoint.key"


_SECTIONS: dict[str, type] = {
    name: tp for name, tp in typing.get_type_hints(Settings).items() if dataclasses.is_dataclass(tp)
}


# --- conversion -----------------------------------------------------------


def _base_type(tp: object) -> tuple[type, bool]:
    """Return (type, optional) for ``T`` or ``T | None``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False  # type: ignore[return-value]


_BAD = object()  # marks a value that failed conversion (already reported)


def _convert(value: object, tp: object, where: str, problems: list[str]) -> object:
    base, optional = _base_type(tp)
    if isinstance(value, str) and optional and value == "":
        return None
    try:
        if base is bool:
            return _to_bool(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is int and isinstance(value, str):
            return int(value)
        if base is float and not isinstance(value, bool):
            return float(value)  # type: ignore[arg-type]
        if base is str and isinstance(value, str):
            return value
        if base is Path and isinstance(value, str) and value.strip():
            return Path(value).expanduser()
    except ValueError:
        pass
    problems.append(f"{where}: expected {base.__name__}, found {value!r}")
    return _BAD


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _build_section(cls: type, raw: Mapping[str, tuple[object, str]], problems: list[str]) -> object:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, object] = {}
    for key, (value, where) in raw.items():
        if key not in names:
            problems.append(f"{where}: unknown key (known: {', '.join(sorted(names))})")
            continue
        kwargs[key] = _convert(value, hints[key], where, problems)
    return cls(**{k: v for k, v in kwargs.items() if v is not _BAD})


# --- gathering ------------------------------------------------------------


def _from_toml(path: Path, problems: list[str]) -> dict[str, dict[str, tuple[object, str]]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"config file {path}: does not exist")
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        problems.append(f"config file {path}: not valid TOML ({e})")
        return {}
    out: dict[str, dict[str, tuple[object, str]]] = {"": {}}
    for key, value in data.items():
        if isinstance(value, dict):
            out.setdefault(key, {}).update({k: (v, f"{path}: [{key}] {k}") for k, v in value.items()})
        else:
            out[""][key] = (value, f"{path}: {key}")
    return out


def _from_env(env: Mapping[str, str], problems: list[str]) -> dict[str, dict[str, tuple[object, str]]]:
    out: dict[str, dict[str, tuple[object, str]]] = {"": {}}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS:
            continue
        if name.startswith(_ENV_IGNORED_PREFIXES):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), "")
        key = rest[len(section) + 1 :] if section else rest
        out.setdefault(section, {})[key] = (value, f"environment {name}")
    return out


def load_settings(
    *, config_file: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, **overrides: object
) -> Settings:
    """Build the settings; raise ConfigError listing every problem found.

    ``overrides`` are top-level keys (e.g. ``data_dir``) given on a command
    line; they win over environment and file.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    file_name = config_file or env.get("PROVAULT_CONFIG")
    layers = [_from_toml(Path(file_name).expanduser(), problems)] if file_name else []
    layers.append(_from_env(env, problems))
    layers.append({"": {k: (v, f"option --{k.replace('_', '-')}") for k, v in overrides.items() if v is not None}})
    merged: dict[str, dict[str, tuple[object, str]]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    settings = _assemble(merged, problems)
    # Values that failed conversion were left at their (valid) defaults, so the
    # range checks below add only new findings.
    problems.extend(validate(settings))
    if problems:
        raise ConfigError(problems, hint="fix the keys above; see docs/configuration.md")
    return settings


def settings_from(args: object, **overrides: object) -> Settings:
    """The settings a command runs with: its ``--config`` and ``--data-dir`` options, then ``overrides``."""
    return load_settings(
        config_file=getattr(args, "config", None), data_dir=getattr(args, "data_dir", None), **overrides
    )


def _assemble(merged: dict[str, dict[str, tuple[object, str]]], problems: list[str]) -> Settings:
    top = dict(merged.pop("", {}))
    sections: dict[str, object] = {}
    for name, values in merged.items():
        if name not in _SECTIONS:
            where = next(iter(values.values()))[1]
            problems.append(f"{where}: unknown section [{name}] (known: {', '.join(sorted(_SECTIONS))})")
            continue
        sections[name] = _build_section(_SECTIONS[name], values, problems)
    top_fields = {"data_dir": Path, "dev_mode": bool}
    kwargs: dict[str, object] = {}
    for key, (value, where) in top.items():
        if key not in top_fields:
            problems.append(
                f"{where}: unknown key (known: {', '.join(sorted(top_fields))}, "
                f"and the sections {', '.join(sorted(_SECTIONS))})"
            )
            continue
        if isinstance(value, Path):
            kwargs[key] = value
        else:
            kwargs[key] = _convert(value, top_fields[key], where, problems)
    kwargs = {k: v for k, v in kwargs.items() if v is not _BAD}
    return Settings(**kwargs, **sections)  # type: ignore[arg-type]


LOG_LEVELS = ("debug", "info", "warning", "error")


def validate(s: Settings) -> list[str]:
    """Range and consistency checks that types alone cannot express."""
    p: list[str] = []
    for where, port in (("postgres.port", s.postgres.port), ("nats.port", s.nats.port)):
        if not 0 <= port <= 65535:
            p.append(f"{where}: expected 0..65535, found {port}")
    if s.nats.replicas not in (1, 3, 5):
        p.append(f"nats.replicas: expected 1, 3 or 5, found {s.nats.replicas}")
    if s.nats.max_msg_size < 1024:
        p.append(f"nats.max_msg_size: expected at least 1024 bytes, found {s.nats.max_msg_size}")
    if s.nats.duplicate_window_s <= 0:
        p.append(f"nats.duplicate_window_s: expected > 0, found {s.nats.duplicate_window_s}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", s.nats.stream):
        p.append(f"nats.stream: expected a name of letters, digits, '_' or '-', found {s.nats.stream!r}")
    if (
        not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", s.nats.subject_prefix)
        or len(s.nats.subject_prefix) > 200
    ):
        p.append(
            f"nats.subject_prefix: expected dot-separated tokens of letters, digits, '_' or '-' (no wildcards), found {s.nats.subject_prefix!r}"
        )
    if s.signing.checkpoint_every < 1:
        p.append(f"signing.checkpoint_every: expected >= 1, found {s.signing.checkpoint_every}")
    if s.signing.checkpoint_interval_s <= 0:
        p.append(f"signing.checkpoint_interval_s: expected > 0, found {s.signing.checkpoint_interval_s}")
    if not s.signing.origin or any(c.isspace() for c in s.signing.origin):
        p.append(f"signing.origin: expected a non-empty name without spaces, found {s.signing.origin!r}")
    for where, value in (
        ("ingest.fetch_timeout_s", s.ingest.fetch_timeout_s),
        ("ingest.max_clock_skew_s", s.ingest.max_clock_skew_s),
        ("grpc.max_message_bytes", s.grpc.max_message_bytes),
        ("ingest.max_payload_bytes", s.ingest.max_payload_bytes),
    ):
        if value <= 0:
            p.append(f"{where}: expected > 0, found {value}")
    if s.nats.max_bytes < -1 or s.nats.max_bytes == 0:
        p.append(f"nats.max_bytes: expected -1 (unlimited) or a positive size, found {s.nats.max_bytes}")
    if s.ingest.workers < 0:
        p.append(f"ingest.workers: expected >= 0 (0 = one per CPU), found {s.ingest.workers}")
    if s.ingest.ack_wait_s <= 0:
        p.append(f"ingest.ack_wait_s: expected > 0, found {s.ingest.ack_wait_s}")
    if not 1 <= s.ingest.batch_size <= 100_000:
        p.append(f"ingest.batch_size: expected 1..100000, found {s.ingest.batch_size}")
    if s.ingest.max_payload_bytes > s.nats.max_msg_size * 3 // 4 - 1024:
        p.append(
            f"ingest.max_payload_bytes: expected at most {s.nats.max_msg_size * 3 // 4 - 1024} (its base64 plus "
            f"signatures must fit nats.max_msg_size {s.nats.max_msg_size}), found {s.ingest.max_payload_bytes}"
        )
    if s.agent.transport not in ("nats", "grpc"):
        p.append(f"agent.transport: expected 'nats' or 'grpc', found {s.agent.transport!r}")
    if s.agent.backpressure not in ("block", "spool", "drop"):
        p.append(f"agent.backpressure: expected 'block', 'spool' or 'drop', found {s.agent.backpressure!r}")
    for where, value in (
        ("agent.queue_size", s.agent.queue_size),
        ("agent.batch_max", s.agent.batch_max),
        ("agent.spool_max_bytes", s.agent.spool_max_bytes),
    ):
        if value < 1:
            p.append(f"{where}: expected >= 1, found {value}")
    for where, value in (
        ("agent.batch_interval_s", s.agent.batch_interval_s),
        ("agent.publish_timeout_s", s.agent.publish_timeout_s),
    ):
        if value <= 0:
            p.append(f"{where}: expected > 0, found {value}")
    if s.openlineage.max_body_bytes < 1024:
        p.append(f"openlineage.max_body_bytes: expected at least 1024, found {s.openlineage.max_body_bytes}")
    if s.mlflow.max_body_bytes < 1024:
        p.append(f"mlflow.max_body_bytes: expected at least 1024, found {s.mlflow.max_body_bytes}")
    if s.mlflow.replay_window_s < 1:
        p.append(f"mlflow.replay_window_s: expected >= 1, found {s.mlflow.replay_window_s}")
    for where, value in (
        ("health.probe_interval_s", s.health.probe_interval_s),
        ("health.probe_timeout_s", s.health.probe_timeout_s),
    ):
        if value <= 0:
            p.append(f"{where}: expected > 0, found {value}")
    if not 1 <= s.explorer.max_nodes <= EXPLORER_MAX_NODES_CAP:
        p.append(f"explorer.max_nodes: expected 1..{EXPLORER_MAX_NODES_CAP}, found {s.explorer.max_nodes}")
    if s.explorer.session_ttl_s <= 0:
        p.append(f"explorer.session_ttl_s: expected > 0, found {s.explorer.session_ttl_s}")
    if s.log.format not in ("text", "json"):
        p.append(f"log.format: expected 'text' or 'json', found {s.log.format!r}")
    if s.log.level not in LOG_LEVELS:
        p.append(f"log.level: expected one of {', '.join(map(repr, LOG_LEVELS))}, found {s.log.level!r}")
    for where, addr in (
        ("grpc.ledger_listen", s.grpc.ledger_listen),
        ("grpc.query_listen", s.grpc.query_listen),
        ("openlineage.listen", s.openlineage.listen),
        ("mlflow.webhook_listen", s.mlflow.webhook_listen),
        ("supply.admission_listen", s.supply.admission_listen),
        ("explorer.listen", s.explorer.listen),
        ("metrics.ledger_listen", s.metrics.ledger_listen),
        ("metrics.query_listen", s.metrics.query_listen),
        ("metrics.openlineage_listen", s.metrics.openlineage_listen),
        *((("metrics.agent_listen", s.metrics.agent_listen),) if s.metrics.agent_listen is not None else ()),
    ):
        if ":" not in addr or not addr.rsplit(":", 1)[1].isdigit():
            p.append(f"{where}: expected HOST:PORT, found {addr!r}")
    return p

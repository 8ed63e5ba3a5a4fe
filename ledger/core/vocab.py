"""Names every producer must spell the same way, and the PROV shape of each kind.

Two agents that touch the same bytes must name the same entity without
talking to each other, so the PROV prefixes and the identifier scheme are
fixed here, used by the agents when they build events and by the projector
when it reads them.

Identifiers (PROV qualified names):

=========================  ====================================================
``sha256:<hex>``           content: a data file or directory, a model artifact,
                           an environment description -- same bytes, same id
``provault:run/<uuid>``    a training run or pipeline step (an activity)
``provault:git/<commit>``  a code commit (an entity; remote and dirty-diff
                           digest as attributes)
``provault:person/<id>``   a person (an agent), usually an e-mail address
``provault:service/<id>``  a service or pipeline identity (an agent)
``provault:host/<name>``   a machine (an agent)
``provault:deployment/<name>/<uuid>``  one deployment of a model (an entity)
``provault:deploy/<uuid>``             the act of deploying (an activity)
``provault:predict/<uuid>``            one batch of served predictions (an activity)
``provault:prediction/<id>``           one prediction (indexed by the projector)
``provault:undeploy/<uuid>``           the act of taking a model off a target
``provault:mlflow/run/<id>``           an MLflow run (an activity)
``provault:mlflow/model/<id>``         an MLflow logged model (an entity)
``provault:mlflow/registered/<name>/<version>``  an MLflow registered version
``provault:approval/<uuid>``           a signed approval of a model (an activity)
``provault:quarantine/<uuid>``         a quarantine placed on data, code or a key
``provault:gate/<uuid>``               one deployment gate decision
``provault:attestation/<uuid>``        the issuing of an in-toto attestation
=========================  ====================================================

Event kinds and their PROV documents:

``dataset.registered``
    entity ``sha256:`` (``prov:type`` ``provault:Dataset``, ``prov:label``,
    ``provault:uri``, ``provault:bytes``), ``wasAttributedTo`` its registrant,
    optionally ``wasDerivedFrom`` the datasets it was made from.
``run.started``
    activity ``provault:run/`` (``prov:startTime``, ``provault:name``,
    ``provault:params`` as JSON text, ``provault:command``), ``used`` each
    input (datasets, the code commit, the environment), ``wasAssociatedWith``
    the author and the host, ``wasInformedBy`` a parent run for pipeline steps.
``run.completed`` / ``run.failed``
    the same activity with ``prov:endTime`` and ``provault:metrics`` (JSON
    text) or ``provault:error``; ``wasGeneratedBy`` for each output and
    ``wasDerivedFrom`` from each output to each data input.
``model.registered``
    entity ``sha256:`` (``prov:type`` ``provault:Model``, ``prov:label``,
    ``provault:version``), ``wasGeneratedBy`` its run when known,
    ``wasAttributedTo`` its registrant.
``model.deployed``
    activity ``provault:deploy/`` that ``used`` the model, generated the
    entity ``provault:deployment/<name>/<uuid>`` (``wasDerivedFrom`` the
    model), ``wasAssociatedWith`` the deployer and, with ``prov:role``
    ``provault:approver``, the approver.
``model.undeployed``
    activity ``provault:undeploy/`` (``provault:target``) that ``used`` the
    model or version taken off the target, ``wasAssociatedWith`` who did it
    (MLflow alias deletions and stage transitions out of Staging / Production).
``predictions.logged``
    activity ``provault:predict/`` that ``used`` the deployment and the model,
    ``wasAssociatedWith`` the serving service; the predictions themselves are
    in ``data`` (see :data:`PREDICTIONS_DATA`), one row each, so a batch of
    thousands stays one small signed event and every prediction id stays
    traceable through the projector's index.
``model.approved``, ``quarantine.placed``, ``gate.decided``, ``attestation.issued``
    the supply chain's statements (docs/supply-chain.md, "New event kinds").
``key.registered`` / ``key.revoked``
    interpreted by the ledger itself (``ledger.core.keyring``).
"""

from __future__ import annotations

from urllib.parse import quote

PROVAULT_NS = "https://provault.dev/ns#"
SHA256_NS = "urn:provault:sha256:"

PREFIXES: dict[str, str] = {
    "provault": PROVAULT_NS,
    "sha256": SHA256_NS,
}
"""The prefix block every provault-made PROV document declares."""

PREDICTIONS_DATA = {
    "deployment": "provault:deployment/<name>/<uuid> (the deployment served from)",
    "model": "sha256:<hex> (the model served)",
    "columns": ["id", "time", "input", "output"],
    "rows": "[[prediction id, RFC 3339 time, input digest sha256:<hex>, output digest sha256:<hex> or a short JSON value], ...]",
}
"""Shape of ``data`` in a ``predictions.logged`` event (documentation)."""


def _local(text: str) -> str:
    """A local name safe in a PROV qualified name (spaces and the like escaped)."""
    return quote(text, safe="@._-~/=+")


def run_id(run_uuid: str) -> str:
    return f"provault:run/{run_uuid}"


def git_id(commit: str) -> str:
    return f"provault:git/{commit}"


def person_id(who: str) -> str:
    return f"provault:person/{_local(who)}"


def service_id(name: str) -> str:
    return f"provault:service/{_local(name)}"


def host_id(name: str) -> str:
    return f"provault:host/{_local(name)}"


def deployment_id(name: str, deploy_uuid: str) -> str:
    return f"provault:deployment/{_local(name)}/{deploy_uuid}"


def deploy_activity_id(deploy_uuid: str) -> str:
    return f"provault:deploy/{deploy_uuid}"


PREDICT_PREFIX = "provault:predict/"
"""The id prefix of a batch of served predictions (an activity)."""


def predict_batch_id(batch_uuid: str) -> str:
    return f"{PREDICT_PREFIX}{batch_uuid}"


def prediction_id(pid: str) -> str:
    return f"provault:prediction/{_local(pid)}"


# --- OpenLineage (docs/openlineage.md) ------------------------------------------------------

OPENLINEAGE_RUN = "openlineage.run"
OPENLINEAGE_JOB = "openlineage.job"
OPENLINEAGE_DATASET = "openlineage.dataset"
OPENLINEAGE_KINDS = (OPENLINEAGE_RUN, OPENLINEAGE_JOB, OPENLINEAGE_DATASET)


def _ol_namespace(namespace: str) -> str:
    """A namespace percent-encoded whole, so its ``/`` and ``:`` cannot be mistaken for the separator."""
    return quote(namespace, safe="")


def _ol_name(name: str) -> str:
    """A name with spaces and the like escaped, and ``@`` too: it separates a dataset from its version."""
    return quote(name, safe="._-~/=+")


def ol_run_id(run_uuid: str) -> str:
    return f"provault:ol/run/{run_uuid.lower()}"


def ol_job_id(namespace: str, name: str) -> str:
    return f"provault:ol/job/{_ol_namespace(namespace)}/{_ol_name(name)}"


def ol_dataset_id(namespace: str, name: str) -> str:
    return f"provault:ol/dataset/{_ol_namespace(namespace)}/{_ol_name(name)}"


def ol_dataset_version_id(namespace: str, name: str, *, version: str | None = None, run_uuid: str | None = None) -> str:
    """The node of one version of a dataset: its content id, its named version, or the run that wrote it."""
    if version is not None:
        if len(version) == 71 and version.startswith("sha256:") and all(c in "0123456789abcdef" for c in version[7:]):
            return version
        return f"{ol_dataset_id(namespace, name)}@{_local(version)}"
    if run_uuid is None:
        raise ValueError("a dataset version needs a version or the run that wrote it")
    return f"{ol_dataset_id(namespace, name)}@run/{run_uuid.lower()}"


def openlineage_node_candidates(text: str) -> list[str]:
    """The node ids a Marquez-style node name may mean: ``dataset:<ns>:<name>``, ``job:<ns>:<name>``, ``run:<uuid>``.

    A namespace may itself hold ``:`` (``postgres://db:5432``), so every split
    point is a candidate, the last one first; the caller keeps the one that exists.
    Any other text gives no candidate.
    """
    head, sep, rest = text.partition(":")
    if not sep or not rest:
        return []
    if head == "run":
        return [ol_run_id(rest)]
    make = {"dataset": ol_dataset_id, "job": ol_job_id}.get(head)
    if make is None:
        return []
    cuts = [i for i, c in enumerate(rest) if c == ":" and 0 < i < len(rest) - 1]
    return [make(rest[:i], rest[i + 1 :]) for i in reversed(cuts)]


# --- MLflow (docs/mlflow.md) ---------------------------------------------------------------

MODEL_UNDEPLOYED = "model.undeployed"
"""An alias was deleted or a version left Staging / Production: the target no longer serves it."""


def undeploy_activity_id(undeploy_uuid: str) -> str:
    return f"provault:undeploy/{undeploy_uuid}"


def mlflow_run_id(run_id: str) -> str:
    """The activity of an MLflow run: its id is MLflow's (32 hex digits on every store MLflow ships)."""
    return f"provault:mlflow/run/{_local(run_id)}"


def mlflow_model_id(model_id: str) -> str:
    """An MLflow 3 logged model (``m-<hex>``), the general entity its content is a specialization of."""
    return f"provault:mlflow/model/{_local(model_id)}"


def mlflow_version_id(name: str, version: str | int) -> str:
    """A registered model version: ``models:/<name>/<version>``."""
    return f"provault:mlflow/registered/{_ol_name(name)}/{_local(str(version))}"


def mlflow_dataset_id(name: str, digest: str) -> str:
    """An MLflow dataset with no source to name it by: MLflow's own digest of it."""
    return f"provault:mlflow/dataset/{_ol_name(name)}/{_local(digest)}"


def mlflow_node_candidates(text: str) -> list[str]:
    """The node an MLflow URI names: ``runs:/<run id>[/path]``, ``models:/<model id>``, ``models:/<name>/<version>``.

    Any other text gives no candidate (aliases and stages move: ask for the version).
    """
    if text.startswith("runs:/"):
        run = text[len("runs:/") :].strip("/").split("/", 1)[0]
        return [mlflow_run_id(run)] if run else []
    if not text.startswith("models:/"):
        return []
    rest = text[len("models:/") :].strip("/")
    if not rest or "@" in rest:
        return []
    name, sep, version = rest.rpartition("/")
    if sep and name and version.isdigit():
        return [mlflow_version_id(name, version)]
    return [mlflow_model_id(rest)] if "/" not in rest else []


# --- supply chain (docs/supply-chain.md) ----------------------------------------------------

MODEL_APPROVED = "model.approved"
"""A person's approval of a model, signed by the approver's own key (the gate counts these)."""
QUARANTINE_PLACED = "quarantine.placed"
"""A dataset, a code commit or a key taken out of use; the gate refuses what it reaches."""
GATE_DECIDED = "gate.decided"
"""A deployment gate's verdict on a model, signed by the attestation key."""
ATTESTATION_ISSUED = "attestation.issued"
"""An in-toto provenance attestation issued for a model, signed by the attestation key."""
QUARANTINE_TARGET_TYPES = ("dataset", "commit", "key")
APPROVER_ROLE = "provault:approver"
"""``prov:role`` of an approver's association."""
KEY_TARGET_PREFIX = "key:"
"""A quarantine's target when it is a key: ``key:<keyid>``."""
KEY_NODE_PREFIX = "provault:key/"
"""The node of a key: the projection's synthetic entity for it, and what a quarantine of the key invalidates."""


def key_node_id(keyid: str) -> str:
    """``provault:key/<keyid>``: the entity a quarantine of a key names (``wasInvalidatedBy`` the quarantine)."""
    return f"{KEY_NODE_PREFIX}{keyid}"


def approval_activity_id(approval_uuid: str) -> str:
    return f"provault:approval/{approval_uuid}"


def quarantine_activity_id(quarantine_uuid: str) -> str:
    return f"provault:quarantine/{quarantine_uuid}"


def gate_activity_id(gate_uuid: str) -> str:
    return f"provault:gate/{gate_uuid}"


def attestation_activity_id(attestation_uuid: str) -> str:
    return f"provault:attestation/{attestation_uuid}"

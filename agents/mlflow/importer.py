"""``provault import mlflow``: record what a tracking server already holds, once.

Finished runs (one ``run.completed`` / ``run.failed`` event each, start and
end together), their logged models (digested), every registered version and
each version's current aliases and stage.  Each thing recorded is marked
(:mod:`._marks`); a thing already marked, by an earlier import, the plugin
or the webhook receiver on this data directory, is skipped, so a second
import adds nothing.  Runs still running are left for a later import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _facts, _mapping
from ._marks import Marks
from .recorder import TERMINAL, record_alias, record_stage, version_facts

log = logging.getLogger("provault.mlflow")

PAGE = 1000


@dataclass
class ImportReport:
    runs: int = 0
    models: int = 0
    versions: int = 0
    aliases: int = 0
    stages: int = 0
    skipped: int = 0
    """Things already recorded."""
    unfinished: int = 0
    """Runs still running (or scheduled): not recorded yet."""
    problems: list[str] = field(default_factory=list)

    @property
    def recorded(self) -> int:
        return self.runs + self.models + self.versions + self.aliases + self.stages


class Importer:
    """Reads one tracking server with an :class:`mlflow.MlflowClient` and records with ``emit``."""

    def __init__(self, client: Any, marks: Marks, emit: Callable[..., str], *, tracking: str | None) -> None:
        self.client = client
        self.marks = marks
        self._emit = emit
        self.tracking = _facts.clean_uri(tracking)
        self.report = ImportReport()

    def emit(self, kind: str, prov: dict, *, data: dict | None = None, when=None) -> str:
        return self._emit(kind, prov, data=data, time=when)

    # --- runs and models -------------------------------------------------------------------

    def experiments(self, name: str | None) -> list[Any]:
        from mlflow.entities import ViewType  # noqa: PLC0415 - MLflow is the optional extra

        if name is not None:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise LookupError(f"no experiment named {name!r} on {self.tracking}")
            return [found]
        out, token = [], None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ALL, max_results=PAGE, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _runs(self, experiment_id: str) -> Iterator[Any]:
        from mlflow.entities import ViewType  # noqa: PLC0415

        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], run_view_type=ViewType.ALL, max_results=PAGE, page_token=token
            )
            yield from page
            token = page.token
            if not token:
                return

    def import_experiment(self, experiment: Any) -> None:
        models = self._logged_models(experiment.experiment_id)
        by_run: dict[str, list[Any]] = {}
        for model in models:
            by_run.setdefault(model.source_run_id or "", []).append(model)
        batch: list[Any] = []
        for run in self._runs(experiment.experiment_id):
            batch.append(run)
            if len(batch) >= PAGE:
                self._import_runs(batch, experiment, by_run)
                batch = []
        self._import_runs(batch, experiment, by_run)
        for model in by_run.pop("", []):  # models logged outside a run
            self._import_model(model, None)

    def _logged_models(self, experiment_id: str) -> list[Any]:
        search = getattr(self.client, "search_logged_models", None)
        if search is None:
            return []
        out, token = [], None
        while True:
            page = search(experiment_ids=[experiment_id], max_results=100, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _import_runs(self, runs: list[Any], experiment: Any, by_run: dict[str, list[Any]]) -> None:
        keys = [f"run:{r.info.run_id}:end" for r in runs]
        done = self.marks.known(keys)
        marks: list[tuple[str, str, str | None]] = []
        for run, key in zip(runs, keys, strict=True):
            models = by_run.get(run.info.run_id, [])
            if key in done:
                self.report.skipped += 1
                for model in models:
                    self._import_model(model, None)
                continue
            if str(run.info.status) not in TERMINAL:
                self.report.unfinished += 1
                continue
            facts = _facts.run_facts(run, tracking=self.tracking, experiment_name=experiment.name)
            for model in models:
                content = self._import_model(model, facts)
                facts.models[model.model_id] = content
            kind, prov = _mapping.run_ended(facts, with_start=True)
            event_id = self.emit(kind, prov, when=_mapping.ms_datetime(run.info.end_time or run.info.start_time))
            marks.append((key, event_id, None))
            self.report.runs += 1
        self.marks.put_many(marks)

    def _import_model(self, model: Any, run: _mapping.RunFacts | None) -> str | None:
        key = f"model:{model.model_id}"
        known = self.marks.get(key)
        if known is not None:
            self.report.skipped += 1
            return known[1]
        if model.status != "READY":  # LoggedModelStatus is a str enum
            return None
        facts = _facts.model_facts(model)
        if facts.digest_error:
            self.report.problems.append(f"model {model.model_id}: {facts.digest_error}")
        event_id = self.emit(
            "model.registered", _mapping.logged_model(facts, run), when=_mapping.ms_datetime(facts.created_ms)
        )
        content = facts.content.id if facts.content is not None else None
        self.marks.put(key, event_id, content)
        self.report.models += 1
        return content

    # --- the registry ----------------------------------------------------------------------

    def import_registry(self) -> None:
        token = None
        while True:
            page = self.client.search_registered_models(max_results=PAGE, page_token=token)
            for registered in page:
                self._import_registered(registered)
            token = page.token
            if not token:
                return

    def _import_registered(self, registered: Any) -> None:
        name = registered.name
        token, versions = None, []
        while True:
            page = self.client.search_model_versions(f"name = '{_quoted(name)}'", max_results=PAGE, page_token=token)
            versions.extend(page)
            token = page.token
            if not token:
                break
        for version in sorted(versions, key=lambda v: int(v.version)):
            key = f"version:{name}/{version.version}"
            if self.marks.has(key):
                self.report.skipped += 1
            else:
                facts = version_facts(version, self.marks)
                prov = _mapping.version_registered(facts, getattr(version, "user_id", None) or None)
                event_id = self.emit("model.registered", prov, when=_mapping.ms_datetime(version.creation_timestamp))
                self.marks.put(key, event_id, facts.content)
                self.report.versions += 1
            stage = getattr(version, "current_stage", None)
            if stage in _mapping.DEPLOY_STAGES:
                if self.marks.has(f"stage:{name}/{version.version}={stage}"):
                    self.report.skipped += 1
                else:
                    when = _mapping.ms_time(version.last_updated_timestamp)
                    record_stage(self, name, str(version.version), stage, who=None, when=when)
                    self.report.stages += 1
        for alias, version in sorted((getattr(registered, "aliases", None) or {}).items()):
            if self.marks.has(f"alias:{name}@{alias}={version}"):
                self.report.skipped += 1
                continue
            record_alias(self, name, alias, str(version), who=None, extra={"provault:imported": True})
            self.report.aliases += 1


def _quoted(name: str) -> str:
    return name.replace("\\", "\\\\").replace("'", "\\'")

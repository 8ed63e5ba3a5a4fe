"""Rows only some kinds add: key nodes for key events, prediction rows for predictions.logged."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ledger.core.errors import InvalidEvent, expected_found
from ledger.core.events import Event, format_time, parse_time
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, parse_registration, parse_revocation
from ledger.core.vocab import key_node_id, prediction_id

from ._builder import _IDENTITY_NODES, _Builder
from ._names import _thaw
from ._rows import KEY_KIND, PREDICT_PREFIX, PREDICTION_PREFIX, PredictionRow, UnprojectableEntry

_PREDICTION_COLUMNS = ("id", "time", "input", "output")

# --- kind-specific rows ------------------------------------------------------------


def _key_rows(event: Event, b: _Builder) -> None:
    if event.kind == KEY_REGISTERED:
        reg = parse_registration(event)
        key = key_node_id(reg.keyid)
        b.synthetic(
            key,
            "entity",
            {
                "prov:type": KEY_KIND,
                "provault:keyid": reg.keyid,
                "provault:role": reg.role,
                "provault:kinds": list(reg.kinds),
                "provault:producers": list(reg.producers),
            },
        )
        make_id, agent_type = _IDENTITY_NODES[reg.identity["type"]]
        agent = make_id(reg.identity["name"])
        b.synthetic(agent, "agent", {"prov:type": agent_type, "prov:label": reg.identity["name"]})
        b.edge("wasAttributedTo", key, agent, stmt_id="_:key", origin="key", attributes={})
    elif event.kind == KEY_REVOKED:
        rev = parse_revocation(event)
        b.synthetic(
            key_node_id(rev.keyid),
            "entity",
            {
                "provault:revokedFrom": {"$": format_time(rev.effective_from), "type": "xsd:dateTime"},
                "provault:revocationReason": rev.reason,
            },
        )


def _batch_activity(b: _Builder) -> str:
    declared = [nid for nid, m in b.mentions.items() if m.declared and m.node_type == "activity"]
    batches = [nid for nid in declared if nid.startswith(PREDICT_PREFIX)] or declared
    if len(batches) != 1:
        raise UnprojectableEntry(
            expected_found(
                "predictions.logged activities", f"exactly one ({PREDICT_PREFIX}<uuid>)", sorted(batches) or "none"
            ),
            hint="declare the batch activity in the event's prov 'activity' section",
        )
    return batches[0]


def _columns(data: Mapping[str, Any]) -> tuple[str, ...]:
    columns = data.get("columns")
    if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
        raise UnprojectableEntry(expected_found("data.columns", "a list of column names", repr(columns)[:80]))
    if len(set(columns)) != len(columns) or not {"id", "time"} <= set(columns):
        raise UnprojectableEntry(
            expected_found("data.columns", "distinct names including 'id' and 'time'", list(columns)[:8]),
            hint=f"columns are {', '.join(_PREDICTION_COLUMNS)}",
        )
    return tuple(columns)


def _prediction(columns: Sequence[str], row: Any, index: int, activity: str) -> PredictionRow:
    where = f"data.rows[{index}]"
    if not isinstance(row, (list, tuple)) or len(row) != len(columns):
        raise UnprojectableEntry(expected_found(where, f"an array of {len(columns)} values", repr(_thaw(row))[:80]))
    rec = dict(zip(columns, row, strict=True))
    pid = rec["id"]
    if not isinstance(pid, str) or not pid:
        raise UnprojectableEntry(expected_found(f"{where} id", "a non-empty string", repr(_thaw(pid))[:80]))
    if not isinstance(rec["time"], str):
        raise UnprojectableEntry(expected_found(f"{where} time", "an RFC 3339 string", repr(_thaw(rec["time"]))[:80]))
    try:
        time = parse_time(rec["time"])
    except InvalidEvent as e:
        raise UnprojectableEntry(f"{where}: {e.message}") from None
    node = pid if pid.startswith(PREDICTION_PREFIX) else prediction_id(pid)
    return PredictionRow(
        id=node, activity=activity, time=time, input=_thaw(rec.get("input")), output=_thaw(rec.get("output"))
    )


# What provault's serving agent writes: ids that need no escaping, times in the canonical form.
_PLAIN_ID = re.compile(r"[A-Za-z0-9@._~/=+-]+", re.ASCII)
_PLAIN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z", re.ASCII)


def _plain_predictions(columns: Sequence[str], rows: list[Any], activity: str) -> list[PredictionRow] | None:
    """The rows of a batch in plain JSON values (lists, dicts) when every row is in the usual form, else None.

    Gives the same rows as :func:`_prediction`; a batch with anything else
    goes through that, which names the first problem.
    """
    at = {c: i for i, c in enumerate(columns)}
    i_id, i_time, i_in, i_out = at["id"], at["time"], at.get("input"), at.get("output")
    width = len(columns)
    out: list[PredictionRow] = []
    for row in rows:
        if type(row) is not list or len(row) != width:
            return None
        pid, t = row[i_id], row[i_time]
        if type(pid) is not str or type(t) is not str or not _PLAIN_ID.fullmatch(pid) or not _PLAIN_TIME.fullmatch(t):
            return None
        try:
            time = datetime.fromisoformat(t)
        except ValueError:  # not a calendar date: parse_time names it
            return None
        out.append(
            PredictionRow(
                id=pid if pid.startswith(PREDICTION_PREFIX) else PREDICTION_PREFIX + pid,
                activity=activity,
                time=time,
                input=None if i_in is None else row[i_in],
                output=None if i_out is None else row[i_out],
            )
        )
    return out


def _prediction_rows(data: Mapping[str, Any] | None, b: _Builder, *, plain: bool = False) -> tuple[PredictionRow, ...]:
    """The prediction index rows of a batch; ``plain``: ``data`` holds plain decoded JSON (dicts and lists)."""
    if data is None:
        raise UnprojectableEntry(
            "predictions.logged has no data", hint="the predictions go in data.columns / data.rows"
        )
    columns = _columns(data)
    rows = data.get("rows")
    if not isinstance(rows, (list, tuple)):
        raise UnprojectableEntry(expected_found("data.rows", "an array of rows", repr(rows)[:80]))
    activity = _batch_activity(b)
    out = _plain_predictions(columns, rows, activity) if plain else None
    if out is None:
        out = [_prediction(columns, row, i, activity) for i, row in enumerate(rows)]
    if len({p.id for p in out}) != len(out):
        seen: set[str] = set()
        for i, p in enumerate(out):
            if p.id in seen:
                raise UnprojectableEntry(f"data.rows[{i}]: prediction id {p.id!r} appears more than once in the batch")
            seen.add(p.id)
    return tuple(out)

"""What the trace table shows for a node: its label, and the name it was registered under when a later use
labels the same content differently (issue 19.8: the table showed only the file name a run used)."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from agents._prov import resolve_artifact
from agents.assets import dataset_event
from query._mapping import fold_attributes
from query.render import display_label
from query.traverse import TraceNode


def _node(attributes: dict, node_type: str = "entity") -> TraceNode:
    label = attributes.get("prov:label")
    return TraceNode(
        id="sha256:" + "ab" * 32,
        type=node_type,
        label=label,
        kind=None,
        attributes=MappingProxyType(attributes),
        first_seq=0,
    )


def test_a_registered_dataset_a_run_later_used_by_file_shows_both_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("agents._prov._default_cache", None)
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    registered = dataset_event(data, name="transactions", author="alice@example.com")
    (attrs,) = registered.prov["entity"].values()
    assert attrs["prov:label"] == attrs["provault:name"] == "transactions"
    used = resolve_artifact(data, "data", None)
    assert used.id == registered.id and used.attributes()["prov:label"] == "train.csv"
    folded = fold_attributes([attrs, used.attributes()])  # what the projection holds: the later label wins
    assert display_label(_node(folded)) == "train.csv [registered as transactions]"
    assert display_label(_node(attrs)) == "transactions"


@pytest.mark.parametrize(
    ("attributes", "node_type", "shown"),
    [
        ({"prov:label": "train.csv"}, "entity", "train.csv"),
        ({"provault:name": "transactions"}, "entity", "transactions"),
        ({"prov:label": "x", "provault:name": 7}, "entity", "x"),
        ({"prov:label": "x", "provault:name": ""}, "entity", "x"),
        ({"provault:name": "train fraud"}, "activity", ""),  # a run's name is an attribute, not a registration
        ({}, "entity", ""),
    ],
)
def test_labels_without_a_distinct_registered_name_are_shown_as_they_are(
    attributes: dict, node_type: str, shown: str
) -> None:
    assert display_label(_node(attributes, node_type)) == shown

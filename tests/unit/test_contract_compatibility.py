"""The generated schemas stay compatible with the last published ones (docs/decisions/0013-contract-compatibility.md).

docs/contracts/published/<name>.v<N>.schema.json is what readers and writers of a topic were promised. Within a
version a change may only add: a schema imgsweep *produces* (outcomes, dead-letter headers) may gain members but
never lose one, make a required one optional, add a type or an enum value a reader does not expect, or forbid
unknown members; a schema imgsweep *consumes* (input) may accept more but never reject what it accepted: no
new required member, no type or enum value dropped, no tighter limit. A breaking change is a new version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from service.contracts import PUBLISHED_DIR, for_readers, render_contracts

Side = Literal["produced", "consumed"]
"""Who the schema's documents come from: imgsweep (its readers may break) or others (imgsweep may refuse them)."""

CONTRACTS: dict[str, Side] = {
    "outcome-event": "produced",
    "dead-letter-headers": "produced",
    "input-event": "consumed",
}
CURRENT_VERSION = 1

LIMITS_THAT_TIGHTEN_DOWN = ("maxLength", "maxItems", "maximum")
LIMITS_THAT_TIGHTEN_UP = ("minLength", "minItems", "minimum")


class Schema:
    """A schema node with local ``$ref``s resolved against its document's ``$defs``."""

    def __init__(self, node: Any, root: dict[str, Any]) -> None:
        while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/$defs/"):
            node = root["$defs"][node["$ref"].removeprefix("#/$defs/")]
        self.node: dict[str, Any] = node if isinstance(node, dict) else {}
        self.root = root

    def branches(self) -> Iterator[Schema]:
        """This node and, for a union, each member (pydantic writes ``X | None`` as anyOf)."""
        yield self
        for key in ("anyOf", "oneOf", "allOf"):
            for member in self.node.get(key, []):
                yield from Schema(member, self.root).branches()

    def types(self) -> set[str]:
        found: set[str] = set()
        for branch in self.branches():
            declared = branch.node.get("type")
            found.update([declared] if isinstance(declared, str) else declared or [])
            for value in [*branch.node.get("enum", []), *([branch.node["const"]] if "const" in branch.node else [])]:
                found.add({str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(value), "null"))
        return found

    def enum(self) -> set[str] | None:
        values = [
            value
            for branch in self.branches()
            for value in [*branch.node.get("enum", []), *([branch.node["const"]] if "const" in branch.node else [])]
        ]
        return {json.dumps(value) for value in values} or None

    def properties(self) -> dict[str, Schema]:
        return {
            name: Schema(value, self.root)
            for branch in self.branches()
            for name, value in branch.node.get("properties", {}).items()
        }

    def required(self) -> set[str]:
        return {name for branch in self.branches() for name in branch.node.get("required", [])}

    def closed(self) -> bool:
        return any(branch.node.get("additionalProperties") is False for branch in self.branches())

    def items(self) -> Schema | None:
        for branch in self.branches():
            if "items" in branch.node:
                return Schema(branch.node["items"], self.root)
        return None

    def limit(self, name: str) -> Any:
        return next((branch.node[name] for branch in self.branches() if name in branch.node), None)


def breaking_changes(old: Schema, new: Schema, side: Side, path: str = "") -> list[str]:
    """Every way ``new`` breaks a reader (produced) or a writer (consumed) that relied on ``old``."""
    found = node_changes(old, new, side, path or "/")
    if side == "consumed":
        found += limit_changes(old, new, path or "/")
    new_properties = new.properties()
    for name, before in old.properties().items():
        if name not in new_properties:
            found.append(f"{path}/{name}: member removed")
        else:
            found += breaking_changes(before, new_properties[name], side, f"{path}/{name}")
    old_items, new_items = old.items(), new.items()
    if old_items is not None and new_items is not None:
        found += breaking_changes(old_items, new_items, side, f"{path}[]")
    return found


def node_changes(old: Schema, new: Schema, side: Side, where: str) -> list[str]:
    """Types, enum values, required members and openness of one node."""
    found: list[str] = []
    old_types, new_types = old.types(), new.types()
    if side == "consumed" and old_types - new_types:
        found.append(f"{where}: type narrowed from {sorted(old_types)} to {sorted(new_types)}")
    if side == "produced" and old_types and new_types - old_types:
        found.append(f"{where}: new type {sorted(new_types - old_types)} a reader does not expect")
    old_enum, new_enum = old.enum(), new.enum()
    if old_enum is not None:
        if new_enum is not None and old_enum - new_enum:
            found.append(f"{where}: enum value(s) {sorted(old_enum - new_enum)} removed")
        if side == "produced" and not old.node.get("x-open-enum") and (new_enum is None or new_enum - old_enum):
            added = sorted(new_enum - old_enum) if new_enum else "any value"
            found.append(f"{where}: enum value(s) {added} a reader does not expect")
    if new.closed() and not old.closed():
        found.append(f"{where}: unknown members now forbidden")
    if side == "produced" and old.closed() and new.properties().keys() - old.properties().keys():
        added = sorted(new.properties().keys() - old.properties().keys())
        found.append(f"{where}: member(s) {added} added where the published schema forbids unknown members")
    if side == "produced":
        found += [f"{where}: required {name!r} no longer required" for name in sorted(old.required() - new.required())]
    else:
        found += [f"{where}: {name!r} now required" for name in sorted(new.required() - old.required())]
    return found


def limit_changes(old: Schema, new: Schema, where: str) -> list[str]:
    """What a writer's document may no longer be: a shorter maximum, a longer minimum, another pattern."""
    found: list[str] = []
    for name in (*LIMITS_THAT_TIGHTEN_DOWN, *LIMITS_THAT_TIGHTEN_UP):
        before, after = old.limit(name), new.limit(name)
        if after is None or after == before:
            continue
        if before is None or (after < before if name in LIMITS_THAT_TIGHTEN_DOWN else after > before):
            found.append(f"{where}: {name} tightened from {before} to {after}")
    if new.limit("pattern") not in (None, old.limit("pattern")):
        found.append(f"{where}: pattern changed from {old.limit('pattern')!r} to {new.limit('pattern')!r}")
    return found


def compare(old: dict[str, Any], new: dict[str, Any], side: Side) -> list[str]:
    return breaking_changes(Schema(old, old), Schema(new, new), side)


def published(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PUBLISHED_DIR / f"{name}.v{CURRENT_VERSION}.schema.json").read_text())
    return loaded


@pytest.mark.parametrize(("name", "side"), CONTRACTS.items())
def test_the_generated_schema_is_a_compatible_successor_of_the_published_one(name: str, side: Side) -> None:
    generated = json.loads(render_contracts()[f"{name}.schema.json"])
    assert compare(published(name), generated, side) == [], (
        f"{name}: a breaking change within v{CURRENT_VERSION}; see docs/decisions/0013-contract-compatibility.md"
    )


@pytest.mark.parametrize("name", CONTRACTS)
def test_a_published_schema_lets_readers_ignore_what_is_added(name: str) -> None:
    assert for_readers(published(name)) == published(name), f"{name}: additionalProperties false is published"


OUTCOME: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"enum": ["deleted", "failed"], "type": "string"},
        "attempts": {"type": "integer"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "images": {"type": "array", "items": {"$ref": "#/$defs/Image"}},
    },
    "required": ["status", "attempts"],
    "$defs": {"Image": {"type": "object", "properties": {"id": {"type": "string", "maxLength": 10}}}},
}


def test_an_open_enum_may_gain_values_within_a_version_but_not_lose_them() -> None:
    old: dict[str, Any] = json.loads(json.dumps(OUTCOME))
    old["properties"]["status"]["x-open-enum"] = True
    new: dict[str, Any] = json.loads(json.dumps(old))
    new["properties"]["status"]["enum"].append("cancelled")
    assert compare(old, new, "produced") == []
    new["properties"]["status"]["enum"].remove("failed")
    assert compare(old, new, "produced") == ["/status: enum value(s) ['\"failed\"'] removed"]


def changed(edit: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(OUTCOME))
    exec(edit, {"doc": document})  # noqa: S102  # one line of test data each
    return document


@pytest.mark.parametrize(
    ("edit", "side", "problem"),
    [
        ("doc['required'].remove('attempts')", "produced", "required 'attempts' no longer required"),
        ("del doc['properties']['note']", "produced", "/note: member removed"),
        ("doc['properties']['status']['enum'].remove('failed')", "consumed", "removed"),
        ("doc['properties']['status']['enum'].append('cancelled')", "produced", "a reader does not expect"),
        ("doc['properties']['note'] = {'type': 'string'}", "consumed", "type narrowed"),
        ("doc['properties']['attempts']['type'] = 'string'", "produced", "a reader does not expect"),
        ("doc['additionalProperties'] = False", "produced", "unknown members now forbidden"),
        ("doc['required'].append('note')", "consumed", "'note' now required"),
        ("doc['$defs']['Image']['properties']['id']['maxLength'] = 5", "consumed", "/images[]/id: maxLength"),
        ("doc['$defs']['Image']['properties']['id']['pattern'] = '^[a-z]+$'", "consumed", "/images[]/id: pattern"),
        ("del doc['$defs']['Image']['properties']['id']", "produced", "/images[]/id: member removed"),
    ],
)
def test_each_breaking_change_is_caught(edit: str, side: Side, problem: str) -> None:
    problems = compare(OUTCOME, changed(edit), side)
    assert any(problem in found for found in problems), problems


def test_a_member_added_to_a_closed_published_schema_breaks_its_readers() -> None:
    """How v1 broke before this check: the first outcome schema forbade unknown members, then gained some."""
    closed = {**OUTCOME, "additionalProperties": False}
    grown = {**closed, "properties": {**OUTCOME["properties"], "kind": {"type": "string"}}}
    assert compare(closed, grown, "produced") == [
        "/: member(s) ['kind'] added where the published schema forbids unknown members"
    ]


@pytest.mark.parametrize(
    ("edit", "side"),
    [
        (
            "doc['properties']['kind'] = {'enum': ['delist'], 'type': 'string'}; doc['required'].append('kind')",
            "produced",
        ),
        ("doc['properties']['extra'] = {'type': 'string'}", "consumed"),
        ("doc['properties']['status']['enum'].append('cancelled')", "consumed"),
        ("doc['$defs']['Image']['properties']['id']['maxLength'] = 20", "consumed"),
        ("doc['properties']['note'] = {'type': 'string'}", "produced"),
    ],
)
def test_additive_changes_pass(edit: str, side: Side) -> None:
    assert compare(OUTCOME, changed(edit), side) == []

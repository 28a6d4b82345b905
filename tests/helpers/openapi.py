"""Checks against the OpenAPI document: its $refs, schema validators, an answer's conformance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import orjson

from tests.helpers.admin_client import Answer


def refs(value: Any) -> Iterator[str]:
    """Every $ref in a document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """The node a local $ref (`#/...`) points at."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A 2020-12 validator for schema, whose $refs point into doc's components."""
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        **schema,
    }
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def assert_conforms(doc: dict[str, Any], template: str, method: str, answer: Answer) -> None:
    """The answer's status is documented for the operation, and its body fits the schema."""
    operation = doc["paths"][template][method.lower()]
    response = operation["responses"].get(str(answer.status))
    assert response is not None, f"{method} {template}: {answer.status} is not documented"
    if "$ref" in response:
        response = resolve(doc, response["$ref"])
    content = response.get("content")
    if content is None:
        assert answer.body == b""
        return
    [(media_type, media)] = content.items()
    assert answer.headers["Content-Type"].startswith(media_type)
    validator(doc, media["schema"]).validate(orjson.loads(answer.body))

"""Images to put in the sandbox's collections, from an admin call or a ``--seed-file``.

A seed record is a JSON object naming a collection and its images, either as a list or as one image::

    {"collection_name": "c", "items": [{"product_id": "p1", "image_id": "i1.jpg"}, ...]}
    {"collection_name": "c", "product_id": "p1", "image_id": "i1.jpg"}

``image_id_list`` is accepted for ``items``, so a request body of the API seeds what it would delete. A file
ending in ``.jsonl`` holds one record per line; any other file holds one record or a list of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from service.sandbox.protocol import ImageKey

__all__ = ["InvalidSeed", "SeedBatch", "load_seed_file", "parse_seed_record"]


class InvalidSeed(ValueError):
    """A seed record or file is not what the module docstring describes; the message says where."""


@dataclass(frozen=True, slots=True)
class SeedBatch:
    collection: str
    items: tuple[ImageKey, ...]


def parse_seed_record(record: object) -> SeedBatch:
    if not isinstance(record, dict):
        raise InvalidSeed("a seed record must be a JSON object")
    collection = record.get("collection_name")
    if not isinstance(collection, str) or not collection:
        raise InvalidSeed("collection_name must be a non-empty string")
    if "product_id" in record or "image_id" in record:
        return SeedBatch(collection, (_image(record),))
    entries = record.get("items", record.get("image_id_list"))
    if not isinstance(entries, list):
        raise InvalidSeed("a seed record needs items (a list of {product_id, image_id}) or product_id and image_id")
    return SeedBatch(collection, tuple(_image(entry) for entry in entries))


def _image(entry: object) -> ImageKey:
    if not isinstance(entry, dict):
        raise InvalidSeed("an image must be an object with product_id and image_id")
    product_id, image_id = entry.get("product_id"), entry.get("image_id")
    if not isinstance(product_id, str) or not isinstance(image_id, str):
        raise InvalidSeed("product_id and image_id must be strings")
    return (product_id, image_id)


def load_seed_file(path: Path) -> list[SeedBatch]:
    """Read and validate a whole seed file; raises :class:`InvalidSeed` naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidSeed(f"{path}: cannot read: {error}") from None
    if path.suffix == ".jsonl":
        batches = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                batches.append(_parse_located(line, f"{path}:{number}"))
        return batches
    try:
        document = json.loads(text)
    except ValueError as error:
        raise InvalidSeed(f"{path}: not JSON: {error}") from None
    records = document if isinstance(document, list) else [document]
    try:
        return [parse_seed_record(record) for record in records]
    except InvalidSeed as error:
        raise InvalidSeed(f"{path}: {error}") from None


def _parse_located(line: str, where: str) -> SeedBatch:
    try:
        return parse_seed_record(json.loads(line))
    except ValueError as error:  # InvalidSeed and json.JSONDecodeError alike
        raise InvalidSeed(f"{where}: {error}") from None

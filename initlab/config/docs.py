"""The schema described for people: each key's text and its default, type and choices (the
README's config reference, ``initlab.reference``)."""

from __future__ import annotations

from dataclasses import fields

from initlab.config.schema import DEFAULTS, FIELDS, NAME_DOC, SECTIONS


def field_docs() -> dict[str, str]:
    """``dotted key -> what it does``, for every key (the README's config reference)."""
    docs = {"name": NAME_DOC}
    for section, cls in SECTIONS.items():
        docs.update({f"{section}.{f.name}": f.metadata["doc"] for f in fields(cls)})
    return docs


def field_specs() -> dict[str, tuple[object, type, bool, tuple[str, ...]]]:
    """``dotted key -> (default, kind, accepts null, choices)`` for every key."""
    return {key: (DEFAULTS[key], spec.kind, spec.optional, spec.choices)
            for key, spec in FIELDS.items()}

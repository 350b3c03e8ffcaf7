"""Back from an image: the fields that made it, as a call takes them.

    fields = mm.fields_of("out/fox.png")      # {"prompt": "A fox", "model": ..., "seed": 3}
    again = mm.generate(**fields)              # the same request body

A saved file carries its provenance (`results/metadata.py`); an image of a result carries
its request in `.info`. What comes back is the request body's fields without how the
answer travelled (`stream`, `partial_images`, `response_format`), and fields this package
does not know under `params`, as `mm.generate` takes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..results.metadata import PROVENANCE, read_metadata
from ..schema import REQUEST_FIELDS
from ..store.keys import DELIVERY_FIELDS


def fields_of(source: Any) -> dict[str, Any]:
    """The fields that made an image: `source` is a path of a saved image, or a PIL image
    (of a result, or opened from a saved file). The prompt, the request's fields, and
    `params` (fields this package does not know), so `mm.generate(**fields)` asks for it
    again. An edit's input images come back as their `sha256:` digests (see
    `read_metadata(path)["inputs"]` for where they came from). An `OptionError` when the
    image carries no provenance."""
    body = _body_of(source)
    if body is None:
        raise OptionError(
            f"{_name(source)} carries no mesh-magics provenance: it was not saved by "
            "mesh-magics (result.save, --save), or its metadata was stripped"
        )
    fields: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, value in body.items():
        if key in DELIVERY_FIELDS:
            continue
        if key == "prompt" or key in REQUEST_FIELDS:
            fields[key] = value
        else:
            params[key] = value
    if params:
        fields["params"] = params
    return fields


def _body_of(source: Any) -> dict[str, Any] | None:
    """The request body that made `source`, or None where it records none."""
    if isinstance(source, str | os.PathLike):
        return _from_metadata(_read(source))
    info = getattr(source, "info", None)
    if not isinstance(info, Mapping):
        raise OptionError(
            f"fields_of takes a path of a saved image or a PIL image, not {type(source).__name__}"
        )
    request = info.get("request")  # a result's image: the body; a saved PNG: its JSON text
    if isinstance(request, str):
        try:
            request = json.loads(request)
        except ValueError:
            request = None
    if isinstance(request, dict):
        return dict(request)
    filename = getattr(source, "filename", "")  # opened from a file: XMP, a sidecar
    return _from_metadata(_read(filename)) if filename else None


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return read_metadata(os.fspath(path))
    except OSError as exc:
        raise OptionError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:  # not an image
        raise OptionError(str(exc)) from None


def _from_metadata(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The body from `read_metadata`'s dict: its fields, the prompt and the model over
    them; None for a file without mesh-magics metadata."""
    if not metadata:
        return None
    body = {key: value for key, value in metadata.items() if key not in PROVENANCE}
    known = {key: metadata[key] for key in ("prompt", "model") if metadata.get(key) is not None}
    return {**known, **body}


def _name(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return str(Path(source))
    return getattr(source, "filename", "") or "this image"

"""The model catalogue the embedded backend offers (the `/v1/models` payload)."""

from __future__ import annotations

from typing import Any


def _model(
    model_id: str,
    name: str,
    *,
    output: list[str],
    per_image: str | None = None,
    edit: bool = False,
    description: str = "",
) -> dict[str, Any]:
    is_image = "image" in output
    pricing: dict[str, str] = {"currency": "USD"}
    if per_image is not None:
        pricing["per_image"] = per_image
    else:
        pricing.update(prompt="0.00000015", completion="0.0000006")
    return {
        "id": model_id,
        "name": name,
        "provider": model_id.split("/", 1)[0],
        "description": description,
        "model_type": "image" if is_image else "text",
        "input_modalities": ["text", "image"] if edit or not is_image else ["text"],
        "output_modalities": output,
        "pricing": pricing,
        "supports_image_edit": edit,
    }


MODELS: list[dict[str, Any]] = [
    _model(
        "openai/gpt-image-1",
        "GPT Image 1",
        output=["image"],
        per_image="0.042",
        edit=True,
        description="Answers with data URLs; streams partial previews.",
    ),
    _model(
        "openai/dall-e-3",
        "DALL·E 3",
        output=["image"],
        per_image="0.040",
        description="Answers with short-lived remote URLs.",
    ),
    _model(
        "vertex/imagen-3",
        "Imagen 3",
        output=["image"],
        per_image="0.030",
        description="Always answers with b64_json, without usage.",
    ),
    _model(
        "local/sketch",
        "Local sketch",
        output=["image"],
        per_image="0",
        description="Procedural pictures drawn on this machine.",
    ),
    _model("openai/gpt-4o-mini", "GPT-4o mini", output=["text"]),
]

DEFAULT_MODEL = "openai/gpt-image-1"


def image_model_ids() -> set[str]:
    """Ids of the models that generate images."""
    return {m["id"] for m in MODELS if "image" in m["output_modalities"]}


def models_of_type(kind: str | None) -> list[dict[str, Any]]:
    """The catalogue, filtered like `?type=image` (an output modality) when a type is given."""
    if not kind:
        return list(MODELS)
    return [m for m in MODELS if kind in m["output_modalities"]]

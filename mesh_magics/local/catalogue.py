"""The model catalogue the embedded backend offers (the `/v1/models` payloads).

Each entry has the shape of the SDK's ``ModelInfo``: ``is_free``, and ``pricing`` as a
``ModelPricing`` (every price a decimal string, or null): image models cost
``image_output_usd_per_image``, text models ``prompt_usd_per_1m``/``completion_usd_per_1m``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MODEL_TYPES = ("text", "embedding", "image", "audio", "video")  # what ``?type=`` may ask


def _image_pricing(per_image: str) -> dict[str, str | None]:
    return {
        "pricing_unit": "per_image",
        "image_output_usd_per_image": per_image,
        "prompt_usd_per_1k": None,
        "completion_usd_per_1k": None,
        "prompt_usd_per_1m": None,
        "completion_usd_per_1m": None,
    }


def _text_pricing(prompt_per_1m: str, completion_per_1m: str) -> dict[str, str | None]:
    thousand = Decimal(1000)
    return {
        "pricing_unit": "per_1m_tokens",
        "image_output_usd_per_image": None,
        "prompt_usd_per_1k": str(Decimal(prompt_per_1m) / thousand),
        "completion_usd_per_1k": str(Decimal(completion_per_1m) / thousand),
        "prompt_usd_per_1m": prompt_per_1m,
        "completion_usd_per_1m": completion_per_1m,
    }


def _is_free(pricing: dict[str, str | None]) -> bool:
    prices = [v for k, v in pricing.items() if k != "pricing_unit" and v is not None]
    return all(Decimal(price) == 0 for price in prices)


def _model(
    model_id: str,
    name: str,
    *,
    output: list[str],
    pricing: dict[str, str | None],
    image_input: bool = False,
    edit: bool = False,
    description: str = "",
) -> dict[str, Any]:
    is_image = "image" in output
    return {
        "id": model_id,
        "name": name,
        "provider": model_id.split("/", 1)[0],
        "description": description,
        "model_type": "image" if is_image else "text",
        "input_modalities": ["text", "image"] if image_input or not is_image else ["text"],
        "output_modalities": output,
        "is_free": _is_free(pricing),
        "pricing": pricing,
        "supports_image_edit": edit,
        "supports_image_reference": image_input and is_image,  # ``image`` on a generation
    }


MODELS: list[dict[str, Any]] = [
    _model(
        "openai/gpt-image-1",
        "GPT Image 1",
        output=["image"],
        pricing=_image_pricing("0.042"),
        image_input=True,
        edit=True,
        description="Answers with data URLs; streams partial previews; draws over an input image.",
    ),
    _model(
        "openai/dall-e-3",
        "DALL·E 3",
        output=["image"],
        pricing=_image_pricing("0.040"),
        description="Answers with short-lived remote URLs.",
    ),
    _model(
        "vertex/imagen-3",
        "Imagen 3",
        output=["image"],
        pricing=_image_pricing("0.030"),
        description="Always answers with b64_json, without usage.",
    ),
    _model(
        "local/sketch",
        "Local sketch",
        output=["image"],
        pricing=_image_pricing("0"),
        image_input=True,
        edit=True,
        description="Procedural pictures drawn on this machine; edits too; free.",
    ),
    _model(
        "openai/gpt-4o-mini",
        "GPT-4o mini",
        output=["text"],
        pricing=_text_pricing("0.15", "0.60"),
    ),
]

DEFAULT_MODEL = "openai/gpt-image-1"


def find_model(model_id: str) -> dict[str, Any] | None:
    return next((m for m in MODELS if m["id"] == model_id), None)


def image_model_ids() -> set[str]:
    """Ids of the models that generate images."""
    return {m["id"] for m in MODELS if "image" in m["output_modalities"]}


def accepts_image_input(model_id: str) -> bool:
    model = find_model(model_id)
    return model is not None and "image" in model["input_modalities"]


def select_models(
    kind: str | None = None, *, free: bool | None = None, provider: str | None = None
) -> list[dict[str, Any]]:
    """The catalogue filtered like ``?type=`` (an output modality), ``?free=``, ``?provider=``."""
    return [
        m
        for m in MODELS
        if (not kind or kind in m["output_modalities"])
        and (free is None or m["is_free"] == free)
        and (not provider or m["provider"] == provider)
    ]

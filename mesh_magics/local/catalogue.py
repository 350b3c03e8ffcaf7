"""The model catalogue the embedded backend offers (the `/v1/models` payloads).

Each entry has the shape of the SDK's ``ModelInfo``: ``is_free``, and ``pricing`` as a
``ModelPricing`` (every price a decimal string, or null): image models cost
``image_output_usd_per_image``, text models ``prompt_usd_per_1m``/``completion_usd_per_1m``.

An image model also says what it can do, as MeshAPI's catalogue does: a ``supports_image_*``
flag for each kind of edit (``IMAGE_FLAGS``), and ``supported_parameters``, the request
fields it takes (the SDK's ``ModelInfo`` has no field for that list and ignores it). One
model, ``vertex/imagen-3``, publishes no such list, as a vendor's catalogue may say nothing
of a model: a client then has nothing to warn about.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MODEL_TYPES = ("text", "embedding", "image", "audio", "video")  # what ``?type=`` may ask

# The flag of each edit operation (``operation`` on /v1/images/edits), and of reference images.
OPERATION_FLAGS = {
    "edit": "supports_image_edit",
    "inpaint": "supports_image_inpaint",
    "outpaint": "supports_image_outpaint",
    "mix": "supports_image_mix",
    "reframe": "supports_image_reframe",
    "upscale": "supports_image_upscale",
    "remove_background": "supports_image_remove_background",
}
IMAGE_FLAGS = (*OPERATION_FLAGS.values(), "supports_image_reference")

# The request fields of each endpoint that a model may or may not take (``prompt``,
# ``model`` and ``stream`` always go; an edit's images are the flags' business).
OPENAI_PARAMETERS = ("n", "size", "quality", "response_format", "output_format",
                     "output_compression", "background", "moderation", "partial_images",
                     "image", "user")  # fmt: skip
EDIT_PARAMETERS = ("operation", "n", "size", "response_format", "background", "quality_tier",
                   "aspect_ratio", "resolution", "upscale_factor", "expand_factor",
                   "mask_feather")  # fmt: skip
PROVIDER_PARAMETERS = ("seed", "aspect_ratio", "resolution", "guidance_scale", "watermark",
                       "sequential_image_generation", "sequential_image_generation_options",
                       "optimize_prompt_options")  # fmt: skip


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
    brand: str,
    image_input: bool = False,
    edit: bool = False,
    parameters: tuple[str, ...] | None = None,
    description: str = "",
) -> dict[str, Any]:
    is_image = "image" in output
    model: dict[str, Any] = {
        "id": model_id,
        "name": name,
        "provider": model_id.split("/", 1)[0],
        "brand": brand,
        "description": description,
        "model_type": "image" if is_image else "text",
        "input_modalities": ["text", "image"] if image_input or not is_image else ["text"],
        "output_modalities": output,
        "is_free": _is_free(pricing),
        "pricing": pricing,
        "supports_image_edit": edit,
    }
    if is_image:  # every edit operation, with the edit; references where images go in
        model.update(dict.fromkeys(OPERATION_FLAGS.values(), edit))
        model["supports_image_reference"] = image_input  # ``image`` on a generation, too
        if parameters is not None:
            model["supported_parameters"] = sorted(set(parameters))
    return model


MODELS: list[dict[str, Any]] = [
    _model(
        "openai/gpt-image-1",
        "GPT Image 1",
        output=["image"],
        pricing=_image_pricing("0.042"),
        brand="OpenAI",
        image_input=True,
        edit=True,
        parameters=(*OPENAI_PARAMETERS, *EDIT_PARAMETERS, "seed"),  # the backend draws seeds
        description="Answers with data URLs; streams partial previews; draws over an input image.",
    ),
    _model(
        "openai/dall-e-3",
        "DALL·E 3",
        output=["image"],
        pricing=_image_pricing("0.040"),
        brand="OpenAI",
        parameters=("n", "size", "quality", "response_format", "style", "user", "seed"),
        description="Answers with short-lived remote URLs.",
    ),
    _model(
        "vertex/imagen-3",
        "Imagen 3",
        output=["image"],
        pricing=_image_pricing("0.030"),
        brand="Google",
        description="Always answers with b64_json, without usage.",
    ),
    _model(
        "local/sketch",
        "Local sketch",
        output=["image"],
        pricing=_image_pricing("0"),
        brand="Local",
        image_input=True,
        edit=True,
        parameters=(*OPENAI_PARAMETERS, *EDIT_PARAMETERS, *PROVIDER_PARAMETERS),
        description="Procedural pictures drawn on this machine; edits too; free.",
    ),
    _model(
        "openai/gpt-4o-mini",
        "GPT-4o mini",
        output=["text"],
        pricing=_text_pricing("0.15", "0.60"),
        brand="OpenAI",
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


def _any_of(wanted: list[str] | None, has: list[str]) -> bool:
    return not wanted or bool(set(wanted) & set(has))


SEARCH_SORTS = ("brand", "name", "id", "context_length")
SEARCH_LIMIT = 50  # a page, when ``?limit=`` says nothing
MAX_SEARCH_LIMIT = 200


def search_models(
    q: str | None = None,
    *,
    free: bool | None = None,
    discounted: bool | None = None,
    input_modalities: list[str] | None = None,
    output_modalities: list[str] | None = None,
    brands: list[str] | None = None,
    sort: str | None = None,
    descending: bool = False,
    limit: int = SEARCH_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    """``/v1/models/search`` as the SDK's ``models.search`` reads it (``ModelsPage``).

    ``q`` matches id, name, brand, provider or description, ignoring case; a list filter
    keeps a model that has any of its values; ``brands`` are those of every match, before
    the page is cut."""
    words = (q or "").strip().lower()
    wanted_brands = {b.lower() for b in brands or ()}

    def matches(m: dict[str, Any]) -> bool:
        text = " ".join(str(m.get(k) or "") for k in ("id", "name", "brand", "provider",
                                                       "description")).lower()  # fmt: skip
        discount = Decimal(str((m.get("pricing") or {}).get("discount_pct") or 0))
        return (
            (not words or words in text)
            and (free is None or m["is_free"] == free)
            and (discounted is None or (discount > 0) == discounted)
            and _any_of(input_modalities, m["input_modalities"])
            and _any_of(output_modalities, m["output_modalities"])
            and (not wanted_brands or str(m.get("brand", "")).lower() in wanted_brands)
        )

    found = [m for m in MODELS if matches(m)]
    if sort is not None:
        present = [m for m in found if m.get(sort) is not None]
        missing = [m for m in found if m.get(sort) is None]  # last, whatever the order
        present.sort(key=lambda m: m[sort], reverse=descending)
        found = present + missing
    elif descending:
        found.reverse()
    return {
        "items": found[offset : offset + limit],
        "total": len(found),
        "limit": limit,
        "offset": offset,
        "brands": sorted({str(m["brand"]) for m in found if m.get("brand")}),
    }

"""Card files written before the typed postprocess variants existed, converted once at load.

Such a file has a ``postprocess`` string plus an ``options`` list of string pairs;
:func:`from_legacy` turns them into the typed variant (``{"kind": "yolo", "multi_label": true}``)
and the card's typed ``precision``. Nothing past :func:`tritonkit.cards.card_from_dict` sees the
old form: repositories carry the typed card.
"""

from __future__ import annotations

from tritonkit.errors import CardError
from tritonkit.spec import SpecError, field_names, postprocess_from, postprocess_kinds, variant_class

# options of old card files -> (postprocess kind it belongs to, field)
LEGACY_OPTIONS = {"multi_label": ("yolo", "multi_label"), "score_background_index": ("ssd", "background_index"),
                  "gpu_nms_box_coding": (None, "box_coding"), "gpu_nms": (None, None), "precision": (None, None)}


def _legacy_value(key: str, text: str):
    value = str(text).strip()
    if key == "multi_label":
        if value.lower() not in ("true", "false"):
            raise CardError(f"option multi_label must be true or false (got {text!r})")
        return True if value.lower() == "true" else None  # "false" left the choice to each profile
    if key == "score_background_index":
        return None if value.lower() in ("none", "-1", "") else int(value)
    if key == "gpu_nms_box_coding":
        return {"0": "corner", "1": "center_size"}.get(value, value)
    return value


def from_legacy(kind: str, options) -> tuple[object, str | None]:
    """``(postprocess, precision)`` from an old card's ``postprocess`` string and ``options`` pairs.

    ``multi_label``, ``score_background_index`` and ``gpu_nms_box_coding`` become variant fields,
    ``precision`` the card's typed field; ``gpu_nms`` (which had no reader) is dropped."""
    data: dict = {"kind": kind}
    precision = None
    fields_of = field_names(variant_class(kind)) if kind in postprocess_kinds() else []
    for pair in options:
        if len(pair) != 2:
            raise CardError(f"options entries must be [key, value] pairs (got {list(pair)!r})")
        key, text = pair
        if key not in LEGACY_OPTIONS:
            raise CardError(f"unknown option {key!r} (known: {', '.join(LEGACY_OPTIONS)})")
        owner, field = LEGACY_OPTIONS[key]
        if key == "precision":
            precision = str(text).lower()
        elif field is not None and owner in (None, kind) and field in fields_of:
            data[field] = _legacy_value(key, text)
    try:
        return postprocess_from(data), precision
    except SpecError as exc:
        raise CardError(str(exc)) from None


__all__ = ["LEGACY_OPTIONS", "from_legacy"]

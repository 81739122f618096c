"""The body of ``POST /v1/finetune`` that trains a stored finetune again, perhaps with other values.

BFL documents these inputs for the request (docs.bfl.ai, API reference "Finetune"):
``file_data`` (required, a base64-encoded ZIP of the training images), ``finetune_comment``
(required), ``mode`` (required: general, character, style, product), ``trigger_word``,
``iterations`` (integer, 100-1000), ``learning_rate`` (number or null), ``captioning``
(boolean), ``priority`` (speed, quality, high_res_only), ``finetune_type`` (lora, full),
``lora_rank`` (16 or 32), ``webhook_url`` and ``webhook_secret``.

The finetune's stored details hold most of them. The body keeps every input found there, typed
as the API wants it ("300" becomes 300, as extraction does), and nothing else: keys BFL returns
that are not inputs are left out and named, so the caller can say so. ``file_data`` is never in
the details (the images are not returned) and ``webhook_secret`` is a secret, so neither is
ever written; the user adds the ZIP. bflsync never sends the request. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bflsync.errors import InputError
from bflsync.extract import as_bool, as_float, as_int, as_text
from bflsync.read.filters import parse_filter

Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class TrainingInput:
    """One documented input: what type the API takes, and how to get it from stored details."""

    kind: str
    convert: Callable[[Any], Any]

    def accepts(self, value: Scalar) -> bool:
        """Whether a ``--set`` value (typed as filter values are) is of this input's type."""
        if self.kind == "text":
            return isinstance(value, str)
        if self.kind == "boolean":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.kind == "number" or as_int(value) is not None


# In the order BFL's reference lists them; the body follows this order.
TRAINING_INPUTS: dict[str, TrainingInput] = {
    "finetune_comment": TrainingInput("text", as_text),
    "trigger_word": TrainingInput("text", as_text),
    "mode": TrainingInput("text", as_text),
    "iterations": TrainingInput("integer", as_int),
    "learning_rate": TrainingInput("number", as_float),
    "captioning": TrainingInput("boolean", as_bool),
    "priority": TrainingInput("text", as_text),
    "finetune_type": TrainingInput("text", as_text),
    "lora_rank": TrainingInput("integer", as_int),
    "webhook_url": TrainingInput("text", as_text),
}
# Inputs bflsync never writes into a body, and why.
WITHHELD_INPUTS: dict[str, str] = {
    "file_data": "the training images are not stored; add the base64-encoded ZIP to the body yourself",
    "webhook_secret": "bflsync never prints a secret; add it to the body yourself",
}


@dataclass(frozen=True, slots=True)
class RetrainRequest:
    """The body, plus what was left out of it so the caller can tell the user."""

    body: dict[str, Any]
    not_inputs: list[str] = field(default_factory=list)
    """Keys of the details that are not inputs of ``POST /v1/finetune`` (sorted)."""
    unusable: dict[str, Any] = field(default_factory=dict)
    """Inputs whose stored value is not of the type the API takes (left out, value as stored)."""
    withheld: dict[str, str] = field(default_factory=dict)
    """Inputs the details hold that were left out on purpose, each with why (see :data:`WITHHELD_INPUTS`)."""


def parse_override(text: str) -> tuple[str, Scalar]:
    """``KEY=VALUE`` for ``--set``, the value typed as in filters; the key must be a training input."""

    if "=" not in text:
        raise InputError(f"bad --set {text!r}: expected KEY=VALUE")
    parsed = parse_filter(text)
    if parsed.op != "=" or len(parsed.field.path) != 1:
        raise InputError(f"bad --set {text!r}: expected KEY=VALUE")
    key = parsed.field.path[0]
    if key in WITHHELD_INPUTS:
        raise InputError(f"--set {key}: {WITHHELD_INPUTS[key]}")
    spec = TRAINING_INPUTS.get(key)
    if spec is None:
        raise InputError(
            f"--set {key}: not an input of POST /v1/finetune (inputs: {', '.join(TRAINING_INPUTS)})"
        )
    value = parsed.value
    if isinstance(value, str) and not _is_utf8(value):
        # Bytes that are not UTF-8 arrive as lone surrogates; printed, they would make the body invalid.
        raise InputError(f"--set {key}: the value is not valid UTF-8 text")
    if value is not None and not spec.accepts(value):
        hint = f" (write {key}='\"{parsed.text}\"' for text)" if spec.kind == "text" else ""
        raise InputError(f"--set {key}: {parsed.text!r} is not {_article(spec.kind)}{hint}")
    return key, value


def parse_overrides(texts: Sequence[str]) -> dict[str, Scalar]:
    """Every ``--set``; a key given twice is refused rather than guessed at."""
    overrides: dict[str, Scalar] = {}
    for text in texts:
        key, value = parse_override(text)
        if key in overrides:
            raise InputError(f"--set {key} is given twice")
        overrides[key] = value
    return overrides


# A stored webhook belongs to the training that set it: copied silently, the new training's
# events (and their signatures) would go to whoever received the old one's.
WEBHOOK_INPUTS = ("webhook_url", "webhook_secret")
WEBHOOK_WITHHELD = "a stored webhook would receive the new training's events; pass --keep-webhook to keep it"


def request_body(
    details: Any, overrides: Mapping[str, Scalar] | None = None, *, keep_webhook: bool = False
) -> RetrainRequest:
    """The ``POST /v1/finetune`` body for stored ``details``, with ``overrides`` applied.

    An override of ``None`` (``--set KEY=null``) drops the input, so the API uses its default.
    The stored ``webhook_url`` and ``webhook_secret`` are left out (and named) unless
    ``keep_webhook``; a ``--set webhook_url=…`` is always used.
    """
    stored: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    changes = overrides or {}
    body: dict[str, Any] = {}
    unusable: dict[str, Any] = {}
    withheld: dict[str, str] = {}
    for key in WEBHOOK_INPUTS:
        if key in stored and key not in changes:
            if not keep_webhook:
                withheld[key] = WEBHOOK_WITHHELD
            elif isinstance(stored[key], str) and key not in TRAINING_INPUTS:
                body[key] = stored[key]
    for key, spec in TRAINING_INPUTS.items():
        if key in changes:
            value = changes[key]
            if value is not None:
                body[key] = spec.convert(value)
            continue
        if stored.get(key) is None or key in withheld:
            continue
        value = spec.convert(stored[key])
        if value is None:
            unusable[key] = stored[key]
        else:
            body[key] = value
    not_inputs = sorted(key for key in stored if key not in TRAINING_INPUTS and key not in WITHHELD_INPUTS)
    for key, reason in WITHHELD_INPUTS.items():
        if key in stored and key not in body:
            withheld.setdefault(key, reason)
    return RetrainRequest(body=body, not_inputs=not_inputs, unusable=unusable, withheld=withheld)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _article(kind: str) -> str:
    return {"integer": "an integer", "number": "a number", "boolean": "true or false", "text": "text"}[kind]

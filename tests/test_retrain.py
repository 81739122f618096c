"""The POST /v1/finetune body built from stored details: full and sparse records, --set typing, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from bflsync.errors import InputError
from bflsync.read.retrain import (
    TRAINING_INPUTS,
    WEBHOOK_WITHHELD,
    WITHHELD_INPUTS,
    parse_override,
    parse_overrides,
    request_body,
)

FULL: dict[str, Any] = {
    "finetune_comment": "Zoë's product shots",
    "trigger_word": "TOK",
    "mode": "product",
    "iterations": 300,
    "learning_rate": 1e-05,
    "captioning": True,
    "priority": "quality",
    "finetune_type": "lora",
    "lora_rank": 32,
    "timestamp": "2026-01-01T10:00:00",
    "finetune_id": "acme/product-1",
    "extra": {"images": 12},
}


def test_a_full_record_gives_every_input_in_documented_order_and_names_the_rest() -> None:
    request = request_body(FULL)
    assert list(request.body.items()) == [
        ("finetune_comment", "Zoë's product shots"),
        ("trigger_word", "TOK"),
        ("mode", "product"),
        ("iterations", 300),
        ("learning_rate", 1e-05),
        ("captioning", True),
        ("priority", "quality"),
        ("finetune_type", "lora"),
        ("lora_rank", 32),
    ]
    assert request.not_inputs == ["extra", "finetune_id", "timestamp"]
    assert (request.unusable, request.withheld) == ({}, {})


def test_a_sparse_record_gives_only_what_it_holds_typed_as_the_api_wants() -> None:
    request = request_body(
        {"mode": "style", "iterations": "500", "learning_rate": "2e-5", "captioning": "false"}
    )
    assert request.body == {"mode": "style", "iterations": 500, "learning_rate": 2e-05, "captioning": False}
    assert request.not_inputs == []


def test_stored_values_of_the_wrong_type_are_left_out_and_reported() -> None:
    request = request_body(
        {"mode": "general", "iterations": "many", "captioning": "sometimes", "lora_rank": None}
    )
    assert request.body == {"mode": "general"}
    assert request.unusable == {"iterations": "many", "captioning": "sometimes"}


WITH_WEBHOOK = {
    "mode": "general",
    "file_data": "UEsDB",
    "webhook_secret": "s3cret",
    "webhook_url": "https://x",
}


def test_file_data_and_the_stored_webhook_never_reach_the_body_by_default() -> None:
    request = request_body(WITH_WEBHOOK)
    assert request.body == {"mode": "general"}
    assert request.withheld == {
        "webhook_url": WEBHOOK_WITHHELD,
        "webhook_secret": WEBHOOK_WITHHELD,
        "file_data": WITHHELD_INPUTS["file_data"],
    }
    assert request.not_inputs == []


def test_keep_webhook_copies_the_stored_webhook_url_and_secret() -> None:
    request = request_body(WITH_WEBHOOK, keep_webhook=True)
    assert request.body == {"mode": "general", "webhook_url": "https://x", "webhook_secret": "s3cret"}
    assert request.withheld == {"file_data": WITHHELD_INPUTS["file_data"]}


def test_a_set_webhook_url_is_used_without_keep_webhook() -> None:
    request = request_body(WITH_WEBHOOK, {"webhook_url": "https://new"})
    assert request.body == {"mode": "general", "webhook_url": "https://new"}
    assert set(request.withheld) == {"webhook_secret", "file_data"}


@pytest.mark.parametrize("details", [None, [], "text", 3])
def test_details_that_are_not_an_object_give_an_empty_body(details: Any) -> None:
    assert request_body(details).body == {}


def test_overrides_replace_add_and_drop_inputs() -> None:
    overrides = parse_overrides(
        ["learning_rate=2e-5", "iterations=600", "lora_rank=null", "webhook_url=https://hook"]
    )
    assert request_body(FULL, overrides).body == {
        **{key: value for key, value in FULL.items() if key in TRAINING_INPUTS and key != "lora_rank"},
        "learning_rate": 2e-05,
        "iterations": 600,
        "webhook_url": "https://hook",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iterations=500", ("iterations", 500)),
        ("iterations=5e2", ("iterations", 500.0)),
        ("learning_rate=1e-5", ("learning_rate", 1e-05)),
        ("learning_rate=3", ("learning_rate", 3)),
        ("learning_rate=null", ("learning_rate", None)),
        ("captioning=false", ("captioning", False)),
        ("trigger_word=ohwx", ("trigger_word", "ohwx")),
        ('trigger_word="300"', ("trigger_word", "300")),
        ("finetune_comment=v2 = better", ("finetune_comment", "v2 = better")),
        ("mode = style", ("mode", "style")),
    ],
)
def test_set_values_are_typed_as_filter_values(text: str, expected: tuple[str, Any]) -> None:
    assert parse_override(text) == expected


def test_set_values_are_converted_to_the_inputs_type_in_the_body() -> None:
    body = request_body({}, parse_overrides(["iterations=5e2", "learning_rate=3"])).body
    assert body == {"iterations": 500, "learning_rate": 3.0}
    assert isinstance(body["iterations"], int) and isinstance(body["learning_rate"], float)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["resolution=1024"], "--set resolution: not an input of POST /v1/finetune"),
        (["timestamp=2026"], "--set timestamp: not an input"),
        (["file_data=UEsDB"], "--set file_data: the training images are not stored"),
        (["webhook_secret=x"], "--set webhook_secret: bflsync never prints a secret"),
        (["iterations"], "bad --set 'iterations': expected KEY=VALUE"),
        (["iterations>=3"], "bad --set 'iterations>=3': expected KEY=VALUE"),
        (["extra.images=3"], "bad --set 'extra.images=3': expected KEY=VALUE"),
        (["iterations=many"], "--set iterations: 'many' is not an integer"),
        (["iterations=2.5"], "--set iterations: '2.5' is not an integer"),
        (['iterations="300"'], "--set iterations: '300' is not an integer"),
        (["iterations=true"], "is not an integer"),
        (["learning_rate=fast"], "--set learning_rate: 'fast' is not a number"),
        (["captioning=1"], "--set captioning: '1' is not true or false"),
        (
            ["trigger_word=300"],
            "--set trigger_word: '300' is not text (write trigger_word='\"300\"' for text)",
        ),
        (["trigger_word="], "missing value"),
        (["mode=style", "mode=general"], "--set mode is given twice"),
    ],
)
def test_bad_or_unknown_set_keys_are_refused(texts: list[str], message: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_overrides(texts)
    assert message in str(raised.value)

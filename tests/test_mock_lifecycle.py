"""The mock's training status (``get_result``) and ``credits`` endpoints, over a real loopback socket."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bflsync.mock.server import (
    CREDITS,
    DEFAULT_CREDITS,
    MockBFL,
    generate_finetunes,
    generate_statuses,
    status_of,
    training_cost,
)

KEY = "mock-key"


def get(server: MockBFL, path: str, *, key: str | None = KEY) -> tuple[int, Any]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", path, headers={"x-key": key} if key else {})
        response = connection.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body
    finally:
        connection.close()


def status(server: MockBFL, finetune_id: str) -> tuple[str, float | None]:
    code, body = get(server, f"/v1/get_result?id={finetune_id}")
    assert code == 200
    return body["status"], body["progress"]


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": {"iterations": 300}, "beta": {"iterations": 500}}) as server:
        yield server


def test_get_result_answers_like_bfl_with_ready_for_unscripted_finetunes(mock: MockBFL) -> None:
    assert get(mock, "/v1/get_result?id=alpha") == (
        200,
        {
            "id": "alpha",
            "status": "Ready",
            "result": {"finetune_id": "alpha"},
            "progress": 1.0,
            "details": None,
        },
    )
    [record] = mock.requests
    assert (record.path, record.task_id, record.finetune_id) == ("/v1/get_result", "alpha", None)


def test_get_result_of_an_unknown_id_is_task_not_found(mock: MockBFL) -> None:
    assert get(mock, "/v1/get_result?id=nobody") == (
        200,
        {"id": "nobody", "status": "Task not found", "result": None, "progress": None, "details": None},
    )


def test_get_result_checks_the_key_and_requires_an_id(mock: MockBFL) -> None:
    assert get(mock, "/v1/get_result?id=alpha", key=None)[0] == 403
    assert get(mock, "/v1/get_result?id=alpha", key="wrong")[0] == 401
    code, body = get(mock, "/v1/get_result")
    assert code == 422
    assert body["detail"][0]["loc"] == ["query", "id"]


def test_a_scripted_sequence_advances_one_step_per_poll_and_repeats_the_last(mock: MockBFL) -> None:
    mock.script_status("alpha", ["Pending", ("Pending", 0.5), ("Ready", 1.0)])
    assert [status(mock, "alpha") for _ in range(4)] == [
        ("Pending", None),
        ("Pending", 0.5),
        ("Ready", 1.0),
        ("Ready", 1.0),
    ]
    assert mock.status_polls("alpha") == 4


def test_forget_makes_a_finetune_task_not_found(mock: MockBFL) -> None:
    mock.forget("beta")
    assert status(mock, "beta") == ("Task not found", None)


def test_ready_is_forgotten_after_forget_after_seconds() -> None:
    now = [100.0]
    with MockBFL.serve({"alpha": {}}, forget_after_s=60, statuses={"alpha": ["Pending", "Ready"]}) as mock:
        mock._clock = lambda: now[0]
        assert status(mock, "alpha")[0] == "Pending"
        assert status(mock, "alpha")[0] == "Ready"
        now[0] += 59
        assert status(mock, "alpha")[0] == "Ready"
        now[0] += 1
        assert status(mock, "alpha")[0] == "Task not found"


def test_error_and_moderated_answers_carry_details(mock: MockBFL) -> None:
    mock.script_status("alpha", ["Error"])
    mock.script_status("beta", ["Content Moderated"])
    _, error = get(mock, "/v1/get_result?id=alpha")
    _, moderated = get(mock, "/v1/get_result?id=beta")
    assert (error["status"], error["result"], error["details"]) == (
        "Error",
        None,
        {"error": "training failed: the dataset could not be processed"},
    )
    assert moderated["details"] == {"moderation_reasons": ["the training images were flagged"]}


def test_status_faults_are_apart_from_detail_faults(mock: MockBFL) -> None:
    mock.fail(status_of("alpha"), status=503, times=1)
    mock.bad_json(status_of("beta"), times=1)
    assert get(mock, "/v1/finetune_details?finetune_id=alpha")[0] == 200
    assert get(mock, "/v1/get_result?id=alpha")[0] == 503
    assert get(mock, "/v1/get_result?id=alpha")[0] == 200
    code, body = get(mock, "/v1/get_result?id=beta")
    assert code == 200 and isinstance(body, bytes)
    mock.non_object(status_of("beta"), value=["a", "list"], times=1)
    assert get(mock, "/v1/get_result?id=beta") == (200, ["a", "list"])


def test_credits_fall_by_the_cost_of_each_finetune_created(mock: MockBFL) -> None:
    assert get(mock, "/v1/credits") == (200, {"credits": DEFAULT_CREDITS - 3 - 5})
    mock.put("gamma", {"iterations": 1000})
    mock.put("alpha", {"iterations": 9000})  # an edit, not a new training
    assert get(mock, "/v1/credits") == (200, {"credits": DEFAULT_CREDITS - 3 - 5 - 10})
    mock.set_credits(12.5)
    assert mock.credits == 12.5
    assert get(mock, "/v1/credits") == (200, {"credits": 12.5})


def test_credits_faults(mock: MockBFL) -> None:
    mock.fail(CREDITS, status=500, times=1)
    mock.non_object(CREDITS, value="lots", times=1)
    assert get(mock, "/v1/credits")[0] == 500
    assert get(mock, "/v1/credits") == (200, {"credits": "lots"})
    assert get(mock, "/v1/credits")[0] == 200


def test_training_cost_is_a_credit_per_100_iterations() -> None:
    assert [
        training_cost(d) for d in ({"iterations": 300}, {"iterations": "800"}, {}, {"iterations": "x"})
    ] == [
        3.0,
        8.0,
        3.0,
        3.0,
    ]


def test_generated_statuses_are_deterministic_and_show_every_kind() -> None:
    finetunes = generate_finetunes(40, seed=3)
    statuses = generate_statuses(finetunes, seed=3)
    assert statuses == generate_statuses(generate_finetunes(40, seed=3), seed=3)
    finals = [steps[-1][0] for steps in statuses.values()]
    assert {"Ready", "Error", "Request Moderated", "Content Moderated"} <= set(finals)
    pending = [steps for steps in statuses.values() if steps[0][0] == "Pending" and steps[-1][0] == "Ready"]
    assert len(pending) == 10
    for steps in pending:
        progress = [p for _, p in steps]
        assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
        assert len(steps) >= 4  # at least three Pending polls before Ready


def test_a_served_generated_mock_moves_pending_finetunes_to_ready() -> None:
    with MockBFL.serve(count=25, seed=1) as mock:
        pending = [i for i, steps in generate_statuses(mock.finetunes, seed=1).items() if len(steps) > 2]
        first = pending[0]
        answers = [status(mock, first) for _ in range(10)]
    assert answers[0] == ("Pending", 0.0)
    assert answers[-1] == ("Ready", 1.0)
    progress = [p or 0.0 for _, p in answers]
    assert progress == sorted(progress)


def test_mock_api_command_serves_status_and_credits() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bflsync",
            "mock-api",
            "--count",
            "5",
            "--credits",
            "100",
            "--forget-after",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        ids = generate_finetunes(5, seed=0)
        expected = 100 - sum(training_cost(d) for d in ids.values())

        def fetch(path: str) -> Any:
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            try:
                connection.request("GET", path, headers={"x-key": KEY})
                return json.loads(connection.getresponse().read())
            finally:
                connection.close()

        assert fetch("/v1/credits") == {"credits": round(expected, 2)}
        ready = next(i for i, steps in generate_statuses(ids, seed=0).items() if steps == [("Ready", 1.0)])
        assert fetch(f"/v1/get_result?id={ready}")["status"] == "Ready"
        assert fetch(f"/v1/get_result?id={ready}")["status"] == "Task not found"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0

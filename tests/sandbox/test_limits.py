"""Enforced provider limits, cancel times and duration jitter, over real loopback HTTP.

The limits are what a client-side budget is tested against, so these tests pin the edges exactly:
the (N+1)th request in a window is the first refused, a refused request does not use up budget,
the window slides, the in-flight count follows the tasks' own clocks, accounts are apart, and
OneRouter's two hosts share one budget. The window is shortened to one second (`_limit_window`)
so the sliding can be watched without waiting a minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from genwidgets.sandbox import DOCUMENTED_LIMITS, FaultConfig, Sandbox, ServerLimits
from genwidgets.sandbox.__main__ import _parser, _print_banner, limits_from_args

KEY = "limits-key"
OTHER_KEY = "limits-other-key"
WINDOW = 1.0


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(task_seconds=0.4, queue_seconds=0.05, _limit_window=WINDOW) as sandbox:
        yield sandbox


@pytest.fixture
def sb(box: Sandbox) -> Iterator[Sandbox]:
    """The module's sandbox with no limits, no tasks and zeroed counters."""
    box.set_limits()
    box.reset()
    yield box
    box.set_limits()
    box.reset()


# ----------------------------------------------------------------------------------- protocol
def auth(provider: str, key: str = KEY) -> dict[str, str]:
    if provider == "segmind":
        return {"x-api-key": key}
    if provider == "onerouter":
        return {"Authorization": key}
    return {"Authorization": f"Bearer {key}"}


def onerouter_submit(
    sb: Sandbox, http: httpx.Client, prompt: str = "x", key: str = KEY
) -> httpx.Response:
    body = {"model": "acme/text-to-image", "content": [{"type": "text", "text": prompt}]}
    return http.post(
        f"{sb.urls['onerouter']}/v1/images/generations", json=body, headers=auth("onerouter", key)
    )


def segmind_status(sb: Sandbox, http: httpx.Client, rid: str, key: str = KEY) -> httpx.Response:
    return http.get(f"{sb.urls['segmind']}/v2/requests/{rid}/status", headers=auth("segmind", key))


def oxen_submit(sb: Sandbox, http: httpx.Client, prompt: str, key: str = KEY) -> httpx.Response:
    return http.post(
        f"{sb.urls['oxen']}/api/ai/queue",
        json={"model": "flux-image", "prompt": prompt},
        headers=auth("oxen", key),
    )


def netmind_submit(sb: Sandbox, http: httpx.Client, prompt: str, key: str = KEY) -> httpx.Response:
    return http.post(
        f"{sb.urls['netmind']}/v1/generation",
        json={"model": "acme/text-to-image", "config": {"prompt": prompt}},
        headers=auth("netmind", key),
    )


def wait_onerouter_done(http: httpx.Client, poll: str, key: str = KEY) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = http.get(poll, headers=auth("onerouter", key)).json()["data"]
        if data["status"] in ("completed", "failed"):
            return
        time.sleep(0.03)
    raise AssertionError(f"{poll} never finished")


# ----------------------------------------------------------------------------------- rpm
def test_rpm_trips_at_n_plus_one_and_the_window_slides(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_limits("segmind", requests_per_minute=5)
    first = time.monotonic()
    codes = [segmind_status(sb, http, f"nope-{i}").status_code for i in range(5)]
    batch_done = time.monotonic()
    assert codes == [404] * 5  # answered by the handler: the limit let them through
    assert batch_done - first < 0.4, "loopback too slow for a 1 s window"

    refused = segmind_status(sb, http, "nope-6")
    assert refused.status_code == 429
    assert refused.json() == {"error": "Rate limit exceeded: 5 requests per minute"}
    assert "retry-after" not in refused.headers  # Segmind documents only its reset header
    assert "x-rate-limit-reset-at-utc" in refused.headers

    # Refusals in the middle of the window must not use up the next window's budget.
    time.sleep(max(0.0, batch_done + 0.4 - time.monotonic()))
    assert [segmind_status(sb, http, "nope").status_code for _ in range(3)] == [429] * 3
    time.sleep(max(0.0, batch_done + WINDOW + 0.05 - time.monotonic()))
    again = [segmind_status(sb, http, f"again-{i}").status_code for i in range(5)]
    assert again == [404] * 5
    assert segmind_status(sb, http, "again-6").status_code == 429

    stats = sb.stats()
    assert stats["limited"] == {"segmind": {"rate": 5, "in_flight": 0}}
    assert stats["peak_requests_per_minute"] == {"segmind": 5}
    assert stats["statuses_by_provider"]["segmind"] == {"404": 10, "429": 5}


def test_a_bad_key_is_401_before_any_limit(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_limits("segmind", requests_per_minute=1)
    assert segmind_status(sb, http, "a").status_code == 404
    assert segmind_status(sb, http, "b").status_code == 429
    assert segmind_status(sb, http, "c", key="bad-key").status_code == 401
    assert sb.stats()["limited"]["segmind"]["rate"] == 1


def test_accounts_have_separate_budgets(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_limits("netmind", requests_per_minute=3)
    base = f"{sb.urls['netmind']}/v1/generation"

    def get(key: str) -> int:
        return http.get(f"{base}/nope", headers=auth("netmind", key)).status_code

    assert [get(KEY) for _ in range(4)] == [404, 404, 404, 429]
    assert [get(OTHER_KEY) for _ in range(4)] == [404, 404, 404, 429]
    limited = http.get(f"{base}/nope", headers=auth("netmind", KEY))
    assert limited.json() == {"detail": "Rate limit exceeded: 3 requests per minute"}
    assert sb.stats()["peak_requests_per_minute"]["netmind"] == 3  # per account, not summed


def test_onerouter_submit_and_poll_hosts_share_one_budget(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_limits("onerouter", requests_per_minute=4)
    submitted = onerouter_submit(sb, http)
    assert submitted.status_code == 200
    poll = submitted.json()["data"]["urls"]["get"]
    assert poll.startswith(sb.onerouter_poll_url)
    assert [http.get(poll, headers=auth("onerouter")).status_code for _ in range(3)] == [200] * 3

    refused_poll = http.get(poll, headers=auth("onerouter"))
    refused_submit = onerouter_submit(sb, http)
    for refused in (refused_poll, refused_submit):
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == 429 and error["type"] == "rate_limit_exceeded"
        assert "retry-after" not in refused.headers  # OneRouter documents no Retry-After
    assert sb.stats()["submits"] == {"onerouter": 1}  # the refused submit created nothing
    # Another provider is untouched by OneRouter's budget.
    assert segmind_status(sb, http, "nope").status_code == 404


def test_file_downloads_and_admin_routes_are_not_counted(sb: Sandbox, http: httpx.Client) -> None:
    submitted = onerouter_submit(sb, http)
    poll = submitted.json()["data"]["urls"]["get"]
    wait_onerouter_done(http, poll)
    url = http.get(poll, headers=auth("onerouter")).json()["data"]["outputs"][0]

    sb.set_limits("onerouter", requests_per_minute=2)
    fresh = "limits-fresh-key"  # its window is empty, whatever KEY did above
    for _ in range(5):
        assert http.get(url).status_code == 200
        assert (
            http.get(f"{sb.urls['onerouter']}/files/big", params={"bytes": 10}).status_code == 200
        )
        assert http.get(f"{sb.urls['onerouter']}/_sandbox/stats").status_code == 200
    assert http.get(poll, headers=auth("onerouter", fresh)).status_code == 404  # not its task
    assert http.get(poll, headers=auth("onerouter", fresh)).status_code == 404
    assert http.get(poll, headers=auth("onerouter", fresh)).status_code == 429
    assert sb.stats()["downloads"] == 5


# ----------------------------------------------------------------------------------- in flight
def test_in_flight_limit_refuses_the_extra_submit_until_tasks_finish(
    sb: Sandbox, http: httpx.Client
) -> None:
    sb.set_limits("onerouter", max_in_flight=3)
    polls = []
    for i in range(3):
        response = onerouter_submit(sb, http, f"task {i}")
        assert response.status_code == 200
        polls.append(response.json()["data"]["urls"]["get"])
    refused = onerouter_submit(sb, http, "one too many")
    assert refused.status_code == 429
    assert refused.json()["error"]["message"] == (
        "Too many concurrent tasks: at most 3 in progress"
    )
    assert "retry-after" not in refused.headers
    assert onerouter_submit(sb, http, "someone else", key=OTHER_KEY).status_code == 200

    for poll in polls:
        wait_onerouter_done(http, poll)
    assert onerouter_submit(sb, http, "a slot is free again").status_code == 200

    stats = sb.stats()
    assert stats["limited"] == {"onerouter": {"rate": 0, "in_flight": 1}}
    assert stats["peak_in_flight"] == {"onerouter": 3}
    assert stats["tasks"] == 5  # 3 + someone else's + the one after: the refused one never was


def test_cancel_and_delete_free_a_slot_and_record_their_times(
    sb: Sandbox, http: httpx.Client
) -> None:
    sb.set_limits("oxen", max_in_flight=2)
    sb.set_limits("netmind", max_in_flight=1)
    ids = [
        oxen_submit(sb, http, f"[slow] {i}").json()["generations"][0]["generation_id"]
        for i in range(2)
    ]
    third = oxen_submit(sb, http, "[slow] third")
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "rate_limited"  # Oxen's own error shape

    before = time.time()
    cancelled = http.delete(f"{sb.urls['oxen']}/api/ai/queue/{ids[0]}", headers=auth("oxen"))
    after = time.time()
    assert cancelled.status_code == 200
    assert oxen_submit(sb, http, "[slow] third").status_code == 200

    gid = netmind_submit(sb, http, "[slow] n").json()["id"]
    assert netmind_submit(sb, http, "[slow] m").status_code == 429
    deleted = http.delete(f"{sb.urls['netmind']}/v1/generation/{gid}", headers=auth("netmind"))
    assert deleted.status_code == 200
    assert netmind_submit(sb, http, "[slow] m").status_code == 200
    missing = http.delete(f"{sb.urls['oxen']}/api/ai/queue/nope", headers=auth("oxen"))
    assert missing.status_code == 404

    stats = sb.stats()
    assert [entry[:2] for entry in stats["cancel_times"]] == [["oxen", ids[0]], ["netmind", gid]]
    assert before <= stats["cancel_times"][0][2] <= after
    assert stats["cancel_times"][0][2] <= stats["cancel_times"][1][2] <= time.time()
    assert stats["cancels"] == 2 and stats["deletes"] == 1  # the 404 cancel still counts there
    assert stats["limited"]["oxen"] == {"rate": 0, "in_flight": 1}
    assert stats["peak_in_flight"] == {"oxen": 2, "netmind": 1}


# ----------------------------------------------------------------------------------- control
def test_stats_keep_injected_429s_apart_from_limits(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_limits("rixapi", requests_per_minute=100, max_in_flight=50)
    sb.set_faults(burst_429=1)
    rix = f"{sb.urls['rixapi']}/v1/task/nope"
    assert http.get(rix, headers=auth("rixapi")).status_code == 429  # the dice, not the limit
    assert segmind_status(sb, http, "unlimited").status_code == 404
    stats = sb.stats()
    assert stats["limited"] == {"rixapi": {"rate": 0, "in_flight": 0}}
    assert stats["statuses"] == {"429": 1, "404": 1}
    assert stats["peak_requests_per_minute"] == {"rixapi": 1, "segmind": 1}
    assert stats["peak_in_flight"] == {} and stats["cancel_times"] == []
    json.dumps(stats)


def test_reset_keeps_limits_and_clears_their_counters(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_limits("segmind", requests_per_minute=2)
    assert [segmind_status(sb, http, "x").status_code for _ in range(3)] == [404, 404, 429]
    sb.reset()
    assert sb.limits == {"segmind": ServerLimits(2, None)}
    assert sb.stats()["limited"] == {"segmind": {"rate": 0, "in_flight": 0}}
    assert sb.stats()["peak_requests_per_minute"] == {}
    assert [segmind_status(sb, http, "x").status_code for _ in range(3)] == [404, 404, 429]


def test_set_limits_validates_and_clears(sb: Sandbox) -> None:
    assert sb.set_limits("onerouter", 600, 30) == {"onerouter": (600, 30)}
    assert sb.set_limits("segmind", requests_per_minute=5) == {
        "onerouter": ServerLimits(600, 30),
        "segmind": ServerLimits(5, None),
    }
    assert sb.set_limits("onerouter") == {"segmind": ServerLimits(5, None)}  # no numbers: lifted
    for bad in (
        {"provider": "onerouter_poll", "requests_per_minute": 1},
        {"provider": "openai", "requests_per_minute": 1},
        {"provider": "segmind", "requests_per_minute": 0},
        {"provider": "segmind", "max_in_flight": 2.5},
        {"provider": None, "requests_per_minute": 1},
    ):
        with pytest.raises(ValueError):
            sb.set_limits(**bad)
    assert sb.limits == {"segmind": ServerLimits(5, None)}  # a refused change changes nothing
    assert sb.set_limits() == {} and sb.limits == {}
    with pytest.raises(ValueError):
        Sandbox(limits={"segmind": (1, 2, 3)})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        Sandbox(limits={"nope": (1, 2)})
    assert Sandbox(limits=DOCUMENTED_LIMITS).limits == {"onerouter": ServerLimits(600, 30)}
    assert DOCUMENTED_LIMITS == {"onerouter": (600, 30)}


def test_admin_limit_routes(sb: Sandbox, http: httpx.Client) -> None:
    base = f"{sb.urls['oxen']}/_sandbox/limits"
    assert http.get(base).json() == {}
    changed = http.post(base, json={"onerouter": [600, 30], "segmind": {"requests_per_minute": 5}})
    assert changed.json() == {
        "onerouter": {"requests_per_minute": 600, "max_in_flight": 30},
        "segmind": {"requests_per_minute": 5, "max_in_flight": None},
    }
    assert http.post(base, json={"segmind": None}).json() == {
        "onerouter": {"requests_per_minute": 600, "max_in_flight": 30}
    }
    assert sb.limits == {"onerouter": ServerLimits(600, 30)}
    for bad in ({"nope": [1, 1]}, {"segmind": [0, 1]}, {"segmind": "lots"}, [1, 2]):
        assert http.post(base, json=bad).status_code == 400
    assert sb.limits == {"onerouter": ServerLimits(600, 30)}
    assert http.delete(base).json() == {} and sb.limits == {}


# ----------------------------------------------------------------------------------- jitter
def _inference_times(sb: Sandbox, http: httpx.Client, n: int) -> list[float]:
    rids = [
        http.post(
            f"{sb.urls['segmind']}/v2/seedream", json={"prompt": f"p{i}"}, headers=auth("segmind")
        ).json()["request_id"]
        for i in range(n)
    ]
    times: list[float] = []
    deadline = time.monotonic() + 10
    for rid in rids:
        while True:
            body = segmind_status(sb, http, rid).json()
            if body["status"] == "COMPLETED":
                times.append(body["metrics"]["inference_time"])
                break
            assert time.monotonic() < deadline, f"{rid} never completed"
            time.sleep(0.02)
    return times


def test_task_jitter_varies_durations_within_bounds_reproducibly(http: httpx.Client) -> None:
    with Sandbox(
        task_seconds=0.2, queue_seconds=0.0, task_jitter=0.5, faults=FaultConfig(seed=11)
    ) as sb:
        first = _inference_times(sb, http, 12)
        sb.reset()  # reseeds from the fault seed: the same durations again
        second = _inference_times(sb, http, 12)
    assert all(0.1 - 0.005 <= t <= 0.3 + 0.005 for t in first)
    assert len(set(first)) >= 6 and max(first) - min(first) > 0.05
    assert first == second
    with Sandbox(task_seconds=0.2, queue_seconds=0.0) as exact:
        assert _inference_times(exact, http, 3) == [0.2, 0.2, 0.2]
    with pytest.raises(ValueError):
        Sandbox(task_jitter=1.5)


# ----------------------------------------------------------------------------------- CLI
def test_cli_limit_and_jitter_flags() -> None:
    parser = _parser()
    args = parser.parse_args(
        ["--enforce-limits", "--limit", "segmind=50/", "--limit", "oxen=/4", "--task-jitter", "0.2"]
    )
    assert limits_from_args(args) == {
        "onerouter": (600, 30),
        "segmind": (50, None),
        "oxen": (None, 4),
    }
    assert args.task_jitter == 0.2
    overridden = parser.parse_args(["--enforce-limits", "--limit", "onerouter=10/-"])
    assert limits_from_args(overridden) == {"onerouter": ServerLimits(10, None)}
    plain = parser.parse_args([])
    assert limits_from_args(plain) == {} and plain.task_jitter == 0.0
    for bad in (
        ["--limit", "nope=1/2"],
        ["--limit", "segmind=x/2"],
        ["--limit", "segmind=/"],
        ["--limit", "segmind=0/1"],
        ["--limit", "segmind"],
        ["--task-jitter", "2"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_cli_banner_lists_limits(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(
        ["--enforce-limits", "--limit", "segmind=5", "--task-jitter", "0.1"]
    )
    sandbox = Sandbox(limits=limits_from_args(args))
    sandbox.ports = {
        name: 9000 + i
        for i, name in enumerate(
            ("onerouter", "segmind", "rixapi", "netmind", "oxen", "onerouter_poll")
        )
    }
    _print_banner(sandbox, {}, args.task_jitter)
    out = capsys.readouterr().out
    assert (
        "Limits per key: onerouter 600/min 30 in flight, segmind 5/min unlimited in flight" in out
    )
    assert "+/-10%" in out and "/_sandbox/limits" in out

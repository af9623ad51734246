"""Rate and concurrency budgets: resolving limits, slots, the bucket, 429 shrink and recovery."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import Any

import pytest

from genwidgets import ConfigError
from genwidgets._budget import DEFAULT_LIMITS, Budget, Limits, budget_for, resolve_limits
from genwidgets._policy import (
    AIM_SPACING,
    FIRST_DONE,
    STEER,
    DurationEstimate,
    cold_gap,
    duration_sample,
    leaky_bucket,
    poll_gap,
    recovered,
    scaled_poll_delay,
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENWIDGETS_BUDGETS", raising=False)
    for provider in DEFAULT_LIMITS:
        monkeypatch.delenv(f"GENWIDGETS_{provider.upper()}_RPM", raising=False)
        monkeypatch.delenv(f"GENWIDGETS_{provider.upper()}_MAX_IN_FLIGHT", raising=False)


# ---------------------------------------------------------------------------- resolving limits
def test_defaults_follow_the_documented_limits() -> None:
    assert resolve_limits("onerouter") == Limits(600, 30)
    assert resolve_limits("segmind").requests_per_minute == 5
    assert resolve_limits("local").unlimited


def test_environment_overrides_and_turns_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENWIDGETS_SEGMIND_RPM", "50")
    monkeypatch.setenv("GENWIDGETS_ONEROUTER_MAX_IN_FLIGHT", "off")
    assert resolve_limits("segmind").requests_per_minute == 50
    assert resolve_limits("onerouter") == Limits(600, None)
    monkeypatch.setenv("GENWIDGETS_BUDGETS", "off")
    assert resolve_limits("segmind").unlimited


def test_client_setting_wins_and_false_turns_everything_off() -> None:
    setting = {"onerouter": (100, 4), "oxen": {"max_in_flight": 2}, "netmind": None}
    assert resolve_limits("onerouter", setting) == Limits(100, 4)
    assert resolve_limits("oxen", setting) == Limits(None, 2)
    assert resolve_limits("netmind", setting).unlimited
    assert resolve_limits("segmind", setting) == DEFAULT_LIMITS["segmind"]
    assert resolve_limits("onerouter", False).unlimited


@pytest.mark.parametrize(
    "bad", [{"onerouter": (0, 3)}, {"onerouter": (10, 0)}, {"onerouter": "fast"}]
)
def test_bad_limits_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigError):
        resolve_limits("onerouter", bad)


def test_bad_environment_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENWIDGETS_SEGMIND_RPM", "lots")
    with pytest.raises(ConfigError, match="GENWIDGETS_SEGMIND_RPM"):
        resolve_limits("segmind")


# ---------------------------------------------------------------------------- pure arithmetic
def _greedy_arrivals(capacity: float, period: float, seconds: float) -> list[float]:
    """Request times of a caller that goes as soon as an AsyncLimiter(capacity, period) lets it."""
    rate, level, now, times = capacity / period, 0.0, 0.0, []
    while now < seconds:
        wait = max(0.0, (level + 1 - capacity) / rate)
        now += wait
        level = max(0.0, level - wait * rate) + 1
        times.append(now)
    return times


@pytest.mark.parametrize("rpm", [1, 5, 50, 60, 61, 600, 6000])
def test_leaky_bucket_never_exceeds_a_sliding_minute_and_uses_most_of_it(rpm: float) -> None:
    times = _greedy_arrivals(*leaky_bucket(rpm), seconds=600)
    busiest, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - 60.0:  # the window (t - 60, t]
            start += 1
        busiest = max(busiest, end - start + 1)
    assert busiest <= rpm
    assert len(times) >= 0.9 * rpm * 10  # ten minutes at over 90 % of the limit


def test_polls_widen_to_fit_the_budget_keeping_fast_tasks_faster() -> None:
    poll_rate = 600 / 60 * 0.9
    widened = scaled_poll_delay(1.0, total_share=30 * 1.0, poll_rate=poll_rate)
    assert widened == pytest.approx(3.33, abs=0.01)  # 30 tasks at 600/min: ~3.3 s each
    assert scaled_poll_delay(1.0, total_share=5, poll_rate=poll_rate) == 1.0  # room to spare
    young = scaled_poll_delay(0.5, total_share=40, poll_rate=poll_rate)
    old = scaled_poll_delay(8.0, total_share=40, poll_rate=poll_rate)
    assert young < old


def test_recovery_steps_back_to_the_limits() -> None:
    factor, cap = 0.125, 1
    steps = 0
    while (factor, cap) != (1.0, 30):
        factor, cap = recovered(factor, cap, 30)
        steps += 1
    assert steps == 5  # the rate is back in 3 steps, the cap (+7 a step) in 5
    assert recovered(0.5, None, None) == (1.0, None)


def test_duration_estimate_learns_then_times_the_first_poll() -> None:
    estimate = DurationEstimate()
    assert estimate.remaining(0.0) == 0.0  # still learning
    for seconds in (10.0, 11.0, 10.5):
        estimate.observe(seconds)
    assert estimate.expected() == pytest.approx(10.8)  # the samples' 80th percentile
    assert estimate.remaining(4.0) == pytest.approx(10.8 - 4.0)
    assert estimate.remaining(60.0) == 0.0
    for _ in range(100):
        estimate.observe(2.0)
    assert estimate.expected() == pytest.approx(2.0)  # old samples age out, the aim follows


# ---------------------------------------------------------------------------- the Budget
async def test_slots_wait_when_full_say_so_once_and_resume_on_release() -> None:
    budget = Budget("onerouter", Limits(None, 2))
    await budget.reserve()
    budget.bind("a")
    await budget.reserve()
    budget.bind("b")
    notices: list[str] = []
    third = asyncio.ensure_future(budget.reserve(notices.append))
    await asyncio.sleep(0.05)
    assert not third.done()
    assert notices == ["waiting for a slot: 2 of 2 onerouter tasks in flight"]
    assert budget.state()["waiting"] == 1
    budget.release("a")
    await asyncio.wait_for(third, 1)
    assert budget.reserved == 1 and budget.in_flight == {"b"}
    budget.unreserve()
    assert budget.state()["in_flight"] == 1 and budget.reserved == 0


async def test_a_refused_submit_gives_its_slot_back() -> None:
    budget = Budget("oxen", Limits(None, 1))
    await budget.reserve()
    waiting = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0.02)
    budget.unreserve()
    await asyncio.wait_for(waiting, 1)


async def test_adopted_tasks_count_even_over_the_cap() -> None:
    budget = Budget("oxen", Limits(None, 1))
    budget.adopt("x")
    budget.adopt("y")
    assert not budget.has_slot()
    budget.release("x")
    assert not budget.has_slot()
    budget.release("y")
    assert budget.has_slot()


async def test_requests_go_out_no_faster_than_the_rate() -> None:
    budget = Budget("onerouter", Limits(requests_per_minute=600))  # 10/s, burst of 10
    loop = asyncio.get_running_loop()
    start = loop.time()
    times = []
    for _ in range(25):
        await budget.spend()
        times.append(loop.time() - start)
    # Whatever the machine's speed: the burst, then no more than the steady rate allows.
    capacity, period = leaky_bucket(600)
    for t, n in zip(times, range(1, 26), strict=True):
        assert n <= capacity + t * capacity / period + 1


async def test_429_pauses_halves_the_rate_shrinks_the_cap_then_recovers() -> None:
    budget = Budget("onerouter", Limits(600, 30), recover_after=0.3)
    for name in "abc":
        budget.adopt(name)
    budget.penalize(0.2, on_submit=True)
    assert budget.rate_factor == 0.5
    assert budget.cap == 3  # the server accepted three; it said no to the fourth
    assert not budget.has_slot()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await budget.spend()
    assert loop.time() - start >= 0.19  # the Retry-After pause
    await asyncio.sleep(0.35)
    await budget.spend()  # a quiet period passed: one recovery step
    assert budget.rate_factor == 1.0
    assert budget.cap == 3 + 30 // 4
    assert budget.limited == 1


async def test_a_waiting_submit_gets_a_slot_when_the_cap_recovers() -> None:
    budget = Budget("onerouter", Limits(None, 4), recover_after=0.2)
    budget.adopt("a")
    budget.penalize(None, on_submit=True)
    assert budget.cap == 1
    await asyncio.wait_for(budget.reserve(), 2)  # no release: the cap grows back by itself


async def test_poll_delays_share_the_rate_and_ended_tasks_free_their_share() -> None:
    budget = Budget("onerouter", Limits(600, 30))
    delays = [budget.poll_delay(f"t{i}", 1.0) for i in range(30)]
    assert delays[-1] == pytest.approx(30 / 9, rel=0.01)
    for i in range(25):
        budget.release(f"t{i}")
    assert budget.poll_delay("t29", 1.0) == 1.0


async def test_two_buckets_keep_polls_out_of_the_submits_budget() -> None:
    """Replicate documents 600 creates/min and 3,000 other requests/min: polls spend from their
    own bucket, so a batch's polls never delay its submits, and widen to the larger rate."""
    both = Limits(requests_per_minute=600, other_requests_per_minute=3000)
    budget = Budget("replicate", both, counts=frozenset({"submit"}))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(60):  # 60 polls: six times the submit bucket's burst, half a second at 3000
        await budget.spend("poll")
    assert loop.time() - start < 1.0
    submit_capacity, _ = leaky_bucket(600)
    assert budget._limiter is not None and budget._limiter.has_capacity(submit_capacity)
    assert budget.rate_of("poll") == pytest.approx(50.0)
    delays = [budget.poll_delay(f"t{i}", 1.0) for i in range(100)]
    assert delays[-1] == pytest.approx(100 / (50 * 0.9), rel=0.01)  # 3000/min, not 600
    budget.penalize(1.0, kind="poll")  # a 429 on a poll halves both; polls keep their bucket
    assert budget.counts == frozenset({"submit"})
    assert budget.rate_of("poll") == pytest.approx(25.0)
    assert budget.rate_of("submit") == pytest.approx(5.0)


async def test_one_budget_per_provider_account_on_a_loop() -> None:
    a = budget_for("onerouter", "acct-1", Limits(600, 30))
    b = budget_for("onerouter", "acct-1", Limits(600, 30))
    c = budget_for("onerouter", "acct-2", Limits(600, 30))
    assert a is b and a is not c
    assert budget_for("onerouter", "acct-1", Limits()) is None  # unlimited: no budget at all
    budget_for("onerouter", "acct-1", Limits(60, 3))
    assert a is not None and a.limits == Limits(60, 3)  # the newest setting applies


def test_with_the_providers_own_times_the_first_poll_aims_where_most_are_done() -> None:
    estimate = DurationEstimate(exact=True)
    for seconds in range(1, 22):  # 1..21 s, median 11
        estimate.observe(float(seconds))
    first, second, last = estimate.aims()
    assert (first, second, last) == pytest.approx((0.8 * 20 + 1, 0.97 * 20 + 1, 21.0))
    assert estimate.expected() == first
    assert estimate.next_aim(0.0) == first  # from the submit: the first aim
    assert estimate.next_aim(first) == second
    assert estimate.next_aim(20.0) == last  # 20.4 is closer than 5 % of the median: skipped
    assert estimate.next_aim(5.0) == first  # an early poll (a status change) keeps the aim


def test_past_the_last_aim_gaps_grow_with_how_late_the_task_is() -> None:
    estimate = DurationEstimate(exact=True)
    for seconds in range(1, 22):  # 1..21 s, median 11
        estimate.observe(float(seconds))
    assert estimate.next_aim(21.0) == pytest.approx(21.0 + 1.1)  # 10 % of the median
    assert estimate.next_aim(41.0) == pytest.approx(41.0 + 2.0)  # 10 % of 20 s late
    assert estimate.next_aim(221.0, cap=8.0) == pytest.approx(229.0)  # never past the cap
    assert DurationEstimate(exact=True).next_aim(21.0) is None  # still learning: the backoff


def test_without_them_the_first_aim_is_steered_by_what_first_polls_find() -> None:
    estimate = DurationEstimate()  # samples are what was seen: the first poll's are bounds
    for seconds in (10.0, 11.0, 10.5):
        estimate.observe(seconds)
    assert estimate.aims() == pytest.approx((10.8, 10.97, 11.0))
    assert DurationEstimate(exact=True).aims() == ()  # still learning
    estimate.steer(10.8, 10.8, done=True)  # done by its first poll: earlier next time
    assert estimate.expected() == pytest.approx(10.8 * (1 - STEER * (1 - FIRST_DONE)))
    before = estimate.expected()
    estimate.steer(14.0, 10.0, done=True)  # sent 4 s after its aim (released late): no count
    estimate.steer(5.0, 5.0, done=False)  # running at an aim well before the current one
    assert estimate.expected() == before
    estimate.steer(before, before, done=False)  # running at its aim: later next time, ...
    assert estimate.expected() == pytest.approx(10.8)  # ... never past the samples' bound
    estimate.observe(30.0)  # a slow one: the bound moves up, and so can the aim
    estimate.steer(10.8, 10.8, done=False)
    assert estimate.expected() == pytest.approx(10.8 * (1 + STEER * FIRST_DONE))
    exact = DurationEstimate(exact=True, samples=deque([10.0, 11.0, 10.5]))
    exact.steer(10.8, 10.8, done=True)  # true durations need no steering
    assert exact.expected() == pytest.approx(10.8)


def test_steering_finds_the_quantile_the_samples_cannot_tell() -> None:
    """Durations of 8-12 s, but every sample says ~13 s (first seen done, late): the first
    aim still settles where 80 % of first polls find the task done (11.2 s)."""
    rng = random.Random(7)
    estimate = DurationEstimate(samples=deque([13.0] * 25))
    aims, found_done = [], []
    for _ in range(3000):
        aim = estimate.expected()
        assert aim is not None
        done = rng.uniform(8.0, 12.0) <= aim
        estimate.steer(aim, aim, done)
        aims.append(aim)
        found_done.append(done)
    assert sum(aims[-1000:]) / 1000 == pytest.approx(11.2, abs=0.3)
    assert sum(found_done[-1000:]) / 1000 == pytest.approx(FIRST_DONE, abs=0.05)


def test_a_wave_timed_for_one_aim_moves_it_about_one_spacing() -> None:
    estimate = DurationEstimate(samples=deque([10.0] * 25))
    for _ in range(300):  # 300 tasks submitted together, all done by their first poll
        estimate.steer(10.0, 10.0, done=True)
    assert 10.0 / (1 + AIM_SPACING) * 0.98 < estimate.expected() < 10.0
    for _ in range(300):  # ... or all still running
        estimate.steer(9.5, 9.5, done=False)
    assert 9.5 < estimate.expected() < 9.5 / (1 - AIM_SPACING) * 1.05


def test_a_poll_goes_at_the_aim_even_inside_the_backoff_interval() -> None:
    assert poll_gap(2.0, 100.0, 100.6) == pytest.approx(0.6)  # short gaps around the finish
    assert poll_gap(2.0, 100.0, 109.0) == pytest.approx(9.0)
    assert poll_gap(2.0, 100.0, None) == 2.0  # no aim: the backoff
    assert poll_gap(2.0, 100.0, 99.0) == 2.0
    assert poll_gap(2.0, None, 109.0) == 2.0


def test_a_duration_sample_prefers_the_providers_times() -> None:
    seen_late = (0.0, 30.0)  # found done at its first poll, 30 s after the submit
    assert duration_sample(10.25, 0.0, seen_late) == 10.25  # exact stamps: as reported
    assert duration_sample(10.25, 0.0, None) == 10.25  # nobody watched: the provider knows
    assert duration_sample(10.0, 1.0, (9.6, 10.4)) == pytest.approx(10.0)  # within both
    assert duration_sample(10.0, 1.0, (10.5, 12.0)) == pytest.approx(10.75)  # narrowed
    assert duration_sample(10.0, 1.0, (20.0, 21.0)) == 10.0  # clocks disagree: the provider's
    # Whole-second stamps of a 0.4 s task say 0 or 1 s: what was seen tells more.
    assert duration_sample(0.0, 1.0, (0.0, 0.45)) == pytest.approx(0.45)
    # No provider time: the midpoint of the last poll running and the first done, else the
    # first done; nothing from a task nobody watched.
    assert duration_sample(None, 0.0, (9.0, 11.0)) == 10.0
    assert duration_sample(None, 0.0, (0.0, 11.0)) == 11.0
    assert duration_sample(None, 0.0, None) is None


def test_while_a_model_is_learned_only_its_oldest_tasks_poll() -> None:
    assert cold_gap(1.0, 8.0, 0, 1) == 1.0  # a few tasks: the backoff, as before
    assert cold_gap(1.0, 8.0, 2, 3) == 1.0
    assert cold_gap(1.0, 8.0, 0, 4) == 0.5  # scouts: often, at least 0.5 s apart
    assert cold_gap(4.0, 8.0, 2, 4, age=20.0) == 2.0  # ... every 10 % of their age
    assert cold_gap(1.0, 8.0, 2, 4, age=20.0) == 1.0  # ... never slower than the backoff
    assert cold_gap(1.0, 8.0, 3, 4) == 24.0  # the rest wait for them (woken when one ends)

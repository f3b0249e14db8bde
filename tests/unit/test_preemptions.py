"""The local provider's preemption injector: schedules, seeded rates and spot traces."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from multispot.local.preemptions import AttemptPlan, PreemptionSpec, Trace

TRACES = Path(__file__).resolve().parents[2] / "examples" / "traces"  # real traces, copied into the repo


def write_trace(tmp_path: Path, data: list[int], gap: float = 60.0, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return path


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text", ["none", "", "  ", " none "])
def test_none_never_preempts(text: str) -> None:
    spec = PreemptionSpec(text)
    assert spec.kind == "none"
    for attempt in (1, 2, 50):
        assert spec.plan(attempt, elapsed=attempt * 100.0) == AttemptPlan()
    assert AttemptPlan() == AttemptPlan(wait_seconds=0.0, preempt_after=None, no_capacity=False)


def test_at_parses_times() -> None:
    spec = PreemptionSpec("at=20s,45s,1m10s")
    assert spec.kind == "at"
    assert [spec.plan(k, 0.0).preempt_after for k in (1, 2, 3)] == [20.0, 45.0, 70.0]


def test_at_hard_stops_and_kills_inside_a_save() -> None:
    spec = PreemptionSpec("at=20s,save:2,15s!")
    assert spec.plan(1, 0.0) == AttemptPlan(preempt_after=20.0)
    assert spec.plan(2, 0.0) == AttemptPlan(fault="kill-in-save:2")
    assert spec.plan(3, 0.0) == AttemptPlan(preempt_after=15.0, notice=False)
    assert spec.plan(4, 0.0) == AttemptPlan()
    with pytest.raises(ValueError, match="save:N"):
        PreemptionSpec("at=save:0")


def test_every_parses_interval_and_max() -> None:
    spec = PreemptionSpec("every=10s,max=3")
    assert (spec.kind, spec.times, spec.max) == ("every", [10.0], 3)


def test_rate_parses_rate_seed_and_max() -> None:
    spec = PreemptionSpec("rate=6/h,seed=1,max=2")
    assert spec.kind == "rate"
    assert spec.rate == pytest.approx(6 / 3600)
    assert (spec.seed, spec.max) == (1, 2)
    assert PreemptionSpec("rate=2/m").rate == pytest.approx(2 / 60)
    assert PreemptionSpec("rate=0.5/s").rate == pytest.approx(0.5)
    assert PreemptionSpec("rate=24/d").rate == pytest.approx(24 / 86400)


def test_trace_parses_file_and_offset(tmp_path: Path) -> None:
    path = write_trace(tmp_path, [1, 1, 0, 1], gap=30)
    spec = PreemptionSpec(f"trace={path},offset=2")
    assert spec.kind == "trace"
    assert spec.trace == Trace(30.0, [1, 1, 0, 1])
    assert spec.offset == 2


@pytest.mark.parametrize(
    "text",
    [
        "sometimes",
        "foo=1",
        "at=",
        "at=soon",
        "at=20s,later",
        "at=-5s",
        "every=",
        "every=abc",
        "every=10s,max=x",
        "every=10s,bogus=1",
        "rate=6",
        "rate=6/w",
        "rate=/h",
        "rate=six/h",
        "rate=6/h,seed=x",
        "rate=6/h,speed=2",
        "trace=/no/such/trace.json",
    ],
)
def test_bad_specs_explain_with_examples(text: str) -> None:
    with pytest.raises(ValueError) as info:
        PreemptionSpec(text)
    message = str(info.value)
    assert repr(text) in message  # names what was given
    assert "at=20s,45s" in message and "every=" in message and "rate=" in message and "trace=" in message


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"metadata": {"gap_seconds": 60}, "data": []}),
        json.dumps({"metadata": {"gap_seconds": 0}, "data": [1, 0]}),
        json.dumps({"metadata": {}, "data": [1, 0]}),
        json.dumps({"metadata": {"gap_seconds": 60}}),
        json.dumps({"metadata": {"gap_seconds": 60}, "data": ["x"]}),
        json.dumps([1, 0, 1]),
        json.dumps({"metadata": None, "data": [1]}),
        json.dumps({"metadata": {"gap_seconds": 60}, "data": None}),
        json.dumps({"metadata": {"gap_seconds": 60}, "data": [[1]]}),
    ],
)
def test_bad_trace_files_are_clear_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        PreemptionSpec(f"trace={path}")
    assert "trace=" in str(info.value)


def test_trace_gap_may_sit_at_top_level(tmp_path: Path) -> None:
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"gap_seconds": 15, "data": [1]}))
    assert Trace.load(path) == Trace(15.0, [1])


# --------------------------------------------------------------------------- schedules


def test_at_gives_each_attempt_its_time_then_none() -> None:
    spec = PreemptionSpec("at=20s,45s")
    assert spec.plan(1, 0.0) == AttemptPlan(preempt_after=20.0)
    assert spec.plan(2, 25.0) == AttemptPlan(preempt_after=45.0)
    for attempt in (3, 4, 10):
        assert spec.plan(attempt, 100.0) == AttemptPlan()


def test_every_stops_after_max() -> None:
    spec = PreemptionSpec("every=10s,max=3")
    plans = [spec.plan(attempt, attempt * 12.0) for attempt in range(1, 7)]
    assert [p.preempt_after for p in plans] == [10.0, 10.0, 10.0, None, None, None]
    assert not any(p.wait_seconds or p.no_capacity for p in plans)


def test_every_without_max_is_bounded() -> None:
    spec = PreemptionSpec("every=5s")
    plans = [spec.plan(attempt, 0.0).preempt_after for attempt in range(1, 50)]
    assert plans[0] == 5.0
    assert plans[-1] is None, "an unbounded every= would never let a job finish"


# --------------------------------------------------------------------------- seeded rate


def test_rate_is_reproducible_by_seed_and_attempt() -> None:
    a = PreemptionSpec("rate=6/h,seed=1")
    b = PreemptionSpec("rate=6/h,seed=1")
    first = [a.plan(n, 0.0).preempt_after for n in range(1, 20)]
    assert first == [b.plan(n, 0.0).preempt_after for n in range(1, 20)]
    # the elapsed time does not change an attempt's fate
    assert first == [a.plan(n, 1234.5).preempt_after for n in range(1, 20)]
    assert all(t is not None and t > 0 for t in first)
    # attempts differ from each other
    assert len(set(first)) == len(first)
    # and another seed gives other times
    other = [PreemptionSpec("rate=6/h,seed=2").plan(n, 0.0).preempt_after for n in range(1, 20)]
    assert other != first


def test_rate_stops_after_max() -> None:
    spec = PreemptionSpec("rate=6/h,seed=1,max=2")
    assert spec.plan(1, 0.0).preempt_after is not None
    assert spec.plan(2, 0.0).preempt_after is not None
    assert spec.plan(3, 0.0) == AttemptPlan()


def test_rate_gaps_have_the_requested_mean() -> None:
    samples: list[float] = []
    for seed in range(20):
        spec = PreemptionSpec(f"rate=6/h,seed={seed}")
        samples.extend(p for n in range(1, 501) if (p := spec.plan(n, 0.0).preempt_after) is not None)
    assert len(samples) == 10_000
    mean = statistics.fmean(samples)
    assert mean == pytest.approx(600.0, rel=0.05)  # exponential: mean 1/rate, std err ~1 %
    # exponential, not constant: the spread is about the mean too
    assert statistics.pstdev(samples) == pytest.approx(600.0, rel=0.1)
    median = statistics.median(samples)
    assert median == pytest.approx(600.0 * 0.6931, rel=0.06)


# --------------------------------------------------------------------------- traces


def test_trace_with_capacity_now_preempts_at_the_next_zero_tick(tmp_path: Path) -> None:
    spec = PreemptionSpec(f"trace={write_trace(tmp_path, [1, 1, 1, 0, 1], gap=60)}")
    plan = spec.plan(1, elapsed=0.0)
    assert plan == AttemptPlan(wait_seconds=0.0, preempt_after=180.0)
    # submitted 70 s in: capacity now, the zero tick starts at 180 s
    plan = spec.plan(2, elapsed=70.0)
    assert plan.wait_seconds == 0.0
    assert plan.preempt_after == pytest.approx(110.0)


def test_trace_waits_until_capacity_comes_back(tmp_path: Path) -> None:
    spec = PreemptionSpec(f"trace={write_trace(tmp_path, [1, 0, 0, 1, 1, 0], gap=60)}")
    plan = spec.plan(2, elapsed=90.0)  # during the outage (ticks 1-2)
    assert plan.wait_seconds == pytest.approx(90.0)  # capacity at 180 s
    assert plan.preempt_after == pytest.approx(120.0)  # runs 180 s .. 300 s
    assert not plan.no_capacity


def test_trace_that_ends_with_capacity_never_preempts(tmp_path: Path) -> None:
    spec = PreemptionSpec(f"trace={write_trace(tmp_path, [0, 1, 1], gap=10)}")
    plan = spec.plan(1, elapsed=0.0)
    assert plan.wait_seconds == pytest.approx(10.0)
    assert plan.preempt_after is None
    # past the end, capacity stays as on the last tick
    assert spec.plan(2, elapsed=1000.0) == AttemptPlan()


def test_trace_that_never_comes_back_is_no_capacity(tmp_path: Path) -> None:
    spec = PreemptionSpec(f"trace={write_trace(tmp_path, [1, 1, 0, 0, 0], gap=60)}")
    assert spec.plan(2, elapsed=130.0).no_capacity
    assert spec.plan(3, elapsed=10_000.0).no_capacity  # past the end, still nothing
    assert PreemptionSpec(f"trace={write_trace(tmp_path, [0, 0], name='none.json')}").plan(1, 0.0).no_capacity


def test_trace_offset_skips_ticks(tmp_path: Path) -> None:
    path = write_trace(tmp_path, [0, 0, 1, 1, 0], gap=60)
    assert PreemptionSpec(f"trace={path}").plan(1, 0.0) == AttemptPlan(
        wait_seconds=120.0, preempt_after=120.0
    )
    assert PreemptionSpec(f"trace={path},offset=2").plan(1, 0.0) == AttemptPlan(preempt_after=120.0)
    assert PreemptionSpec(f"trace={path},offset=99").plan(1, 0.0).no_capacity


def test_time_scale_applies_to_the_trace_gap(tmp_path: Path) -> None:
    path = write_trace(tmp_path, [1, 0, 0, 1, 1, 1, 0], gap=60)
    full = PreemptionSpec(f"trace={path}")
    fast = PreemptionSpec(f"trace={path}", time_scale=0.1)
    assert full.plan(1, 0.0).preempt_after == pytest.approx(60.0)
    assert fast.plan(1, 0.0).preempt_after == pytest.approx(6.0)
    # the same moment in trace time gives the same plan, scaled
    for tick_time in (0.0, 30.0, 90.0, 200.0, 330.0):
        slow_plan = full.plan(2, tick_time)
        fast_plan = fast.plan(2, tick_time * 0.1)
        assert fast_plan.wait_seconds == pytest.approx(slow_plan.wait_seconds * 0.1)
        assert (fast_plan.preempt_after is None) == (slow_plan.preempt_after is None)
        if slow_plan.preempt_after is not None:
            assert fast_plan.preempt_after == pytest.approx(slow_plan.preempt_after * 0.1)
        assert fast_plan.no_capacity == slow_plan.no_capacity


def test_trace_plans_are_consistent_with_the_trace(tmp_path: Path) -> None:
    """Wherever an attempt is submitted, it starts on an up tick and is stopped on the next down tick."""
    data = [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1]
    gap = 50.0
    spec = PreemptionSpec(f"trace={write_trace(tmp_path, data, gap=gap)}")
    for elapsed in [x * 7.5 for x in range(int(len(data) * gap / 7.5))]:
        plan = spec.plan(1, elapsed)
        start = elapsed + plan.wait_seconds
        tick = int(start / gap + 1e-9)
        assert data[tick] > 0, (elapsed, plan)
        # it waited only through down ticks: the first up tick at or after submission
        assert all(data[i] == 0 for i in range(int(elapsed // gap), tick)), (elapsed, plan)
        assert plan.wait_seconds == 0 or start == pytest.approx(tick * gap)
        if plan.preempt_after is None:
            assert all(x > 0 for x in data[tick:])
        else:
            end = start + plan.preempt_after
            end_tick = round(end / gap)
            assert end == pytest.approx(end_tick * gap)
            assert data[end_tick] == 0
            assert all(data[i] > 0 for i in range(tick, end_tick))


def _a_real_trace() -> Path | None:
    if not TRACES.is_dir():
        return None
    return next(iter(sorted(TRACES.rglob("*.json"))), None)


def test_a_real_spot_trace_loads_and_plans() -> None:
    path = _a_real_trace()
    assert path is not None
    trace = Trace.load(path)
    assert trace.gap_seconds > 0
    assert len(trace.data) > 10
    assert all(x >= 0 for x in trace.data)
    spec = PreemptionSpec(f"trace={path}", time_scale=0.01)
    tick = trace.gap_seconds * 0.01
    for n, elapsed in enumerate((0.0, tick * 3.5, tick * len(trace.data) / 2), start=1):
        plan = spec.plan(n, elapsed)
        if plan.no_capacity:
            assert not any(trace.data[int(elapsed // tick) :])
            continue
        start_tick = int((elapsed + plan.wait_seconds) / tick + 1e-6)  # float: k*tick/tick may be k-ε
        assert trace.data[min(start_tick, len(trace.data) - 1)] > 0
        if plan.preempt_after is not None:
            assert plan.preempt_after > 0


# ---------------------------------------------------------------- hostile trace files (issue 14)


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "folder", "missing", "not-json"])
def test_a_trace_that_is_not_a_regular_json_file_is_a_value_error(target: str, tmp_path: Path) -> None:
    if target == "/dev/zero":
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero")
        path = "/dev/zero"
    elif target == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)  # opening it for reading must not block
    elif target == "folder":
        path = str(tmp_path)
    elif target == "not-json":
        path = str(tmp_path / "t.json")
        Path(path).write_text('{"data": [1, 2')
    else:
        path = str(tmp_path / "nope.json")
    with pytest.raises(ValueError):
        PreemptionSpec(f"trace={path}")


def test_a_trace_over_the_size_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from multispot.local import preemptions

    monkeypatch.setattr(preemptions, "MAX_TRACE_BYTES", 100)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [1] * 100}))
    with pytest.raises(ValueError, match="larger than"):
        PreemptionSpec(f"trace={path}")


def test_at_items_counted_from_a_committed_save() -> None:
    spec = PreemptionSpec("at=save:1+4s,save:2,save:3+2.5s!")
    assert spec.plan(1, 0.0) == AttemptPlan(preempt_after=4.0, after_save=1)
    assert spec.plan(2, 0.0) == AttemptPlan(fault="kill-in-save:2")
    assert spec.plan(3, 0.0) == AttemptPlan(preempt_after=2.5, notice=False, after_save=3)
    with pytest.raises(ValueError, match="save:N"):
        PreemptionSpec("at=save:0+1s")
    with pytest.raises(ValueError):
        PreemptionSpec("at=save:1+soon")

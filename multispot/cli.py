"""The ``multispot`` command: a thin shell over the Python API.

Only click is imported at start-up; each command imports what it needs, so ``--help`` stays
fast and never loads pydantic models, a cloud SDK or torch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2

output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts",
)

wide_option = click.option(
    "--wide", "-w", is_flag=True, help="every column, however wide (default: what reads at 80 columns)"
)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _print_error(text: str) -> None:
    """``error: TEXT`` on stderr; TEXT may quote a user's input, so it is never read as markup."""
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/] {escape(text)}", markup=True, soft_wrap=True)


def handles_errors(func: F) -> F:
    """Turn multispot's own errors into a clear message and exit status 2 (JSON with --output json)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from multispot.errors import MultispotError

        try:
            return func(*args, **kwargs)
        except MultispotError as exc:
            problems = getattr(exc, "problems", None)
            if kwargs.get("output") == "json":
                payload: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
                if problems:
                    payload["problems"] = [
                        {"path": p[0], "message": p[1]}
                        if isinstance(p, tuple) and len(p) == 2
                        else {"path": p.path, "message": p.message, "line": p.line}
                        for p in problems
                    ]
                _emit_json(payload)
            _print_error(str(exc))
            sys.exit(EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="multispot")
def cli() -> None:
    """Run ML training on spot capacity (SageMaker, Vertex AI, Azure ML, or this machine),
    with checkpoints that resume anywhere and proof of what you saved.

    \b
    Start with:  multispot submit job.yaml --dry-run
                 multispot submit job.yaml --inject-preemptions every=20s,max=3
    """


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--provider", "-p", help="provider to run on (default: the job's first target, else local)")
@click.option("--dry-run", is_flag=True, help="print what would be submitted; submit nothing")
@click.option(
    "--inject-preemptions",
    metavar="SPEC",
    help="local provider: none | at=20s,45s | every=30s,max=3 | rate=6/h,seed=1 | trace=FILE",
)
@click.option("--wait/--detach", default=True, show_default=True, help="follow the job until it ends")
@click.option("--save-seconds", type=float, help="dry run: a save's duration, for interval advice")
@click.option("--mtbp", metavar="DURATION", help="dry run: mean time between preemptions, e.g. 2h")
@click.option(
    "--deadline", metavar="WHEN", help="limits.deadline: a duration after submit (36h) or an ISO time"
)
@click.option("--policy", metavar="NAME", help="spot.policy, e.g. greedy, uniform-progress, deadline-aware")
@click.option(
    "--trace", "traces", multiple=True, metavar="PATH", help="dry run: spot trace(s) to simulate the plan on"
)
@click.option(
    "--resume-checkpoints",
    is_flag=True,
    help="checkpoint.uri already holds another job's checkpoints: resume from them (else refused)",
)
@output_option
@handles_errors
def submit(
    file: str,
    provider: str | None,
    dry_run: bool,
    inject_preemptions: str | None,
    wait: bool,
    save_seconds: float | None,
    mtbp: str | None,
    deadline: str | None,
    policy: str | None,
    traces: tuple[str, ...],
    resume_checkpoints: bool,
    output: str,
) -> None:
    """Validate FILE and run it. Nothing is uploaded or started unless every check passes."""
    from multispot import api
    from multispot.job import Job

    job = api.with_overrides(Job.from_yaml(file), deadline, policy)
    if dry_run:
        from multispot.units import parse_duration

        mean = _parse_option("--mtbp", mtbp, parse_duration) if mtbp else None
        result = api.dry_run(job, provider, inject_preemptions, save_seconds, mean, list(traces) or None)
        if output == "json":
            keys = ("provider", "request", "placements", "interval_advice", "plan")
            _emit_json({key: result[key] for key in keys})
        else:
            _print_dry_run(result)
        return
    run = api.submit(
        job, provider, inject_preemptions=inject_preemptions, resume_checkpoints=resume_checkpoints
    )
    if not wait:
        if output == "json":
            _emit_json(run.to_dict())
        else:
            click.echo(f"submitted {run.id}; follow it with: multispot watch {run.id}")
        return
    if output == "json":
        state = run.wait()
        _emit_json(run.to_dict())
    else:
        _console().print(f"submitted [bold]{run.id}[/]  (Ctrl-C detaches; the job goes on)")
        try:
            state = run.wait(show=True)
        except KeyboardInterrupt:
            click.echo(f"\ndetached: {run.id} goes on. `multispot watch {run.id}` to follow it again.")
            sys.exit(0)
        _print_status(run)
        _print_last_output(run)
    sys.exit(0 if state.value == "SUCCEEDED" else 1)


@cli.command()
@click.argument("job")
@wide_option
@output_option
@handles_errors
def status(job: str, wide: bool, output: str) -> None:
    """State, attempts and checkpoint progress of JOB (id, name, or id prefix)."""
    from multispot import api

    run = api.get(job)
    run.ensure_driven()
    if output == "json":
        _emit_json(run.to_dict())
    else:
        _print_status(run, wide)


@cli.command()
@click.argument("job")
@output_option
@handles_errors
def watch(job: str, output: str) -> None:
    """Follow JOB until it ends, restarting its controller if it died."""
    from multispot import api

    run = api.get(job)
    run.ensure_driven()
    try:
        state = run.wait(show=output != "json")
    except KeyboardInterrupt:
        sys.exit(0)
    if output == "json":
        _emit_json(run.to_dict())
    else:
        _print_status(run)
        _print_last_output(run)
    sys.exit(0 if state.value == "SUCCEEDED" else 1)


@cli.command()
@click.argument("job")
@click.option("--follow", "-f", is_flag=True, help="keep printing until the job ends")
@click.option("--attempt", "-a", type=int, help="only this attempt")
@output_option
@handles_errors
def logs(job: str, follow: bool, attempt: int | None, output: str) -> None:
    """The output of JOB's attempts (json: one {"attempt", "line"} object per line)."""
    from multispot import api

    run = api.get(job)
    if follow:
        run.ensure_driven()
    try:
        if output == "json":
            for item, line in run.log_lines(follow=follow, attempt=attempt):
                click.echo(json.dumps({"attempt": item.n, "line": line.rstrip("\n")}))
        else:
            for text in run.logs(follow=follow, attempt=attempt):
                click.echo(text, nl=False)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.argument("job")
@output_option
@handles_errors
def cancel(job: str, output: str) -> None:
    """Stop JOB: the running attempt is cancelled and no new one is started."""
    from multispot import api

    run = api.get(job)
    ended = run.status.job_terminal
    if not ended:
        run.cancel()
    if output == "json":
        _emit_json({"id": run.id, "state": run.status.value, "cancel_requested": not ended})
    elif ended:
        click.echo(f"{run.id} already ended: {run.status.value}")
    else:
        click.echo(f"cancelling {run.id}")


@cli.command(name="list")
@click.option("--limit", "-n", default=20, show_default=True)
@wide_option
@output_option
@handles_errors
def list_(limit: int, wide: bool, output: str) -> None:
    """Recent jobs, newest first."""
    from multispot import api

    runs = api.runs(limit)
    for run in runs:
        if not run.status.job_terminal:
            run.ensure_driven()
    listed = api.run_dicts(runs)
    if output == "json":
        _emit_json(listed)
        return
    from multispot.display import fit_table, print_table

    rows = []
    for data in listed:
        progress = data["progress"]
        rows.append(
            [
                data["id"],
                data["state"],
                data["provider"],
                str(len(data["attempts"])),
                str(data["preemptions"]),
                f"{progress['step']}/{progress['total_steps'] or '?'}" if progress else "-",
                api.elapsed(data),
            ]
        )
    headers = ("job", "state", "provider", "attempts", "preempted", "progress", "age")
    narrow = ("job", "state", "attempts", "preempted", "progress", "age")
    print_table(_console(), fit_table(headers, rows, narrow=narrow, wide=wide, fold=("job",)), wide)


@cli.command()
@click.argument("job")
@click.option(
    "--measured",
    is_flag=True,
    help="ask the provider's billing API for the billed figure (Cost Explorer, BigQuery export, "
    "Cost Management); otherwise every figure is estimated",
)
@wide_option
@output_option
@handles_errors
def cost(job: str, measured: bool, wide: bool, output: str) -> None:
    """What JOB's attempts were billed, against the on-demand counterfactual."""
    from multispot import api

    report = api.get(job).cost(measured=measured)
    if output == "json":
        _emit_json(report.to_dict())
        return
    from multispot.display import fit_table, print_table

    narrow = ("attempt", "instance", "market", "outcome", "billed", "cost", "on-demand", "measured")
    table = fit_table(
        report.headers(),
        report.rows(),
        narrow=narrow,
        wide=wide,
        fold=("instance",),
        title=f"cost of {report.job_id}",
    )
    console = _console()
    print_table(console, table, wide)
    console.print(report.summary())
    for note in report.details():
        console.print(f"[dim]note: {note}[/]")


@cli.command()
@click.option(
    "--since", default=None, help="jobs created since a duration ago (7d, 12h) or a date (2026-11-01, UTC)"
)
@click.option("--provider", default=None, help="only attempts on this provider")
@wide_option
@output_option
@handles_errors
def savings(since: str | None, provider: str | None, wide: bool, output: str) -> None:
    """What every job saved against on-demand, grouped by provider and instance type."""
    from multispot import api
    from multispot.billing import parse_since

    try:
        parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    report = api.savings(since=since, provider=provider)
    if output == "json":
        _emit_json(report.to_dict())
        return
    from multispot.display import fit_table, print_table

    rows = report.rows()
    narrow = ("provider", "instance", "jobs", "actual", "on-demand", "saved", "saved %")
    table = fit_table(
        report.HEADERS, rows, narrow=narrow, wide=wide, title="savings (estimated)", sections=(len(rows) - 2,)
    )
    console = _console()
    print_table(console, table, wide)
    console.print(report.summary())
    for note in report.details():
        console.print(f"[dim]note: {note}[/]")


@cli.command()
@click.argument("target")
@wide_option
@output_option
@handles_errors
def checkpoints(target: str, wide: bool, output: str) -> None:
    """Checkpoints of a job (or under a URI): each step, committed or not, and why."""
    from multispot import api

    listing = api.checkpoints(target)
    uri, rows = listing["uri"], listing["checkpoints"]
    if output == "json":
        _emit_json(listing)
        return
    from multispot.display import fit_table, print_table

    cells = [
        [
            str(row["step"]),
            "yes" if row["valid"] else "[red]no[/]",
            _human_bytes(int(str(row["bytes"]))) if row["bytes"] is not None else "-",
            str(row["attempt"] or "-"),
            _short_time(str(row["time"])) if row["time"] else "-",
            str(row["reason"]),
        ]
        for row in rows
    ]
    headers = ("step", "valid", "size", "attempt", "time", "reason")
    console = _console()
    console.print(f"[bold]{uri}[/]", soft_wrap=True)
    print_table(console, fit_table(headers, cells, wide=wide, fold=("reason",)), wide)


@cli.command(name="verify-resume")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--schedule",
    metavar="SPEC",
    help="preemptions for the interrupted run (default: notice a third in, kill inside save 2, hard stop)",
)
@click.option("--every-steps", default=100, show_default=True, help="save every N steps in both runs")
@click.option("--keep-runs", is_flag=True, help="keep both runs' checkpoints for a closer look")
@output_option
@handles_errors
def verify_resume(file: str, schedule: str | None, every_steps: int, keep_runs: bool, output: str) -> None:
    """Is FILE's script spot-ready? Run it uninterrupted and interrupted (locally) and compare.

    Run this first, before paying for spot: a script that does not resume exactly (optimizer or
    RNG state not saved, data order not resumed) wastes the savings or silently changes results.
    """
    from multispot.job import Job
    from multispot.verify import verify_resume as verify

    job = Job.from_yaml(file)
    show = None
    if output != "json":
        console = _console()

        def show(run: Any) -> None:
            console.print(f"[bold]{run.record.name}[/] ({run.id})")
            run.wait(show=True)

    report = verify(job, schedule=schedule, every_steps=every_steps, keep_runs=keep_runs, show=show)
    if output == "json":
        _emit_json(report.to_dict())
    else:
        console = _console()
        style = {"spot-ready": "bold green", "inconclusive": "bold yellow"}.get(report.outcome, "bold red")
        console.print(f"\n[{style}]{report.verdict}[/]")
        console.print(
            f"  schedule: {report.schedule}   preemptions: {report.interrupted.preemptions} "
            f"({', '.join(report.interrupted.outcomes)})"
        )
        console.print(f"  compared: {', '.join(report.compared_keys) or '-'}")
        console.print(f"  exercised: {report.exercised_line()}")
        for diff in report.differences:
            console.print(f"  [red]{diff['key']}[/]: {diff['reference']!r} vs {diff['interrupted']!r}")
        for line in report.diagnosis:
            console.print(f"  - {line}")
    sys.exit(report.exit_code)  # 0 spot-ready, 1 not spot-ready, 2 inconclusive


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("more_traces", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--trace", "traces", multiple=True, required=True, metavar="PATH...", help="spot trace(s), one per pool"
)
@click.option("--deadline", metavar="DURATION", help="e.g. 48h (default: the job's limits.deadline)")
@click.option("--work", metavar="DURATION", help="uninterrupted running time (default: spot.work)")
@click.option("--policy", default="all", show_default=True, help="a policy name, or all")
@click.option("--restart-overhead", default="3m", show_default=True, metavar="DURATION")
@click.option("--start", default=0, show_default=True, help="tick of the trace at which the job starts")
@click.option("--spot-price", type=float, multiple=True, help="USD/h per spot pool (default: the job's)")
@click.option("--on-demand-price", type=float, help="USD/h on-demand (default: the job's)")
@wide_option
@output_option
@handles_errors
def simulate(
    file: str,
    more_traces: tuple[str, ...],
    traces: tuple[str, ...],
    deadline: str | None,
    work: str | None,
    policy: str,
    restart_overhead: str,
    start: int,
    spot_price: tuple[float, ...],
    on_demand_price: float | None,
    wide: bool,
    output: str,
) -> None:
    """Replay spot traces through the policies: cost, deadline, preemptions, vs the optimum."""
    from multispot import api
    from multispot.job import Job
    from multispot.policy import names

    if policy != "all" and policy not in names():
        raise click.BadParameter(f"use all or one of {', '.join(names())}", param_hint="--policy")
    job = Job.from_yaml(file)
    try:
        report = api.simulate(
            job,
            [*traces, *more_traces],
            deadline,
            policies=policy,
            work=work,
            restart_overhead=restart_overhead,
            start=start,
            spot_prices=list(spot_price) or None,
            on_demand_price=on_demand_price,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if output == "json":
        _emit_json(report.to_dict())
        return
    from multispot.display import fit_table, print_table

    headers = (
        "policy",
        "cost $",
        "× optimum",
        "deadline",
        "min slack h",
        "finish h",
        "preempted",
        "spot h",
        "on-demand h",
        "saved",
    )
    rows = [
        [
            o.policy,
            f"{o.cost:.2f}",
            f"{o.ratio_to_optimum:.3f}" if o.ratio_to_optimum else "-",
            "met" if o.deadline_met else "[red]missed[/]",
            f"{o.min_slack_hours:.2f}" if o.min_slack_hours is not None else "-",
            f"{o.finish_hours:.1f}" if o.finish_hours is not None else "-",
            str(o.preemptions),
            f"{o.spot_hours:.1f}",
            f"{o.on_demand_hours:.1f}",
            f"{o.savings_vs_on_demand:.0%}" if o.savings_vs_on_demand is not None else "-",
        ]
        for o in report.outcomes
    ]
    narrow = ("policy", "cost $", "× optimum", "deadline", "min slack h", "preempted", "saved")
    table = fit_table(headers, rows, narrow=narrow, wide=wide)
    console = _console()
    console.print(
        f"work {report.work_hours:.1f}h ({report.work_source}), deadline {report.deadline_hours:.1f}h, "
        f"tick {report.tick_seconds:g}s, restart {report.restart_overhead_seconds:g}s; prices: {report.price_source}"
    )
    print_table(console, table, wide)
    best = report.optimum_cost
    shown = f"${best:.2f}" if best else "infeasible"
    console.print(f"omniscient optimum ({report.optimum_kind}): {shown}")


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover - the loop always returns


def _short_time(iso: str) -> str:
    """A manifest's ISO time as ``YYYY-MM-DD HH:MM:SS`` in local time (as written when unparsable)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _parse_option(name: str, value: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc


def _print_dry_run(result: dict[str, Any]) -> None:
    console = _console()
    console.print(
        f"[bold]dry run[/]: nothing submitted. Provider [bold]{result['provider']}[/], placements in order:"
    )
    for p in result["placements"]:
        price = f" ${p['price_per_hour']}/h" if p.get("price_per_hour") is not None else ""
        console.print(
            f"  - {p['provider']} {p['region'] or ''} {p['instance_type'] or ''} {p['market']}{price}"
        )
    for cap in result["capabilities"]:
        if not cap["supported"]:
            console.print(f"  [yellow]note[/]: {cap['name']}: {cap['reason']}")
    advice = result["interval_advice"]
    console.print(f"  [cyan]interval advice[/]: {advice.get('text') or advice['reason']}")
    plan = result.get("plan") or {}
    if plan.get("cost_range"):
        low, high = plan["cost_range"]["low"], plan["cost_range"]["high"]
        console.print(f"  [cyan]expected cost[/] ({plan['policy']}): ${low:.2f} - ${high:.2f} for spot.work")
    sim = plan.get("simulated")
    if sim and "cost" in sim:
        met = "met" if sim["deadline_met"] else "missed"
        console.print(f"  [cyan]simulated on the trace[/]: ${sim['cost']:.2f}, deadline {met}")
    console.print("request:")
    # Raw, never wrapped by the terminal's width: it must stay valid JSON for a parser.
    click.echo(json.dumps(result["request"], indent=2, default=str))


LAST_LINES = 15


def _print_last_output(run: Any, lines: int = LAST_LINES) -> None:
    """For a job that did not succeed: the last lines its last attempt printed (the reason is
    usually there: a traceback, an argparse error), raw, after the status."""
    from collections import deque

    from multispot.errors import MultispotError

    if run.status.value == "SUCCEEDED" or not run.attempts:
        return
    last = run.attempts[-1]
    try:
        tail = deque((line for _, line in run.log_lines(attempt=last.n)), maxlen=lines)
    except (OSError, MultispotError):  # the output may be gone with the machine: the status stands
        return
    if not tail:
        click.echo(f"attempt {last.n} printed nothing")
        return
    click.echo(f"last lines of attempt {last.n}'s output (`multispot logs {run.id}` for all):")
    for line in tail:
        click.echo("  " + line.rstrip("\r\n").rsplit("\r", 1)[-1])


def _print_status(run: Any, wide: bool = False) -> None:
    import time

    from multispot.display import fit_table, print_table
    from multispot.units import format_duration

    data = run.to_dict()
    console = _console()
    progress = data["progress"]
    step = f"  step {progress['step']}/{progress['total_steps'] or '?'}" if progress else ""
    console.print(f"[bold]{data['id']}[/]  {data['state']}{step}  preemptions: {data['preemptions']}")
    if data["message"]:
        console.print(f"  {data['message']}")
    console.print(f"  checkpoints: {data['checkpoint_uri']}\n  outputs:     {data['output_uri']}")
    rows = []
    # Two reads of a live job: an attempt may start between them, so pair them by number.
    shown_by_n = {shown["n"]: shown for shown in data["attempts"]}
    for a in run.attempts:
        ran = format_duration((a.ended or time.time()) - a.started) if a.started else "-"
        resumed = shown_by_n.get(a.n, {}).get("resumed_from_step")
        place = " ".join(str(p) for p in (a.placement.instance_type, a.placement.region) if p)
        rows.append(
            [
                str(a.n),
                place or "-",
                a.placement.market,
                a.state.value,
                ran,
                "-" if resumed is None else str(resumed),
                a.message,
            ]
        )
    headers = ("attempt", "instance", "market", "state", "ran", "resumed", "message")
    narrow = ("attempt", "market", "state", "ran", "resumed", "message")
    print_table(console, fit_table(headers, rows, narrow=narrow, wide=wide, fold=("message",)), wide)


@cli.command()
@click.argument("accelerator", required=False, metavar="ACCEL[:COUNT]")
@click.option("--provider", "providers", multiple=True, help="only this provider (repeatable)")
@click.option("--region", "regions", multiple=True, help="only this region (repeatable)")
@click.option("--spot/--on-demand", "spot", default=True, help="sort by the spot or the on-demand price")
@wide_option
@output_option
@handles_errors
def prices(
    accelerator: str | None,
    providers: tuple[str, ...],
    regions: tuple[str, ...],
    spot: bool,
    wide: bool,
    output: str,
) -> None:
    """Spot and on-demand prices of ACCEL[:COUNT] (e.g. V100:1, A100:8) across clouds and regions.

    Without ACCEL, CPU-only shapes. Prices per instance-hour in USD, from the catalog (the
    dated snapshot, or what `multispot catalog refresh` fetched); its date is shown.
    """
    from multispot import api

    table = api.prices(accelerator, list(providers) or None, list(regions) or None, spot)
    if output == "json":
        _emit_json(table.to_dict())
        return
    from multispot.display import fit_table, print_table

    rows = table.rows()
    if not wide:  # (est.) as a mark, explained below the table
        rows = [[cell.replace(" (est.)", "*") for cell in row] for row in rows]
    narrow = ("provider", "region", "instance", "spot", "on-demand", "discount")
    title = f"{table.query}: sorted by {table.market} price per instance-hour"
    console = _console()
    if table.offers:
        view = fit_table(table.HEADERS, rows, narrow=narrow, wide=wide, fold=("instance",), title=title)
        print_table(console, view, wide)
    else:
        console.print(f"no offer in the catalog has {table.query}")
    for line in table.freshness():
        console.print(f"[dim]{line}[/]")
    if any(o.spot_estimated for o in table.offers):
        mark = "(est.)" if wide else "*"
        console.print(
            f"[dim]{mark}: estimated, the provider publishes no spot price; see `multispot catalog show`[/]"
        )


@cli.group()
def catalog() -> None:
    """The price catalog: what it holds, and refreshing it from the providers' public prices."""


@catalog.command("show")
@output_option
@handles_errors
def catalog_show(output: str) -> None:
    """Each provider's prices: date, age, origin (snapshot or your refreshed copy), and notes."""
    from multispot.catalog import load_catalog

    cat = load_catalog()
    info: dict[str, dict[str, Any]] = {
        p: {
            "date": cat.dates.get(p),
            "age_days": cat.age_days(p),
            "origin": cat.origins.get(p),
            "offers": len(cat.find(provider=p)),
            "regions": sorted({o.region for o in cat.find(provider=p)}),
            "note": cat.notes.get(p, ""),
            "error": cat.notes.get(f"{p}:error", ""),
        }
        for p in cat.providers()
    }
    if output == "json":
        _emit_json(info)
        return
    console = _console()
    for name, item in info.items():
        console.print(
            f"[bold]{name}[/]: {item['offers']} offers in {', '.join(item['regions'])}; prices of "
            f"{item['date']} ({item['age_days']} days old) from {item['origin']}"
        )
        for key in ("note", "error"):
            if item[key]:
                console.print(f"  [dim]{item[key]}[/]")


@catalog.command("refresh")
@click.option("--provider", "providers", multiple=True, help="a provider with a price source (default: all)")
@click.option("--region", "regions", multiple=True, help="regions to fetch (default: the snapshot's)")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False),
    help="a saved response of the price source instead of fetching (with one --provider)",
)
@click.option("--api-key", envvar="MULTISPOT_GCP_API_KEY", help="Cloud Billing Catalog API key (Vertex)")
@click.option("--force", is_flag=True, help="replace a catalog file you edited by hand (a .bak is kept)")
@output_option
@handles_errors
def catalog_refresh(
    providers: tuple[str, ...],
    regions: tuple[str, ...],
    from_file: str | None,
    api_key: str | None,
    force: bool,
    output: str,
) -> None:
    """Rebuild prices from the public price sources into $MULTISPOT_HOME/catalog.

    A provider that cannot be refreshed (no network, no key) keeps its current prices; the
    command says so and exits 1. A copy you edited by hand is never overwritten without --force.
    """
    from multispot.catalog import load_catalog
    from multispot.catalog.files import write_user_copy
    from multispot.catalog.sources import refresh_document, registered
    from multispot.errors import CatalogError

    known = registered()
    unknown = [name for name in providers if name not in known]
    if unknown:
        raise click.BadParameter(
            f"no price source for {', '.join(unknown)}: registered are {', '.join(known) or 'none'}",
            param_hint="--provider",
        )
    names = list(providers) or known
    if from_file and len(names) != 1:
        raise click.UsageError("--from-file needs exactly one --provider")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            raw = json.loads(Path(from_file).read_text()) if from_file else None
            doc = refresh_document(name, regions=tuple(regions) or None, api_key=api_key, raw=raw)
            path = write_user_copy(doc, force=force)
            results[name] = {
                "refreshed": True,
                "path": str(path),
                "prices": len(doc["prices"]),
                "date": doc["date"],
            }
        except (CatalogError, OSError, ValueError) as exc:
            current = load_catalog((name,))
            results[name] = {
                "refreshed": False,
                "error": str(exc),
                "kept": f"prices of {current.dates.get(name)} ({current.age_days(name)} days old)",
            }
    if output == "json":
        _emit_json(results)
    else:
        console = _console()
        for name, result in results.items():
            if result["refreshed"]:
                console.print(f"[green]{name}[/]: {result['prices']} prices written to {result['path']}")
            else:
                console.print(
                    f"[yellow]{name}[/]: not refreshed ({result['error']}); keeping {result['kept']}"
                )
    if not all(r["refreshed"] for r in results.values()):
        sys.exit(1)


# --------------------------------------------------------------------------- sweeps and job arrays


def _group_options(func: F) -> F:
    options = [
        click.argument("file", required=False, type=click.Path(dir_okay=False)),
        click.option(
            "--resume", "resume", metavar="ID", help="continue this one (after its driver was stopped)"
        ),
        click.option("--provider", "-p", help="provider every job runs on (default: the job's, else local)"),
        click.option(
            "--inject-preemptions",
            metavar="SPEC",
            help="local provider, every job: none | at=20s | every=30s,max=3 | rate=6/h,seed=1",
        ),
        click.option(
            "--wait/--detach", default=True, show_default=True, help="drive it here until every job ends"
        ),
        click.option("--timeout", type=float, metavar="SECONDS", help="stop waiting after this long"),
        output_option,
        handles_errors,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_group(
    kind: str,
    file: str | None,
    resume: str | None,
    provider: str | None,
    inject_preemptions: str | None,
    wait: bool,
    timeout: float | None,
    output: str,
) -> None:
    from multispot import api

    if (file is None) == (resume is None):
        raise click.UsageError(f"give a {kind} FILE, or --resume ID (not both)")
    if resume is not None:
        handle = api.get_sweep(resume)
        if handle.kind != kind:
            raise click.UsageError(f"{handle.id} is a{'n' if handle.kind == 'array' else ''} {handle.kind}")
        if wait:
            handle.run(timeout)
        else:
            handle.ensure_driven()
    else:
        start = api.sweep if kind == "sweep" else api.array
        if output != "json" and wait:
            _console(stderr=True).print(f"starting the {kind}; every job is followed until it ends ...")
        handle = start(file, provider, inject_preemptions=inject_preemptions, wait=wait, timeout=timeout)
    if output == "json":
        _emit_json(handle.to_dict())
    else:
        _print_group(handle)


@cli.command()
@_group_options
def sweep(
    file: str | None,
    resume: str | None,
    provider: str | None,
    inject_preemptions: str | None,
    wait: bool,
    timeout: float | None,
    output: str,
) -> None:
    """Run the hyperparameter sweep in FILE (a job with a sweep: section): each trial is a job.

    \b
    Ctrl-C (or a lost terminal) stops only the driver: trials go on under their controllers,
    and  multispot sweep --resume ID  continues where it stopped.
    """
    _run_group("sweep", file, resume, provider, inject_preemptions, wait, timeout, output)


@cli.command()
@_group_options
def array(
    file: str | None,
    resume: str | None,
    provider: str | None,
    inject_preemptions: str | None,
    wait: bool,
    timeout: float | None,
    output: str,
) -> None:
    """Run the job array in FILE (a job with an array: section): one job per task, each with
    MULTISPOT_TASK_INDEX / MULTISPOT_TASK_COUNT and its shards."""
    _run_group("array", file, resume, provider, inject_preemptions, wait, timeout, output)


@cli.command(name="sweep-status")
@click.argument("ref", metavar="ID")
@output_option
@handles_errors
def sweep_status(ref: str, output: str) -> None:
    """A sweep's trials (or an array's tasks): state, parameters, objective, cost, preemptions;
    the best trial and the cost over all of them."""
    from multispot import api

    handle = api.get_sweep(ref)
    handle.ensure_driven()
    if output == "json":
        _emit_json(handle.to_dict())
    else:
        _print_group(handle)


@cli.command(name="sweep-cancel")
@click.argument("ref", metavar="ID")
@output_option
@handles_errors
def sweep_cancel(ref: str, output: str) -> None:
    """Stop a sweep or array: nothing more starts, and its running jobs are cancelled."""
    from multispot import api

    handle = api.get_sweep(ref)
    handle.cancel()
    if output == "json":
        _emit_json({"id": handle.id, "state": handle.state})
    else:
        click.echo(f"{handle.id}: {handle.state}")


@cli.command()
@click.option("--limit", "-n", default=20, show_default=True)
@output_option
@handles_errors
def sweeps(limit: int, output: str) -> None:
    """Recent sweeps and arrays."""
    from multispot import api

    rows = [g.summary() for g in api.sweeps(limit)]
    if output == "json":
        _emit_json(rows)
        return
    from rich.table import Table

    table = Table("id", "kind", "state", "jobs", "message")
    for row in rows:
        table.add_row(row["id"], row["kind"], row["state"], str(row["members"]), row["message"])
    _console().print(table)


@cli.command()
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="worker processes")
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=16, show_default=True, help="jobs each worker drives"
)
@click.option(
    "--db",
    metavar="URL",
    envvar="MULTISPOT_DB",
    help="job store: sqlite:///PATH or postgresql://... (default: $MULTISPOT_DB, else the local store)",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=1.0),
    default=None,
    metavar="SECONDS",
    help="a lease not renewed for this long is taken over (default 10)",
)
@handles_errors
def controller(replicas: int, concurrency: int, db: str | None, stale_after: float | None) -> None:
    """Run controllers as a service: REPLICAS workers, each leasing up to CONCURRENCY unfinished
    jobs from the store and driving them. A replica that dies is restarted and its jobs are taken
    over within the stale window; SIGTERM or Ctrl-C releases every lease and exits. While it runs,
    no per-job controller is started."""
    from multispot.controller import STALE_AFTER
    from multispot.service import Supervisor
    from multispot.store import open_store

    open_store(db).close()  # a wrong URL or an unusable store is said here, once, not by each replica
    supervisor = Supervisor(replicas, concurrency, db, stale_after=stale_after or STALE_AFTER)
    sys.exit(supervisor.run())


def _print_group(handle: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    data = handle.to_dict()
    console = _console()
    console.print(
        f"[bold]{escape(data['id'])}[/] ({data['kind']})  {data['state']}  {escape(data['message'] or '')}"
    )
    sweep_kind = data["kind"] == "sweep"
    value_head = f"{data['objective']['metric']} ({data['objective']['goal']})" if sweep_kind else "-"
    heads = ["#", "job", "state", "parameters" if sweep_kind else "shards", value_head, "cost $", "preempted"]
    if not sweep_kind:
        heads.remove(value_head)
    table = Table(*heads)
    for row in data["members"]:
        if sweep_kind:
            what = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items()
            )
        else:
            what = ", ".join(row["shards"] or []) or f"task {row['n']}"
        value = ["" if row["value"] is None else f"{row['value']:.4g}"] if sweep_kind else []
        cells = [str(row["n"]), escape(row["job"]), escape(row["state"]), escape(what), *value]
        table.add_row(*cells, f"{row['cost']:.4f}", str(row["preemptions"]))
    console.print(table)
    cost = data["cost"]
    budget = f" of a ${cost['budget']:.4f} budget" if cost["budget"] else ""
    saved = f", on-demand ${cost['on_demand']:.4f}" if cost["on_demand"] is not None else ""
    console.print(f"cost: ${cost['actual']:.4f}{budget}{saved} (estimated)")
    best = data.get("best")
    if best:
        console.print(f"best: #{best['n']} {escape(best['job'])}  {value_head} = {best['value']:.6g}")


# --------------------------------------------------------------------------- team scale: server, login, admin


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8400, show_default=True, type=int)
@click.option(
    "--db", "db", metavar="URL", help="job store URL (default: $MULTISPOT_DB, else the local SQLite)"
)
@handles_errors
def server(host: str, port: int, db: str | None) -> None:
    """Serve the multispot API (and the dashboard) for a team: `pip install multispot[server]`."""
    try:
        import uvicorn

        from multispot.server.app import create_app
    except ImportError as exc:
        from multispot.errors import MissingExtra

        raise MissingExtra(f"the server needs {exc.name}: pip install 'multispot[server]'") from None
    if db:
        import os

        from multispot.store import DB_ENV

        os.environ[DB_ENV] = db  # the controllers it starts must drive the jobs in the same store
    uvicorn.run(create_app(db), host=host, port=port, log_level="info")


@cli.command()
@click.argument("url")
@click.option(
    "--token", prompt=True, hide_input=True, help="your API token (from `multispot admin create-token`)"
)
@handles_errors
def login(url: str, token: str) -> None:
    """Send later commands to the multispot server at URL, as the owner of TOKEN."""
    from multispot.client import Client, save_login

    me = Client(url, token.strip()).call("GET", "/me")  # refuse a token the server does not know
    path = save_login(url, token.strip())
    click.echo(f"logged in to {url} as {me['name']} (team {me['team']}); saved in {path}")


@cli.command()
def logout() -> None:
    """Forget the server of `multispot login`: commands work on the local job store again."""
    from multispot.client import forget_login

    click.echo("logged out" if forget_login() else "not logged in")


@cli.group()
@click.option(
    "--db", "db", metavar="URL", help="job store URL (default: $MULTISPOT_DB, else the local SQLite)"
)
@click.pass_context
def admin(ctx: click.Context, db: str | None) -> None:
    """Teams, users and API tokens of a multispot server (run where its job store is)."""
    ctx.obj = {"db": db}


def _admin_store(ctx: click.Context) -> Any:
    from multispot.store import open_store

    return open_store(ctx.obj["db"])


def _admin_actor() -> str:
    import getpass

    return f"admin-cli:{getpass.getuser()}"


@admin.command("create-team")
@click.argument("name")
@click.pass_context
@handles_errors
def admin_create_team(ctx: click.Context, name: str) -> None:
    """Create team NAME (nothing happens if it exists)."""
    store = _admin_store(ctx)
    store.create_team(name)
    store.audit(_admin_actor(), "create-team", name, {})
    click.echo(f"team {name}")


@admin.command("create-user")
@click.argument("name")
@click.option("--team", default="default", show_default=True)
@click.option("--admin", "is_admin", is_flag=True, help="sees and acts on every team's jobs")
@click.pass_context
@handles_errors
def admin_create_user(ctx: click.Context, name: str, team: str, is_admin: bool) -> None:
    """Create user NAME in a team; then `multispot admin create-token NAME`."""
    store = _admin_store(ctx)
    user = store.create_user(name, team, admin=is_admin)
    store.audit(_admin_actor(), "create-user", user.id, {"name": name, "team": team, "admin": is_admin})
    click.echo(f"user {name} ({user.id}) in team {team}{' (admin)' if is_admin else ''}")


@admin.command("create-token")
@click.argument("user")
@click.option("--label", default="", help="what the token is for, e.g. laptop, ci")
@click.pass_context
@handles_errors
def admin_create_token(ctx: click.Context, user: str, label: str) -> None:
    """A new API token for USER (name or id), printed once: only its hash is stored."""
    from multispot.errors import ServerError
    from multispot.server.auth import hash_token, new_token

    store = _admin_store(ctx)
    found = [u for u in store.users() if user in (u.name, u.id)]
    if not found:
        raise ServerError(f"no user {user!r}: `multispot admin create-user {user}` first")
    token = new_token()
    token_id = store.add_token(found[0].id, hash_token(token), label)
    store.audit(_admin_actor(), "create-token", token_id, {"user": found[0].name, "label": label})
    click.echo(f"token {token_id} for {found[0].name} (shown once, keep it secret):", err=True)
    click.echo(token)


@admin.command("revoke-token")
@click.argument("token_id")
@click.pass_context
@handles_errors
def admin_revoke_token(ctx: click.Context, token_id: str) -> None:
    """Revoke the token TOKEN_ID (as create-token printed it): it stops working at once."""
    store = _admin_store(ctx)
    store.revoke_token(token_id)
    store.audit(_admin_actor(), "revoke-token", token_id, {})
    click.echo(f"revoked {token_id}")


def main() -> None:
    """The ``multispot`` entry point: besides each command's own handling, one handler for the
    whole CLI turns multispot's errors, the job store's and the OS's into a one-line message
    (exit 2 for multispot's, 1 for the others), never a traceback."""
    import sqlite3

    from multispot.errors import MultispotError

    try:
        cli()
    except MultispotError as exc:
        _print_error(str(exc))
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _print_error(f"{exc.strerror or exc}{where}")
        sys.exit(1)
    except sqlite3.Error as exc:
        _print_error(f"the job store cannot be used: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()

"""`make quickstart`: the quickstart job on spot with 3 injected preemptions, checked against an
uninterrupted run with the same seed.

Both run on the local provider at once (one CPU thread each). The spot run is preempted three
times (each with AWS's 120 s notice played 20x faster, 4 s after its runtime is ready, so a
busy machine's slow start does not count), every later attempt must resume from a committed
checkpoint (``resumed_from_step`` in ``status``), and it must end SUCCEEDED with final
parameters bit-identical to the reference run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import multispot as ms
from multispot.store import home

HERE = Path(__file__).resolve().parent


def metrics(run: ms.Run) -> dict[str, object]:
    path = Path(urlparse(run.record.output_uri).path) / "metrics.json"
    return dict(json.loads(path.read_text()))


def main() -> int:
    started = time.time()
    job = ms.Job.from_yaml(HERE / "job.yaml")
    reference_job = job.model_copy(update={"name": "quickstart-reference"})
    reference = ms.submit(reference_job, inject_preemptions="none")
    spot = ms.submit(job)
    print(f"spot run {spot.id} (3 preemptions injected) and reference run {reference.id} (none)\n")

    state = spot.wait(show=True)
    reference.wait()
    elapsed = time.time() - started

    data = spot.to_dict()
    # An attempt counts as resumed only if its runtime restored a committed checkpoint (the step it
    # recorded), never because a later attempt merely started.
    later = data["attempts"][1:]
    resumed = [a for a in later if (a["resumed_from_step"] or 0) > 0]
    ok = state is ms.JobState.SUCCEEDED and reference.status is ms.JobState.SUCCEEDED
    print()
    print(
        f"spot run:      {state.value}, {data['preemptions']} preemptions, {len(data['attempts'])} attempts"
    )
    for a in data["attempts"]:
        step = a["resumed_from_step"]
        where = f"resumed from step {step}" if step is not None else "started from scratch"
        print(f"               attempt {a['n']}: {where}; {a['state']}: {a['message']}")
    if ok:
        mine, theirs = metrics(spot), metrics(reference)
        identical = mine["params_sha256"] == theirs["params_sha256"]
        print(f"accuracy:      {mine['accuracy']:.4f} (reference {theirs['accuracy']:.4f})")
        print(f"parameters:    sha256 {mine['params_sha256']}")
        print(f"reference:     sha256 {theirs['params_sha256']}")
        print(f"bit-identical to the uninterrupted run: {'YES' if identical else 'NO'}")
        ok = identical and data["preemptions"] >= 3 and len(later) >= 3 and len(resumed) == len(later)
        if len(resumed) < len(later):
            print(f"resumed:       only {len(resumed)} of {len(later)} later attempts restored a checkpoint")
        print(f"cost:          {spot.cost().summary()}  (modelled at SageMaker ml.m5.xlarge prices)")
    print(f"elapsed:       {elapsed:.0f}s\n")
    print("Look closer:")
    env = f"MULTISPOT_HOME={home()} " if "MULTISPOT_HOME" in __import__("os").environ else ""
    for command in ("status", "logs", "checkpoints", "cost"):
        extra = " --output json" if command == "status" else ""
        print(f"  {env}.venv/bin/multispot {command} {spot.id}{extra}")
    print("\nquickstart", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

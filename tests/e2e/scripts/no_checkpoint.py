"""A deterministic script that never checkpoints: it ends the same however often it is
interrupted, because every attempt starts over. verify-resume must call it NOT spot-ready."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

total = 0
for step in range(200):
    total = (total * 31 + step) % 1_000_003
    time.sleep(0.02)
out = Path(urlparse(os.environ.get("MULTISPOT_OUTPUT_URI", "file://outputs")).path)
out.mkdir(parents=True, exist_ok=True)
digest = hashlib.sha256(str(total).encode()).hexdigest()
(out / "metrics.json").write_text(json.dumps({"total": total, "sha256": digest}))
print("done", total, flush=True)

"""A stock Accelerate loop on a tiny MLP, made spot-ready with the lines marked ``# multispot``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from accelerate import Accelerator

from multispot.integrations.accelerate import load_state, save_state  # multispot

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
x = torch.randn(512, 16, generator=torch.Generator().manual_seed(1))
y = (x.sum(1) > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
accelerator = Accelerator(cpu=True)
model, optimizer = accelerator.prepare(model, optimizer)

epochs, batch, per_epoch = 30, 16, 512 // 16
step = load_state(accelerator) or 0  # multispot
while step < epochs * per_epoch:
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(512, generator=torch.Generator().manual_seed(epoch))  # depends on the epoch only
    index = order[position * batch : (position + 1) * batch]
    loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
    optimizer.zero_grad()
    accelerator.backward(loss)
    optimizer.step()
    step += 1
    save_state(accelerator, step, total_steps=epochs * per_epoch)  # multispot

digest = hashlib.sha256()
for name, tensor in sorted(accelerator.unwrap_model(model).state_dict().items()):
    digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
out = Path(os.environ.get("MULTISPOT_OUTPUT_URI", "file://outputs").removeprefix("file://"))
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"params_sha256": digest.hexdigest(), "steps": step}))

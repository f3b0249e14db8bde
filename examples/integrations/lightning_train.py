"""A stock Lightning script on a tiny MLP built from code (no model hub), made spot-ready with
the three lines marked ``# multispot``. It shuffles and uses dropout: the integration resumes
the data order and the random generators as well as the model and optimizer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from multispot.integrations.lightning import MultispotCheckpoint, last_checkpoint  # multispot

torch.set_num_threads(1)


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(64, 2)
        )

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


L.seed_everything(0)
x = torch.randn(512, 16, generator=torch.Generator().manual_seed(1))
data = DataLoader(TensorDataset(x, (x.sum(1) > 0).long()), batch_size=16, shuffle=True)
model = Classifier()
trainer = L.Trainer(
    max_epochs=12,
    accelerator="cpu",
    deterministic=True,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    callbacks=[MultispotCheckpoint()],  # multispot
)
trainer.fit(model, data, ckpt_path=last_checkpoint())  # multispot

digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
out = Path(os.environ.get("MULTISPOT_OUTPUT_URI", "file://outputs").removeprefix("file://"))
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(
    json.dumps({"params_sha256": digest.hexdigest(), "steps": trainer.global_step})
)

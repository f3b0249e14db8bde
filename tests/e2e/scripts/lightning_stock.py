"""A stock Lightning script, not adopted: a DataModule with a shuffled training set and a
validation set, dropout, a per-epoch learning-rate schedule, Lightning's default logger,
checkpointing and progress bar. tests/e2e/test_integrations.py adopts it exactly as
docs/adopt.md shows and runs it under verify-resume."""

import hashlib
import json
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class Data(L.LightningDataModule):
    def setup(self, stage: str) -> None:
        x = torch.randn(480, 8, generator=torch.Generator().manual_seed(1))
        y = (x[:, 0] * x[:, 1] > 0).long()
        self.train, self.val = TensorDataset(x[:320], y[:320]), TensorDataset(x[320:], y[320:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=80)


class Model(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 2)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)]


L.seed_everything(7)
torch.set_num_threads(1)
model = Model()
trainer = L.Trainer(max_epochs=20, accelerator="cpu", log_every_n_steps=5)
trainer.fit(model, Data())

digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
out = Path(os.environ.get("MULTISPOT_OUTPUT_URI", "file://outputs").removeprefix("file://"))
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(
    json.dumps({"params_sha256": digest.hexdigest(), "step": trainer.global_step})
)

"""A stock Hugging Face Trainer script on a tiny BERT built from a config (no model hub), made
spot-ready with the three lines marked ``# multispot``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from multispot.integrations.transformers import MultispotCallback, last_checkpoint  # multispot

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


class Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int = 256) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 64, (n, 16), generator=g)
        self.y = (self.x[:, 0] % 2).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.y[i]}


torch.manual_seed(0)
config = BertConfig(
    vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
)
model = BertForSequenceClassification(config)
args = TrainingArguments(
    output_dir="trainer-out",
    num_train_epochs=3,
    per_device_train_batch_size=8,
    learning_rate=1e-3,
    save_strategy="no",  # multispot decides when to save (checkpoint.interval / every_steps)
    logging_strategy="no",
    report_to=[],
    seed=0,
    use_cpu=True,
)
trainer = Trainer(model=model, args=args, train_dataset=Data(), callbacks=[MultispotCallback()])  # multispot
trainer.train(resume_from_checkpoint=last_checkpoint())  # multispot

digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
out = Path(os.environ.get("MULTISPOT_OUTPUT_URI", "file://outputs").removeprefix("file://"))
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(
    json.dumps({"params_sha256": digest.hexdigest(), "steps": trainer.state.global_step})
)

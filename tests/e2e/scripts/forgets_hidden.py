"""A tiny GRU language model trained like pytorch/examples' word_language_model: no optimizer
object (plain SGD by hand) and a hidden state carried from batch to batch within an epoch.
The checkpoint holds the model, RNG and position, but not the hidden state: a resume in the
middle of an epoch restarts it from zeros, so the interrupted run ends differently."""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import torch

from multispot.runtime import Checkpointer
from multispot.runtime.pytorch import TrainingState

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--carry-hidden", choices=["yes", "no"], default="no")
args = parser.parse_args()

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
vocab, batches, bptt, width = 16, 100, 8, 4
data = torch.randint(0, vocab, (batches * bptt + 1, width), generator=torch.Generator().manual_seed(1))
embed, rnn, head = torch.nn.Embedding(vocab, 16), torch.nn.GRU(16, 16), torch.nn.Linear(16, vocab)
model = torch.nn.ModuleList([embed, rnn, head])
state = TrainingState(model)

ckpt = Checkpointer()
state.restore(ckpt)
hidden = torch.zeros(1, width, 16)
if args.carry_hidden == "yes" and "hidden" in state.extra:
    hidden = state.extra["hidden"]
while state.epoch < args.epochs:
    if state.position == 0:
        hidden = torch.zeros(1, width, 16)  # the hidden state starts over each epoch
    for batch in range(state.position, batches):
        chunk = data[batch * bptt : (batch + 1) * bptt + 1]
        hidden = hidden.detach()
        output, hidden = rnn(embed(chunk[:-1]), hidden)
        loss = torch.nn.functional.cross_entropy(head(output).reshape(-1, vocab), chunk[1:].reshape(-1))
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-0.1)
        state.step, state.position = state.step + 1, batch + 1
        time.sleep(0.01)  # a few seconds of work, so the preemptions land inside it
        if args.carry_hidden == "yes":
            state.extra["hidden"] = hidden.detach().clone()
        if ckpt.should_save(state.step):
            state.save(ckpt)
        if ckpt.preempted:
            ckpt.exit_preempted()
    state.epoch, state.position = state.epoch + 1, 0
state.save(ckpt)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
out = ckpt.env.output_dir
assert out is not None
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"params_sha256": digest, "steps": state.step}))

"""Reference fixtures for the trainer (test/trainer/torch-fixtures.test.ts), made with PyTorch + transformers.

For a tiny Llama (untied) and a tiny Qwen2 (q/k/v bias, tied embeddings), seeded random weights and a
small right-padded batch of preference pairs (chosen rows first, then rejected rows), saves:
  model/               save_pretrained (config.json + model.safetensors) — the weights before the step
  grads.safetensors    d(DPO loss)/d(param) for every parameter tensor (autograd, float32)
  after.safetensors    the parameters after clip_grad_norm_(1.0) + one torch.optim.AdamW step
  expected.json        the batch, reference log-probs, beta, lr, weight decay, loss, sequence log-probs,
                       rewards, grad norm
Run by hand:  /work/pyenv/bin/python tools/train_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

OUT = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "train")
BETA, LR, WD, MAX_NORM = 0.1, 1e-3, 0.01, 1.0

COMMON = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=4, max_position_embeddings=32, rms_norm_eps=1e-5,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)

MODELS = {
    "tiny-llama": lambda: LlamaForCausalLM(LlamaConfig(**COMMON, tie_word_embeddings=False)),
    "tiny-qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**COMMON, tie_word_embeddings=True)),
}

# (prompt, chosen, rejected) token ids; right padding to T.
PAIRS = [
    ([1, 5, 9, 12], [20, 21, 2], [30, 2]),
    ([1, 7], [22, 23, 24, 25, 2], [31, 32, 2]),
    ([1, 8, 8, 3, 4], [26, 2], [33, 34, 35, 2]),
]


def batch():
    rows, resp = [], []
    for side in (1, 2):
        for p in PAIRS:
            rows.append(p[0] + p[side])
            resp.append((len(p[0]), len(p[side])))
    T = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    rmask = torch.zeros(len(rows), T - 1)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        start, n = resp[i]
        rmask[i, start - 1 : start - 1 + n] = 1  # position t predicts token t+1
    return ids, mask, rmask


def sequence_logps(model, ids, mask, rmask):
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (lp * rmask).sum(-1)


def main():
    ids, mask, rmask = batch()
    P = len(PAIRS)
    ref = torch.tensor([-12.5, -20.0, -11.0, -9.5, -17.0, -16.0])
    for name, make in MODELS.items():
        torch.manual_seed(1234)
        model = make().float()
        with torch.no_grad():  # larger than the 0.02 init so the loss and gradients are far from trivial
            for p in model.parameters():
                p.normal_(0, 0.3) if p.dim() > 1 else p.uniform_(0.5, 1.5)
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(os.path.join(out, "model"), safe_serialization=True)
        for f in os.listdir(os.path.join(out, "model")):
            if f not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(out, "model", f))
        logps = sequence_logps(model, ids, mask, rmask)
        rho = logps - ref
        delta = rho[:P] - rho[P:]
        loss = -F.logsigmoid(BETA * delta).mean()
        loss.backward()
        params = dict(model.named_parameters())
        grads = {n: p.grad.detach().clone().contiguous() for n, p in params.items()}
        save_file(grads, os.path.join(out, "grads.safetensors"))
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, betas=(0.9, 0.999), eps=1e-8)
        opt.step()
        save_file({n: p.detach().clone().contiguous() for n, p in params.items()}, os.path.join(out, "after.safetensors"))
        expected = {
            "beta": BETA, "lr": LR, "weight_decay": WD, "max_grad_norm": MAX_NORM,
            "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "response_mask": rmask.tolist(),
            "ref_logps": ref.tolist(), "policy_logps": logps.tolist(), "loss": loss.item(), "grad_norm": norm.item(),
            "chosen_rewards": (BETA * rho[:P]).tolist(), "rejected_rewards": (BETA * rho[P:]).tolist(),
            "parameter_names": sorted(params.keys()),
        }
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
        print(name, "loss", loss.item(), "grad norm", norm.item(), "tensors", len(grads))


if __name__ == "__main__":
    main()

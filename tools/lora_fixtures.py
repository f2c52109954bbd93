"""Reference fixtures for LoRA training (test/trainer/lora.test.ts), made with PyTorch + peft.

For the tiny models of tools/train_fixtures.py (tiny-llama untied; tiny-qwen2 with q/k/v bias and tied
embeddings) wrapped by peft (r=4, lora_alpha=8, all seven Linear kinds, dropout 0), with seeded
non-zero A and B so that every gradient is far from trivial, and the same preference batch:
  adapter/             peft's save_pretrained (adapter_config.json + adapter_model.safetensors)
  grads.safetensors    d(DPO loss)/d(lora tensor), under PEFT's saved names (autograd, float32)
  after.safetensors    the adapter after clip_grad_norm_(1.0) + one torch.optim.AdamW step
  expected.json        reference log-probs (the base: peft's disable_adapter()), policy log-probs,
                       loss, grad norm, and the count of base parameters that got a gradient (0)
Run by hand:  /work/.venv/bin/python tools/lora_fixtures.py
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(__file__))
from train_fixtures import PAIRS, batch, sequence_logps  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "..", "test", "fixtures", "train")
OUT = os.path.join(HERE, "..", "test", "fixtures", "lora")
BETA, LR, WD, MAX_NORM, R, ALPHA = 0.1, 1e-2, 0.01, 1.0, 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def saved_name(name):
    return name.replace(".default", "")


def main():
    ids, mask, rmask = batch()
    P = len(PAIRS)
    for name in ("tiny-llama", "tiny-qwen2"):
        base_dir = os.path.join(TRAIN, name, "model")
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
        cfg = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(base, cfg)
        torch.manual_seed(4321)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.normal_(0, 0.3)
        # base_model_name_or_path relative to the adapter directory: how this project resolves it
        model.peft_config["default"].base_model_name_or_path = os.path.relpath(base_dir, os.path.join(out, "adapter"))
        model.save_pretrained(os.path.join(out, "adapter"))
        for f in os.listdir(os.path.join(out, "adapter")):
            if f not in ("adapter_config.json", "adapter_model.safetensors"):
                os.remove(os.path.join(out, "adapter", f))

        with torch.no_grad(), model.disable_adapter():
            ref = sequence_logps(model, ids, mask, rmask)
        # a reference other than the policy itself: the base, adapter off (what a LoRA trainer uses)
        logps = sequence_logps(model, ids, mask, rmask)
        rho = logps - ref
        delta = rho[:P] - rho[P:]
        loss = -F.logsigmoid(BETA * delta).mean()
        loss.backward()
        lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
        base_grads = sum(1 for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None)
        save_file({saved_name(n): p.grad.detach().clone().contiguous() for n, p in lora.items()}, os.path.join(out, "grads.safetensors"))
        norm = torch.nn.utils.clip_grad_norm_(list(lora.values()), MAX_NORM)
        opt = torch.optim.AdamW(list(lora.values()), lr=LR, weight_decay=WD, betas=(0.9, 0.999), eps=1e-8)
        opt.step()
        save_file({saved_name(n): p.detach().clone().contiguous() for n, p in lora.items()}, os.path.join(out, "after.safetensors"))
        expected = {
            "beta": BETA, "lr": LR, "weight_decay": WD, "max_grad_norm": MAX_NORM, "r": R, "alpha": ALPHA,
            "input_ids": ids.tolist(), "response_mask": rmask.tolist(),
            "ref_logps": ref.tolist(), "policy_logps": logps.tolist(), "loss": loss.item(), "grad_norm": norm.item(),
            "base_parameters_with_grad": base_grads, "lora_tensors": sorted(saved_name(n) for n in lora),
        }
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
        print(name, "loss", loss.item(), "grad norm", norm.item(), "lora tensors", len(lora), "base grads", base_grads)


if __name__ == "__main__":
    main()

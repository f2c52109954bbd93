"""PyTorch peer of bench/train.ts: one DPO step (autograd forward+backward on chosen and rejected,
-logsigmoid(beta * margin) mean, clip_grad_norm_(1.0), torch.optim.AdamW) on the same weights and batch.
Prints RESULT {"stepSeconds", "steps", "peakRssMb", "loss", "matmulPeakGflops"} (median step time after one
warm-up step; torch's 2048² fp32 MatMul peak measured after the steps).
  python tools/bench_train_torch.py --model DIR --batch FILE.json [--threads N --steps S --micro-batch P]
With --micro-batch P the step accumulates gradients over micro-batches of P pairs (2P rows), as the
trainer does; 0 = the whole batch at once. With --lora r=16,alpha=32,targets=q,k,v,o,gate,up,down the
model is wrapped by peft (LoraConfig, dropout 0) and only the adapter is trained (AdamW and clipping
over the adapter's parameters), as `dice train --lora` does.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM


def with_lora(model, spec):
    """peft LoRA from the --lora flag's syntax (r=…,alpha=…,targets=q,k,…)."""
    from peft import LoraConfig, get_peft_model

    fields, key = {}, None
    for part in spec.split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            fields[key] = [value] if key == "targets" else float(value)
        else:
            fields[key].append(part)
    module = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
    cfg = LoraConfig(r=int(fields["r"]), lora_alpha=fields["alpha"], lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     target_modules=[module[t] for t in fields["targets"]])
    return get_peft_model(model, cfg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--micro-batch", type=int, default=0)
    ap.add_argument("--lora", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    if args.lora:
        model = with_lora(model, args.lora)
    model.train()
    b = json.load(open(args.batch))
    P = len(b["promptTokenIds"])
    rows = [p + c for p, c in zip(b["promptTokenIds"], b["chosen"])] + [p + r for p, r in zip(b["promptTokenIds"], b["rejected"])]
    plen = [len(p) for p in b["promptTokenIds"]] * 2
    T = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    rmask = torch.zeros(len(rows), T - 1)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        rmask[i, plen[i] - 1 : len(r) - 1] = 1
    ref = torch.tensor(b["refChosen"] + b["refRejected"])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)

    micro = args.micro_batch or P

    def step():
        opt.zero_grad(set_to_none=True)
        total_loss = 0.0
        for s in range(0, P, micro):
            rows = list(range(s, min(s + micro, P)))
            rows = rows + [P + r for r in rows]
            logits = model(input_ids=ids[rows], attention_mask=mask[rows]).logits[:, :-1]
            lp = torch.log_softmax(logits, -1).gather(-1, ids[rows, 1:].unsqueeze(-1)).squeeze(-1)
            seq = (lp * rmask[rows]).sum(-1)
            rho = seq - ref[rows]
            n = len(rows) // 2
            # sum over this micro-batch's pairs / all pairs: the accumulated gradient is the batch mean's
            loss = -F.logsigmoid(args.beta * (rho[:n] - rho[n:])).sum() / P
            loss.backward()
            total_loss += loss.item()
            del logits, lp, seq, rho, loss
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return total_loss

    step()
    times, loss = [], 0.0
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"stepSeconds": statistics.median(times), "steps": times, "peakRssMb": rss, "loss": loss, "matmulPeakGflops": matmul_peak_gflops()}))


def matmul_peak_gflops(n=2048):
    """torch's own fp32 2048² MatMul, best of 3 after a warm-up (as bench/matmul-peak.ts times onnxruntime's)."""
    a = torch.arange(n * n, dtype=torch.float32).reshape(n, n).remainder(1000) / 1000
    a @ a
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


if __name__ == "__main__":
    main()

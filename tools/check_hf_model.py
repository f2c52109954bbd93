"""Checks that a model directory written by `dice model init` / saveModel loads in transformers (run by hand).

    /work/pyenv/bin/python tools/check_hf_model.py DIR [DIR...]

For each DIR: AutoModelForCausalLM.from_pretrained with no missing/unexpected/mismatched tensors, the
loaded parameters equal to the safetensors file, tied embeddings tied as the config says, AutoTokenizer
with its chat template, a forward pass with finite logits of the right shape, and a short greedy
generate(). Prints one line per directory; exits 1 on the first failure.
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def check(path: str) -> str:
    d = pathlib.Path(path)
    config = json.loads((d / "config.json").read_text())
    model, info = AutoModelForCausalLM.from_pretrained(str(d), output_loading_info=True, dtype=torch.float32)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    assert not problems, f"loading info: {problems}"
    state = model.state_dict()
    stored = load_file(str(d / "model.safetensors"))
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor.float()), f"{name} differs after loading"
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tied == config["tie_word_embeddings"], f"lm_head tied={tied}, config says {config['tie_word_embeddings']}"
    if config["model_type"] == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None

    tok = AutoTokenizer.from_pretrained(str(d))
    messages = [{"role": "user", "content": "What is 2 + 2? Answer briefly."}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], config["vocab_size"]), f"logits shape {tuple(logits.shape)}"
    assert torch.isfinite(logits).all(), "non-finite logits"
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id or 0)
    new = out[0, ids.shape[1]:].tolist()
    n_params = sum(p.numel() for p in model.parameters())
    return (f"{d}: OK {type(model).__name__}, {n_params:,} params, {len(stored)} tensors equal, tied={tied}; "
            f"prompt {ids.shape[1]} tokens, logits {tuple(logits.shape)} std {logits.std().item():.4f}; "
            f"greedy {len(new)} new tokens {tok.decode(new)!r}")


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        try:
            print(check(path), flush=True)
        except Exception as err:  # report which directory failed and why
            print(f"{path}: FAILED: {type(err).__name__}: {err}", flush=True)
            sys.exit(1)


if __name__ == "__main__":
    main()

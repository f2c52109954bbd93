"""Reference fixtures for the Llama-family graphs (test/model/llama-graph.test.ts).

Builds tiny random LlamaForCausalLM / Qwen2ForCausalLM models with transformers, saves each as a
Hugging Face model directory (config.json + model.safetensors) under test/fixtures/llama/<name>/,
and records transformers' logits and per-token log-probs for padded batches in expected.json.

Covered conventions: GQA (kv heads < heads), untied and tied lm_head, Llama-3 rope scaling, Qwen2
q/k/v bias, right and left padding. Parameters are drawn with a larger spread than HF's init (and
norm weights away from 1) so that a wrong convention shows up in the logits.

Positions follow generate(): position = cumsum(attention_mask) - 1 (0 on padding).

Run: /work/pyenv/bin/python tools/llama_fixtures.py
"""

import json
import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'llama')

COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

MODELS = {
    'llama-gqa-untied': (LlamaForCausalLM, LlamaConfig(**COMMON, rope_theta=10000.0, tie_word_embeddings=False)),
    'llama3-scaled-tied': (
        LlamaForCausalLM,
        LlamaConfig(
            **COMMON,
            rope_theta=500000.0,
            tie_word_embeddings=True,
            rope_scaling=dict(rope_type='llama3', factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                              original_max_position_embeddings=16),
        ),
    ),
    'qwen2-bias-tied': (Qwen2ForCausalLM, Qwen2Config(**COMMON, rope_theta=1000000.0, tie_word_embeddings=True)),
}


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('norm.weight'):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def batches(gen, vocab):
    """Right- and left-padded batches with rows of different lengths."""
    lengths = [9, 5, 7]
    T = max(lengths)
    out = []
    for side in ('right', 'left'):
        ids = torch.zeros(len(lengths), T, dtype=torch.long)
        mask = torch.zeros(len(lengths), T, dtype=torch.long)
        for r, n in enumerate(lengths):
            toks = torch.randint(3, vocab, (n,), generator=gen)
            sl = slice(0, n) if side == 'right' else slice(T - n, T)
            ids[r, sl] = toks
            mask[r, sl] = 1
        out.append((side, ids, mask))
    return out


def main():
    for i, (name, (cls, cfg)) in enumerate(MODELS.items()):
        gen = torch.Generator().manual_seed(1234 + i)
        cfg._attn_implementation = 'eager'
        model = cls(cfg).eval()
        randomize(model, gen)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        cases = []
        for side, ids, mask in batches(gen, cfg.vocab_size):
            pos = ((mask.cumsum(-1) - 1) * mask).long()
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
            lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
            cases.append(dict(
                padding=side,
                input_ids=ids.tolist(),
                attention_mask=mask.tolist(),
                logits=[[[round(x, 7) for x in row] for row in seq] for seq in logits.tolist()],
                log_probs=[[round(x, 7) for x in seq] for seq in lp.tolist()],
            ))
        with open(os.path.join(d, 'expected.json'), 'w') as f:
            json.dump(dict(model=name, transformers=__import__('transformers').__version__, cases=cases), f)
        print(name, 'written')


if __name__ == '__main__':
    main()

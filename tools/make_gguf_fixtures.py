#!/usr/bin/env python3
"""Fixture GGUFs for `dice model import`, made with the `gguf` package, and what transformers' own GGUF
loader makes of them (the independent reference). Never used at run time.

  python tools/make_gguf_fixtures.py            # writes test/fixtures/gguf/

Two tiny one-layer decoders, a Llama (tied embedding, Llama-3 pre-tokenizer, BOS added) and a Qwen2
(q/k/v biases, untied lm_head, Qwen2 pre-tokenizer, no BOS), with hidden size 256 so every supported
type can appear: F32, F16, BF16, Q8_0, Q4_0, Q4_1 (quantised from random weights by gguf-py) and Q4_K,
Q5_K, Q6_K (random blocks with small scales: gguf-py cannot quantise those, and random bytes exercise
every bit of the layout). Both share a byte-level BPE vocabulary trained here on a small corpus, with
control tokens and user-defined <think>/</think>. reference.json holds, per file, the sha256 of each
float32 tensor transformers loads (plus its first values, for diagnosis), its logits on a fixed id
sequence, its tokenizer's ids on hard strings and its chat-template renderings. Two more files must be
refused: another architecture, and an unsupported quant type (Q5_0)."""
import hashlib, json, os, sys

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'gguf')
HIDDEN, HEADS, FFN = 256, 4, 256

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's a test; they'll see, we're sure, you've got it.",
    "def add(x, y):\n    return x + y  # numbers 0123456789 and 3.14159\n\tindented\r\n",
    "Hello world! Hello again, world. HELLO WORLD. MiXeD CaSe words and more words.",
    "unicode: café naïve résumé 日本語 中文 한국어 emoji 🤖🎉 and accents àéîõü",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nParis.",
] * 20

HARD_STRINGS = [
    "Hello world",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\r\n\n\nend",
    "numbers 1234567 and 3.14 and 1,000,000",
    "unicode: café naïve 日本語 🤖 ñ",
    "contractions: I'm, you're, they'll, it's, WE'VE",
    "<|im_start|>user\nhi<|im_end|>\n",
    "<think>step by step</think>answer",
    "code: def f(x): return x**2  # comment",
    "\u00a0non-breaking\u2003spaces",
    "",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
]

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] | trim }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
USER_DEFINED = ['<think>', '</think>']


def vocabulary():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else ' '.join(m) for m in json.loads(tok.to_str())['model']['merges']]
    types = [3 if t in SPECIALS else 1 for t in tokens]
    tokens += USER_DEFINED
    types += [4] * len(USER_DEFINED)
    return tokens, types, merges


def raw_kquant(rng, qtype, rows, cols):
    """Random K-quant blocks whose float16 scales are small and finite."""
    block_bytes = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}[qtype]
    nblocks = rows * cols // 256
    raw = rng.integers(0, 256, size=(nblocks, block_bytes), dtype=np.uint8)
    def f16(lo, hi):
        return rng.uniform(lo, hi, size=nblocks).astype(np.float16).view(np.uint8).reshape(nblocks, 2)
    if qtype == Q.Q6_K:
        raw[:, 208:210] = f16(2e-5, 1e-4)
    else:
        raw[:, 0:2] = f16(2e-4, 1e-3)
        raw[:, 2:4] = f16(2e-4, 1e-3)
    return raw.reshape(rows, cols // 256 * block_bytes)


def add(writer, rng, name, shape, qtype, values=None):
    if qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        writer.add_tensor(name, raw_kquant(rng, qtype, *shape), raw_dtype=qtype)
        return
    x = values if values is not None else (rng.standard_normal(shape) * 0.05).astype(np.float32)
    if qtype == Q.F32:
        writer.add_tensor(name, x.astype(np.float32))
    elif qtype == Q.F16:
        writer.add_tensor(name, x.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)


def write_model(path, arch, rng, tokens, types, merges):
    w = gguf.GGUFWriter(path, arch)
    llama = arch == 'llama'
    kv = 2 if llama else 1
    head_dim = HIDDEN // HEADS
    w.add_name(f'tiny-{arch}-fixture')
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5 if llama else 1e-6)
    w.add_rope_freq_base(10000.0 if llama else 1000000.0)
    if llama:
        w.add_rope_dimension_count(head_dim)
        w.add_vocab_size(len(tokens))
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre('llama-bpe' if llama else 'qwen2')
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(0 if llama else 2)
    w.add_add_bos_token(llama)
    w.add_chat_template(LLAMA_TEMPLATE if llama else QWEN2_TEMPLATE)
    V = len(tokens)
    norm = lambda: (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
    if llama:
        plan = [
            ('token_embd.weight', (V, HIDDEN), Q.Q8_0), ('output_norm.weight', (HIDDEN,), Q.F32),
            ('blk.0.attn_norm.weight', (HIDDEN,), Q.F16), ('blk.0.ffn_norm.weight', (HIDDEN,), Q.BF16),
            ('blk.0.attn_q.weight', (HIDDEN, HIDDEN), Q.Q4_K), ('blk.0.attn_k.weight', (kv * head_dim, HIDDEN), Q.Q5_K),
            ('blk.0.attn_v.weight', (kv * head_dim, HIDDEN), Q.Q6_K), ('blk.0.attn_output.weight', (HIDDEN, HIDDEN), Q.Q4_0),
            ('blk.0.ffn_gate.weight', (FFN, HIDDEN), Q.Q4_1), ('blk.0.ffn_up.weight', (FFN, HIDDEN), Q.Q8_0),
            ('blk.0.ffn_down.weight', (HIDDEN, FFN), Q.Q4_K),
        ]
    else:
        plan = [
            ('token_embd.weight', (V, HIDDEN), Q.Q4_0), ('output.weight', (V, HIDDEN), Q.Q8_0), ('output_norm.weight', (HIDDEN,), Q.F32),
            ('blk.0.attn_norm.weight', (HIDDEN,), Q.BF16), ('blk.0.ffn_norm.weight', (HIDDEN,), Q.F16),
            ('blk.0.attn_q.weight', (HIDDEN, HIDDEN), Q.Q6_K), ('blk.0.attn_k.weight', (kv * head_dim, HIDDEN), Q.Q4_K),
            ('blk.0.attn_v.weight', (kv * head_dim, HIDDEN), Q.Q5_K), ('blk.0.attn_output.weight', (HIDDEN, HIDDEN), Q.Q8_0),
            ('blk.0.attn_q.bias', (HIDDEN,), Q.F32), ('blk.0.attn_k.bias', (kv * head_dim,), Q.F32), ('blk.0.attn_v.bias', (kv * head_dim,), Q.F32),
            ('blk.0.ffn_gate.weight', (FFN, HIDDEN), Q.Q4_1), ('blk.0.ffn_up.weight', (FFN, HIDDEN), Q.Q5_K),
            ('blk.0.ffn_down.weight', (HIDDEN, FFN), Q.Q4_0),
        ]
    for name, shape, qtype in plan:
        add(w, rng, name, shape, qtype, norm() if name.endswith('norm.weight') else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {name: qtype.name for name, _, qtype in plan}


def reference(path, types):
    folder, file = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    tensors = {}
    for name, t in model.state_dict().items():
        if name == 'lm_head.weight' and model.config.tie_word_embeddings:
            continue
        a = t.detach().contiguous().numpy().astype('<f4')
        tensors[name] = {'shape': list(a.shape), 'sha256': hashlib.sha256(a.tobytes()).hexdigest(), 'first': [float(v) for v in a.reshape(-1)[:8]]}
    ids = [1, 40, 7, 100, 250, 5, 33, 2]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    return {
        'ggufTypes': types,
        'tensors': tensors,
        'logits': {'ids': ids, 'values': [[float(v) for v in row] for row in logits]},
        'tokenizer': [{'text': s, 'ids': tok(s)['input_ids']} for s in HARD_STRINGS],
        'chat': [{'messages': m, 'addGenerationPrompt': g, 'text': tok.apply_chat_template(m, tokenize=False, add_generation_prompt=g)} for m in CHATS for g in (False, True)],
        'config': {k: v for k, v in model.config.to_dict().items() if k in ('vocab_size', 'hidden_size', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'rms_norm_eps', 'tie_word_embeddings', 'bos_token_id', 'eos_token_id', 'pad_token_id', 'max_position_embeddings', 'intermediate_size')},
    }


def refused(path, arch, qtype=None):
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    if qtype is not None:
        w.add_tensor('blk.0.attn_q.weight', gguf.quants.quantize(np.zeros((1, 32), np.float32), qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(14)
    tokens, types, merges = vocabulary()
    ref = {}
    for arch in ('llama', 'qwen2'):
        path = os.path.join(OUT, f'{arch}.gguf')
        plan = write_model(path, arch, rng, tokens, types, merges)
        ref[arch] = reference(path, plan)
    refused(os.path.join(OUT, 'unsupported-arch.gguf'), 'mamba')
    refused(os.path.join(OUT, 'unknown-quant.gguf'), 'llama', Q.Q5_0)
    with open(os.path.join(OUT, 'reference.json'), 'w') as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write('\n')
    print(json.dumps({a: {'tensors': len(r['tensors']), 'types': sorted(set(r['ggufTypes'].values()))} for a, r in ref.items()}))


if __name__ == '__main__':
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    main()

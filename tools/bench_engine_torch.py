"""Peer timing for bench/engine.ts: the same sampling and scoring work with PyTorch/transformers.

Sampling: `generate()` on `batch` prompts of `prompt_len` random token ids, do_sample with the given
temperature/top-p/top-k, exactly `new_tokens` new tokens (EOS ignored, as in bench/engine.ts), KV cache on.
Scoring: one teacher-forced forward over `batch` × `score_len` tokens plus log_softmax + gather of the
next-token log-probs (what our scorer computes). Best of `repeats` wall-clock times after a warm-up.

Prints one JSON object. Run by bench/engine.ts; by hand:
  /work/pyenv/bin/python tools/bench_engine_torch.py --model .dice/bench/smollm2-135m --threads 2
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def best_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--sample-batches', default='1,4,16')
    ap.add_argument('--prompt-len', type=int, default=32)
    ap.add_argument('--new-tokens', type=int, default=128)
    ap.add_argument('--temperature', type=float, default=0.7)
    ap.add_argument('--top-p', type=float, default=0.9)
    ap.add_argument('--top-k', type=int, default=0)
    ap.add_argument('--score-batch', type=int, default=16)
    ap.add_argument('--score-len', type=int, default=256)
    ap.add_argument('--repeats', type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    out = dict(torch=torch.__version__, threads=args.threads, sampling=[], scoring=None)

    for b in [int(x) for x in args.sample_batches.split(',') if x]:
        ids = torch.randint(3, min(vocab, 1000), (b, args.prompt_len), generator=gen)
        mask = torch.ones_like(ids)

        def run():
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=args.temperature,
                               top_p=args.top_p, top_k=args.top_k, max_new_tokens=args.new_tokens,
                               min_new_tokens=args.new_tokens, pad_token_id=0)

        t = best_time(run, args.repeats)
        out['sampling'].append(dict(batch=b, seconds=t, tokens_per_s=b * args.new_tokens / t))

    ids = torch.randint(3, min(vocab, 1000), (args.score_batch, args.score_len), generator=gen)

    def score():
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).sum()

    t = best_time(score, args.repeats)
    out['scoring'] = dict(batch=args.score_batch, length=args.score_len, seconds=t, tokens_per_s=args.score_batch * args.score_len / t)
    print(json.dumps(out))


if __name__ == '__main__':
    main()

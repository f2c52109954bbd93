"""Writes safetensors fixtures with the Python reference libraries (run by hand; output is committed).

    /work/pyenv/bin/python tools/make_safetensors_fixtures.py

test/fixtures/safetensors/
  python-dtypes.safetensors   one tensor per dtype we support, written by `safetensors.torch.save_file`
  python-dtypes.json          the same values as JSON (ints as strings for int64), and the float32 source
                              values of the f16/bf16 tensors so our float conversions can be checked
  sharded/                    a tiny LlamaForCausalLM saved by transformers with a small max_shard_size
                              (config.json, model-0000k-of-0000n.safetensors, model.safetensors.index.json)
"""
import json
import pathlib

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = pathlib.Path(__file__).resolve().parent.parent / "test" / "fixtures" / "safetensors"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    src = torch.randn(3, 5, generator=g) * 3
    # Values that exercise rounding ties, subnormals, overflow and specials in f16/bf16.
    special = torch.tensor([0.0, -0.0, 1.0, 65504.0, 65520.0, 1e-7, 6e-8, 3.0e-5, 1.00048828125, 1.0009765625,
                            float("inf"), float("-inf"), 1.0 + 2**-8, 1.0 + 3 * 2**-9, 3.4e38], dtype=torch.float32)
    tensors = {
        "f32": src,
        "f64": src.double().reshape(5, 3),
        "f16": src.half(),
        "bf16": src.bfloat16(),
        "special_f16": special.half(),
        "special_bf16": special.bfloat16(),
        "i64": torch.tensor([[-(2**40), 7], [0, 2**62]], dtype=torch.int64),
        "i32": torch.tensor([-5, 0, 2**31 - 1], dtype=torch.int32),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "mask": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    # One metadata key: the Rust writer orders metadata by a HashMap, so several keys would not be stable.
    save_file(tensors, str(OUT / "python-dtypes.safetensors"), metadata={"format": "pt"})

    def as_json(t: torch.Tensor):
        if t.dtype == torch.int64:
            return [str(v) for v in t.flatten().tolist()]
        if t.dtype == torch.bool:
            return [int(v) for v in t.flatten().tolist()]
        if t.dtype in (torch.float16, torch.bfloat16):
            return t.view(torch.int16).flatten().to(torch.int32).bitwise_and(0xFFFF).tolist()  # raw bits
        return [v if v == v and abs(v) != float("inf") else str(v) for v in t.flatten().tolist()]

    expected = {name: {"shape": list(t.shape), "values": as_json(t)} for name, t in tensors.items()}
    expected["_f32_source"] = {"shape": list(src.shape), "values": src.flatten().tolist()}
    expected["_special_source"] = {"shape": list(special.shape), "values": [str(v) if abs(v) == float("inf") else v for v in special.tolist()]}
    (OUT / "python-dtypes.json").write_text(json.dumps(expected, indent=1) + "\n")

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(OUT / "sharded"), max_shard_size="8KB")
    print("wrote", sorted(p.name for p in (OUT / "sharded").iterdir()))


if __name__ == "__main__":
    main()

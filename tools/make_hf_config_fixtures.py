"""What transformers makes of a set of config.json files (run by hand; output is committed).

    /work/pyenv/bin/python tools/make_hf_config_fixtures.py

Writes test/fixtures/hf-config/cases.json: for each case the config.json as written and the values
transformers' AutoConfig.from_pretrained resolves (defaults applied), which test/model/hf-config.test.ts
compares with parseHfConfig. The real configs are SmolLM2-135M, Qwen2.5-0.5B and Llama-3.2-1B(-Instruct)
as published on the Hugging Face Hub (transformers 4 format), plus a transformers 5 file and minimal ones.
"""
import json
import pathlib
import tempfile

import transformers
from transformers import AutoConfig

OUT = pathlib.Path(__file__).resolve().parent.parent / "test" / "fixtures" / "hf-config"

SMOLLM2_135M = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 0,
    "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.041666666666666664,
    "intermediate_size": 1536, "is_llama_config": True, "max_position_embeddings": 8192, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": False, "rope_scaling": None,
    "rope_theta": 100000, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
    "use_cache": True, "vocab_size": 49152,
}
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
    "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
    "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1", "use_cache": True, "use_mrope": False, "use_sliding_window": False,
    "vocab_size": 151936,
}
LLAMA32_1B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
}
# Old-style "type" key, no original_max_position_embeddings (defaults to max_position_embeddings), eos list.
LLAMA32_INSTRUCT_VARIANT = {
    **LLAMA32_1B,
    "eos_token_id": [128001, 128008, 128009],
    "max_position_embeddings": 16384,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "type": "llama3"},
}
SHAPE = {"vocab_size": 100, "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 6}

CASES = {
    "smollm2-135m": SMOLLM2_135M,
    "qwen2.5-0.5b": QWEN25_05B,
    "llama3.2-1b": LLAMA32_1B,
    "llama3.2-instruct-variant": LLAMA32_INSTRUCT_VARIANT,
    "llama-minimal": {"model_type": "llama", **SHAPE},
    "qwen2-minimal": {"model_type": "qwen2", **SHAPE},
    "qwen2-head-dim-and-kv": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **SHAPE,
                              "head_dim": 16, "num_key_value_heads": 3, "eos_token_id": [5, 6], "bos_token_id": None},
    "transformers5-written": json.loads((OUT.parent / "safetensors" / "sharded" / "config.json").read_text()),
}


def resolved(cfg) -> dict:
    rope = dict(cfg.rope_parameters)
    return {
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        # as the modeling code computes it
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": rope,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": getattr(cfg, "attention_bias", True),
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    out = {"transformers_version": transformers.__version__, "cases": {}}
    for name, config in CASES.items():
        with tempfile.TemporaryDirectory() as d:
            pathlib.Path(d, "config.json").write_text(json.dumps(config))
            cfg = AutoConfig.from_pretrained(d)
        out["cases"][name] = {"config": config, "transformers": resolved(cfg)}
    (OUT / "cases.json").write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", len(CASES), "cases")


if __name__ == "__main__":
    main()

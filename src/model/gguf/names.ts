/** llama.cpp tensor names ↔ Hugging Face names for Llama and Qwen2 decoders. */
const TOP: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};

const BLOCK: Record<string, string> = {
  'attn_norm.weight': 'input_layernorm.weight',
  'attn_q.weight': 'self_attn.q_proj.weight',
  'attn_k.weight': 'self_attn.k_proj.weight',
  'attn_v.weight': 'self_attn.v_proj.weight',
  'attn_q.bias': 'self_attn.q_proj.bias',
  'attn_k.bias': 'self_attn.k_proj.bias',
  'attn_v.bias': 'self_attn.v_proj.bias',
  'attn_output.weight': 'self_attn.o_proj.weight',
  'ffn_norm.weight': 'post_attention_layernorm.weight',
  'ffn_gate.weight': 'mlp.gate_proj.weight',
  'ffn_up.weight': 'mlp.up_proj.weight',
  'ffn_down.weight': 'mlp.down_proj.weight',
};

const TOP_BACK = new Map(Object.entries(TOP).map(([g, h]) => [h, g]));
const BLOCK_BACK = new Map(Object.entries(BLOCK).map(([g, h]) => [h, g]));

/** The Hugging Face name of a llama.cpp tensor, or null if it is not one of a Llama/Qwen2 decoder's. */
export function hfTensorName(gguf: string): string | null {
  if (TOP[gguf]) return TOP[gguf];
  const m = /^blk\.(\d+)\.(.+)$/.exec(gguf);
  if (m && BLOCK[m[2]]) return `model.layers.${m[1]}.${BLOCK[m[2]]}`;
  return null;
}

/** The llama.cpp name of a Hugging Face tensor (throws for one llama.cpp has no name for). */
export function ggufTensorName(hf: string): string {
  const top = TOP_BACK.get(hf);
  if (top) return top;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  const block = m && BLOCK_BACK.get(m[2]);
  if (!block) throw new Error(`tensor "${hf}" has no llama.cpp name`);
  return `blk.${m![1]}.${block}`;
}

/**
 * llama.cpp's converter reorders the rows of Llama's q/k projections, within each head, from the
 * Hugging Face rotate-half layout (first half, second half) to interleaved pairs (GGUF row h·D + 2j + s
 * holds HF row h·D + s·D/2 + j). `toHf` undoes it; the inverse is what export applies.
 */
export function permuteRopeRows(data: Float32Array, rows: number, cols: number, heads: number, toHf: boolean): Float32Array {
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) throw new Error(`cannot split ${rows} rows into ${heads} heads of even size`);
  const half = d / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) {
        const g = h * d + 2 * j + s;
        const hf = h * d + s * half + j;
        const [from, to] = toHf ? [g, hf] : [hf, g];
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

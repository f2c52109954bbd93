import type { LlamaConfig } from './llama-config.ts';
import type { HostTensor } from './tensor.ts';

/**
 * Rotary position embedding tables, as Hugging Face computes them (rotate_half convention:
 * the head dimension is split into two halves that rotate together, frequency i for both).
 */

/** inv_freq[i] = theta^(-2i/headDim), with Llama-3 scaling (transformers `_compute_llama3_parameters`) when configured. */
export function ropeInverseFrequencies(cfg: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
  const s = cfg.ropeScaling;
  if (!s) return inv;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowFreqWavelen) inv[i] = inv[i] / s.factor; // low frequencies: fully scaled
    else if (wavelen >= highFreqWavelen) {
      // medium band: interpolate between scaled and unscaled
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
    }
  }
  return inv;
}

/** cos and sin tables [positions, headDim/2] in the requested float dtype. */
export function ropeTables(
  cfg: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>,
  positions: number,
  dtype: 'float32' | 'float64',
): { cos: HostTensor; sin: HostTensor } {
  const inv = ropeInverseFrequencies(cfg);
  const half = inv.length;
  const Ctor = dtype === 'float64' ? Float64Array : Float32Array;
  const cos = new Ctor(positions * half);
  const sin = new Ctor(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      // HF computes the angle in float32; rounding it the same way keeps long positions comparable.
      const angle = dtype === 'float32' ? Math.fround(Math.fround(p) * Math.fround(inv[i])) : p * inv[i];
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return {
    cos: { dtype, shape: [positions, half], data: cos },
    sin: { dtype, shape: [positions, half], data: sin },
  };
}

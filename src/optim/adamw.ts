/**
 * AdamW (Loshchilov & Hutter) on host buffers, matching torch.optim.AdamW (amsgrad off), after
 * clipping the gradients by their global L2 norm as torch.nn.utils.clip_grad_norm_ does:
 *
 *   n   = ‖(g_1, …, g_k)‖₂;   c = min(1, maxNorm / (n + 1e-6));   g ← c·g
 *   p   ← p · (1 − lr·λ)                         (decoupled weight decay)
 *   m   ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²
 *   p   ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
 *
 * t is the 1-based step count after this update. The update is one pass over flat buffers (the
 * trainer keeps every parameter, moment and gradient in one contiguous array each): each element is
 * read and written once, where the same update as graph nodes made ~14 passes over 4 model-sized
 * tensors (a tenth of a 2 × 256 SmolLM2-135M step, measured). Arithmetic is in double, stored in the
 * buffers' precision.
 */
export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip by global norm; null disables clipping (the norm is still reported). */
  maxGradNorm: number | null;
}

export const ADAMW_DEFAULTS: AdamWConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };

type FloatBuffer = Float32Array | Float64Array;

export interface AdamWBuffers {
  param: FloatBuffer;
  m: FloatBuffer;
  v: FloatBuffer;
  grad: FloatBuffer;
}

/** L2 norm of the whole gradient buffer. */
export function gradientNorm(grad: FloatBuffer): number {
  let sum = 0;
  for (let i = 0; i < grad.length; i++) sum += grad[i] * grad[i];
  return Math.sqrt(sum);
}

/** One clipped AdamW update in place; returns the global gradient norm before clipping. */
export function adamwUpdate(b: AdamWBuffers, lr: number, step: number, cfg: AdamWConfig): number {
  const { param, m, v, grad } = b;
  const n = param.length;
  if (m.length !== n || v.length !== n || grad.length !== n) throw new Error(`adamw: buffers of ${n}, ${m.length}, ${v.length}, ${grad.length} elements`);
  const norm = gradientNorm(grad);
  const clip = cfg.maxGradNorm === null ? 1 : Math.min(1, cfg.maxGradNorm / (norm + 1e-6));
  const { beta1, beta2, eps } = cfg;
  const g1 = (1 - beta1) * clip;
  const g2 = (1 - beta2) * clip * clip;
  const stepSize = lr / (1 - beta1 ** step);
  const invSqrtBias2 = 1 / Math.sqrt(1 - beta2 ** step);
  const decay = 1 - lr * cfg.weightDecay;
  for (let i = 0; i < n; i++) {
    const g = grad[i];
    const mi = beta1 * m[i] + g1 * g;
    const vi = beta2 * v[i] + g2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - (stepSize * mi) / (Math.sqrt(vi) * invSqrtBias2 + eps);
  }
  return norm;
}

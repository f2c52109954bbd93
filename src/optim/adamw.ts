import type { GraphBuilder } from '../onnx/builder.ts';

/**
 * AdamW (Loshchilov & Hutter) as graph nodes, matching torch.optim.AdamW (amsgrad off), after
 * clipping the gradients by their global L2 norm as torch.nn.utils.clip_grad_norm_ does:
 *
 *   n   = ‖(g_1, …, g_k)‖₂;   c = min(1, maxNorm / (n + 1e-6));   g ← c·g
 *   p   ← p · (1 − lr·λ)                         (decoupled weight decay)
 *   m   ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²
 *   p   ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
 *
 * lr and t (the 1-based step count after this update) are scalar graph inputs, so one graph serves
 * every step of a schedule.
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

export interface AdamWSlot {
  param: string;
  m: string;
  v: string;
  grad: string;
}

export interface AdamWOutputs {
  params: string[];
  m: string[];
  v: string[];
  /** Global gradient norm before clipping (scalar). */
  gradNorm: string;
}

export function emitAdamW(g: GraphBuilder, slots: AdamWSlot[], lr: string, step: string, cfg: AdamWConfig, dtype: 'float32' | 'float64'): AdamWOutputs {
  const c = (x: number) => g.scalar(x, dtype);
  const sumSquares = slots.map((s) => g.op1('ReduceSumSquare', [s.grad], { keepdims: 0 }));
  const gradNorm = g.op1('Sqrt', [sumSquares.length === 1 ? sumSquares[0] : g.op1('Sum', sumSquares)]);
  // The clip factor is emitted even without clipping (max norm ∞ gives exactly 1): every new value
  // then depends on the global norm, hence on every gradient, hence on every read of the old
  // parameters — which is what lets the trainer write new parameters over the old ones in place.
  const maxNorm = cfg.maxGradNorm ?? Infinity;
  const clip = g.op1('Min', [c(1), g.op1('Div', [c(maxNorm), g.op1('Add', [gradNorm, c(1e-6)])])]);

  const bias1 = g.op1('Sub', [c(1), g.op1('Pow', [c(cfg.beta1), step])]);
  const bias2 = g.op1('Sub', [c(1), g.op1('Pow', [c(cfg.beta2), step])]);
  const stepSize = g.op1('Div', [lr, bias1]);
  const sqrtBias2 = g.op1('Sqrt', [bias2]);
  const decay = g.op1('Sub', [c(1), g.op1('Mul', [lr, c(cfg.weightDecay)])]);

  const out: AdamWOutputs = { params: [], m: [], v: [], gradNorm };
  for (const s of slots) {
    const grad = g.op1('Mul', [s.grad, clip]);
    const m = g.op1('Add', [g.op1('Mul', [s.m, c(cfg.beta1)]), g.op1('Mul', [grad, c(1 - cfg.beta1)])]);
    const v = g.op1('Add', [g.op1('Mul', [s.v, c(cfg.beta2)]), g.op1('Mul', [g.op1('Mul', [grad, grad]), c(1 - cfg.beta2)])]);
    const denom = g.op1('Add', [g.op1('Div', [g.op1('Sqrt', [v]), sqrtBias2]), c(cfg.eps)]);
    const decayed = cfg.weightDecay === 0 ? s.param : g.op1('Mul', [s.param, decay]);
    const param = g.op1('Sub', [decayed, g.op1('Mul', [g.op1('Div', [m, denom]), stepSize])]);
    out.params.push(param);
    out.m.push(m);
    out.v.push(v);
  }
  return out;
}

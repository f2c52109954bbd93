import type { GraphBuilder } from '../onnx/builder.ts';

/**
 * Preference losses as graph fragments over summed sequence log-probs [P] of the chosen and rejected
 * responses under the policy (differentiated) and the reference (inputs). With the log-ratios
 *   ρ_w = log π(y_w|x) − log π_ref(y_w|x),   ρ_l = log π(y_l|x) − log π_ref(y_l|x),   Δ = ρ_w − ρ_l:
 *
 *   dpo    −log σ(β Δ)                                  (DPO, paper Eq. 3)
 *   ipo    (Δ − 1/(2β))²                                (Azar et al.; on summed log-probs)
 *   hinge  max(0, 1 − β Δ)                              (SLiC-HF, Zhao et al.)
 *   rdpo   −log σ(β Δ − α (|y_w| − |y_l|))              (length-regularised DPO, Park et al.)
 *   kto    [1 − σ(β(ρ_w − z₀))] and [1 − σ(β(z₀ − ρ_l))], chosen as desirable, rejected as undesirable,
 *          averaged over the 2P examples; z₀ = max(0, mean KL estimate), an input (see kto-reference.ts).
 *
 * The fragment returns the SUM of per-unit losses; the caller multiplies by 1/(units in the whole batch)
 * so that micro-batches accumulate to the full-batch mean. Metrics follow TRL: rewards β ρ.
 */

export type PreferenceLossKind = 'dpo' | 'ipo' | 'hinge' | 'rdpo' | 'kto';

export interface PreferenceInputs {
  policyChosen: string;
  policyRejected: string;
  refChosen: string;
  refRejected: string;
  /** Response lengths [P] (rdpo only). */
  chosenLengths?: string;
  rejectedLengths?: string;
  /** KTO reference point z₀, a scalar (kto only). */
  ktoReference?: string;
}

export interface PreferenceLossOptions {
  beta: number;
  /** Length penalty α of rdpo. */
  alpha?: number;
  dtype: 'float32' | 'float64';
}

export interface PreferenceLossOutputs {
  /** Σ of per-unit losses in this batch (scalar). */
  lossSum: string;
  /** Units per pair: 1 (one loss per pair) or 2 (KTO: one per response). */
  unitsPerPair: number;
  /** β ρ_w, β ρ_l  [P] */
  chosenRewards: string;
  rejectedRewards: string;
  /** Σ over pairs of [β ρ_w > β ρ_l] and of β(ρ_w − ρ_l) (scalars; divide by pairs for means). */
  correctSum: string;
  marginSum: string;
}

export function emitPreferenceLoss(g: GraphBuilder, kind: PreferenceLossKind, x: PreferenceInputs, opts: PreferenceLossOptions): PreferenceLossOutputs {
  const c = (v: number) => g.scalar(v, opts.dtype);
  const { beta } = opts;
  const sum = (v: string) => g.op1('ReduceSum', [v], { keepdims: 0 });
  const logSigmoid = (z: string) => g.op1('Neg', [g.op1('Softplus', [g.op1('Neg', [z])])]);
  const rhoW = g.op1('Sub', [x.policyChosen, x.refChosen]);
  const rhoL = g.op1('Sub', [x.policyRejected, x.refRejected]);
  const delta = g.op1('Sub', [rhoW, rhoL]);
  const chosenRewards = g.op1('Mul', [rhoW, c(beta)]);
  const rejectedRewards = g.op1('Mul', [rhoL, c(beta)]);
  const margins = g.op1('Sub', [chosenRewards, rejectedRewards]);
  const correct = g.op1('Cast', [g.op1('Greater', [chosenRewards, rejectedRewards])], { to: opts.dtype === 'float64' ? 11 : 1 });

  let perUnit: string;
  let unitsPerPair = 1;
  switch (kind) {
    case 'dpo':
      perUnit = g.op1('Neg', [logSigmoid(g.op1('Mul', [delta, c(beta)]))]);
      break;
    case 'rdpo': {
      if (!x.chosenLengths || !x.rejectedLengths) throw new Error('rdpo loss needs chosen and rejected lengths');
      const lengthGap = g.op1('Mul', [g.op1('Sub', [x.chosenLengths, x.rejectedLengths]), c(opts.alpha ?? 0)]);
      perUnit = g.op1('Neg', [logSigmoid(g.op1('Sub', [g.op1('Mul', [delta, c(beta)]), lengthGap]))]);
      break;
    }
    case 'ipo': {
      const gap = g.op1('Sub', [delta, c(1 / (2 * beta))]);
      perUnit = g.op1('Mul', [gap, gap]);
      break;
    }
    case 'hinge':
      perUnit = g.op1('Relu', [g.op1('Sub', [c(1), g.op1('Mul', [delta, c(beta)])])]);
      break;
    case 'kto': {
      if (!x.ktoReference) throw new Error('kto loss needs the reference point z0');
      const z0 = x.ktoReference;
      const desirable = g.op1('Sub', [c(1), g.op1('Sigmoid', [g.op1('Mul', [g.op1('Sub', [rhoW, z0]), c(beta)])])]);
      const undesirable = g.op1('Sub', [c(1), g.op1('Sigmoid', [g.op1('Mul', [g.op1('Sub', [z0, rhoL]), c(beta)])])]);
      perUnit = g.op1('Concat', [desirable, undesirable], { axis: 0 });
      unitsPerPair = 2;
      break;
    }
    default:
      throw new Error(`unknown preference loss '${kind as string}' (dpo, ipo, hinge, rdpo, kto)`);
  }
  return { lossSum: sum(perUnit), unitsPerPair, chosenRewards, rejectedRewards, correctSum: sum(correct), marginSum: sum(margins) };
}

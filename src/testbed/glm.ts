/**
 * Logistic regression (a binomial GLM with logit link) fitted by Newton's method / IRLS, for the
 * AlpacaEval-2 length-controlled win rate. Labels may be soft (judge probabilities in [0, 1]), as
 * AlpacaEval fits on the annotator's preference probabilities. Maximizes the penalized log-likelihood
 *   ℓ(β) = Σ_i w_i [y_i log σ(z_i) + (1 − y_i) log(1 − σ(z_i))] − ½ Σ_k λ_k β_k²,   z = Xβ,
 * with step halving so every accepted step raises ℓ.
 */

export interface LogisticFitOptions {
  /** λ_k per coefficient (default 0: unpenalized). */
  ridge?: ArrayLike<number>;
  /** Per-row weights (default 1). */
  weights?: ArrayLike<number>;
  maxIterations?: number;
  /** Converged when every Newton step component is below this. */
  tolerance?: number;
}

export interface LogisticFit {
  coef: Float64Array;
  logLik: number;
  iterations: number;
  converged: boolean;
}

/** log σ(z), stable for large |z|. */
function logSigmoid(z: number): number {
  return z >= 0 ? -Math.log1p(Math.exp(-z)) : z - Math.log1p(Math.exp(z));
}

/** ℓ(β) above; exported so tests can check optimality by finite differences. */
export function logisticObjective(
  columns: readonly ArrayLike<number>[],
  y: ArrayLike<number>,
  coef: ArrayLike<number>,
  options: Pick<LogisticFitOptions, 'ridge' | 'weights'> = {},
): number {
  const n = y.length;
  let ll = 0;
  for (let i = 0; i < n; i++) {
    let z = 0;
    for (let k = 0; k < columns.length; k++) z += columns[k][i] * coef[k];
    const w = options.weights ? options.weights[i] : 1;
    ll += w * (y[i] * logSigmoid(z) + (1 - y[i]) * logSigmoid(-z));
  }
  for (let k = 0; k < columns.length; k++) ll -= 0.5 * (options.ridge ? options.ridge[k] : 0) * coef[k] * coef[k];
  return ll;
}

/** Fits β for features given as columns (include a column of ones for an intercept). */
export function fitLogistic(columns: readonly ArrayLike<number>[], y: ArrayLike<number>, options: LogisticFitOptions = {}): LogisticFit {
  const p = columns.length;
  const n = y.length;
  if (p === 0) throw new Error('fitLogistic: no feature columns');
  columns.forEach((c, k) => {
    if (c.length !== n) throw new Error(`fitLogistic: column ${k} has ${c.length} rows, labels have ${n}`);
  });
  for (let i = 0; i < n; i++) {
    if (!(y[i] >= 0 && y[i] <= 1)) throw new Error(`fitLogistic: label ${i} is ${y[i]}, expected a probability in [0, 1]`);
  }
  const ridge = options.ridge ?? new Float64Array(p);
  const maxIterations = options.maxIterations ?? 100;
  const tolerance = options.tolerance ?? 1e-10;
  let coef = new Float64Array(p);
  let ll = logisticObjective(columns, y, coef, options);
  const grad = new Float64Array(p);
  const hess = new Float64Array(p * p);
  for (let iter = 1; iter <= maxIterations; iter++) {
    grad.fill(0);
    hess.fill(0);
    for (let i = 0; i < n; i++) {
      let z = 0;
      for (let k = 0; k < p; k++) z += columns[k][i] * coef[k];
      const prob = 1 / (1 + Math.exp(-z));
      const w = options.weights ? options.weights[i] : 1;
      const r = w * (y[i] - prob);
      const curv = w * prob * (1 - prob);
      for (let k = 0; k < p; k++) {
        const xk = columns[k][i];
        grad[k] += xk * r;
        for (let l = 0; l <= k; l++) hess[k * p + l] += xk * columns[l][i] * curv;
      }
    }
    for (let k = 0; k < p; k++) {
      grad[k] -= ridge[k] * coef[k];
      hess[k * p + k] += ridge[k];
      for (let l = 0; l < k; l++) hess[l * p + k] = hess[k * p + l];
    }
    const step = solveLinear(hess, grad, p);
    let scale = 1;
    let next = coef;
    let nextLl = ll;
    for (let halving = 0; halving < 40; halving++, scale /= 2) {
      next = coef.map((c, k) => c + scale * step[k]);
      nextLl = logisticObjective(columns, y, next, options);
      if (nextLl >= ll - 1e-12 * Math.abs(ll)) break;
    }
    const size = Math.max(...step.map((s) => Math.abs(s * scale)));
    coef = next;
    ll = nextLl;
    if (size < tolerance) return { coef, logLik: ll, iterations: iter, converged: true };
  }
  return { coef, logLik: ll, iterations: maxIterations, converged: false };
}

/** Solves A x = b (A p×p, row-major) by Gaussian elimination with partial pivoting. */
function solveLinear(a: Float64Array, b: Float64Array, p: number): Float64Array {
  const m = Float64Array.from(a);
  const x = Float64Array.from(b);
  for (let col = 0; col < p; col++) {
    let pivot = col;
    for (let r = col + 1; r < p; r++) if (Math.abs(m[r * p + col]) > Math.abs(m[pivot * p + col])) pivot = r;
    if (!(Math.abs(m[pivot * p + col]) > 1e-300)) {
      throw new Error('fitLogistic: singular Hessian (constant or collinear features); add a ridge penalty');
    }
    if (pivot !== col) {
      for (let c = 0; c < p; c++) [m[col * p + c], m[pivot * p + c]] = [m[pivot * p + c], m[col * p + c]];
      [x[col], x[pivot]] = [x[pivot], x[col]];
    }
    for (let r = col + 1; r < p; r++) {
      const f = m[r * p + col] / m[col * p + col];
      for (let c = col; c < p; c++) m[r * p + c] -= f * m[col * p + c];
      x[r] -= f * x[col];
    }
  }
  for (let r = p - 1; r >= 0; r--) {
    let s = x[r];
    for (let c = r + 1; c < p; c++) s -= m[r * p + c] * x[c];
    x[r] = s / m[r * p + r];
  }
  return x;
}

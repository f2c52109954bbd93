import test from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder, serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { emitPreferenceLoss, type PreferenceLossKind } from '../../src/losses/preference.ts';
import { emitSftLoss } from '../../src/losses/sft.ts';
import { emitSequenceLogps } from '../../src/losses/sequence-logps.ts';
import { emitResponsePositions } from '../../src/losses/response-positions.ts';
import { fdCheck } from '../autodiff/fd-check.ts';

// Each loss against its formula written out in plain JS, and its gradient against finite differences.
const pc = [-10.2, -8.1, -12.5, -7.7];
const pr = [-11.0, -7.5, -13.9, -9.0];
const rc = [-10.5, -8.0, -12.0, -8.2];
const rr = [-10.8, -7.9, -13.0, -8.8];
const lc = [12, 30, 7, 15];
const lr = [20, 10, 9, 15];
const beta = 0.3;
const alpha = 0.02;
const z0 = 0.15;
const logSigmoid = (z: number) => -Math.log1p(Math.exp(-z));
const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

const reference: Record<PreferenceLossKind, (i: number) => number[]> = {
  dpo: (i) => [-logSigmoid(beta * (pc[i] - rc[i] - (pr[i] - rr[i])))],
  ipo: (i) => [(pc[i] - rc[i] - (pr[i] - rr[i]) - 1 / (2 * beta)) ** 2],
  hinge: (i) => [Math.max(0, 1 - beta * (pc[i] - rc[i] - (pr[i] - rr[i])))],
  rdpo: (i) => [-logSigmoid(beta * (pc[i] - rc[i] - (pr[i] - rr[i])) - alpha * (lc[i] - lr[i]))],
  kto: (i) => [1 - sigmoid(beta * (pc[i] - rc[i] - z0)), 1 - sigmoid(beta * (z0 - (pr[i] - rr[i])))],
};

const vec = (xs: number[]) => ({ dtype: 'float64' as const, shape: [xs.length], data: Float64Array.from(xs) });

function emit(g: GraphBuilder, kind: PreferenceLossKind, x: Record<string, string>) {
  return emitPreferenceLoss(
    g,
    kind,
    { policyChosen: x.pc, policyRejected: x.pr, refChosen: x.rc, refRejected: x.rr, chosenLengths: x.lc, rejectedLengths: x.lr, ktoReference: x.z0 },
    { beta, alpha, dtype: 'float64' },
  );
}

for (const kind of Object.keys(reference) as PreferenceLossKind[]) {
  test(`${kind} loss, rewards, accuracy and margin equal the formula`, async () => {
    const g = new GraphBuilder(kind);
    const x: Record<string, string> = {};
    for (const n of ['pc', 'pr', 'rc', 'rr', 'lc', 'lr']) x[n] = g.input(n, 'float64', [4]);
    x.z0 = g.input('z0', 'float64', []);
    const out = emit(g, kind, x);
    g.output(out.lossSum, 'float64', [], 'loss_sum');
    g.output(out.chosenRewards, 'float64', [4], 'chosen');
    g.output(out.correctSum, 'float64', [], 'correct');
    g.output(out.marginSum, 'float64', [], 'margin');
    const r = await runSession(await createSession(serializeModel(g)), {
      pc: vec(pc), pr: vec(pr), rc: vec(rc), rr: vec(rr), lc: vec(lc), lr: vec(lr),
      z0: { dtype: 'float64', shape: [], data: Float64Array.of(z0) },
    });
    const expected = [0, 1, 2, 3].flatMap(reference[kind]).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs((r.loss_sum.data[0] as number) - expected) < 1e-12, `${r.loss_sum.data[0]} vs ${expected}`);
    assert.equal(out.unitsPerPair, kind === 'kto' ? 2 : 1);
    const rewardsC = pc.map((p, i) => beta * (p - rc[i]));
    const rewardsR = pr.map((p, i) => beta * (p - rr[i]));
    assert.deepEqual(Array.from(r.chosen.data as Float64Array).map((v) => v.toFixed(10)), rewardsC.map((v) => v.toFixed(10)));
    assert.equal(r.correct.data[0], rewardsC.filter((c, i) => c > rewardsR[i]).length);
    assert.ok(Math.abs((r.margin.data[0] as number) - rewardsC.reduce((s, c, i) => s + c - rewardsR[i], 0)) < 1e-12);
  });

  test(`${kind} loss gradient with respect to the policy log-probs matches finite differences`, async () => {
    await fdCheck({
      inputs: {
        pc: { shape: [4], data: pc }, pr: { shape: [4], data: pr },
        rc: { shape: [4], data: rc, fixed: true }, rr: { shape: [4], data: rr, fixed: true },
        lc: { shape: [4], data: lc, fixed: true }, lr: { shape: [4], data: lr, fixed: true },
        z0: { shape: [], data: [z0], fixed: true },
      },
      build: (g, x) => emit(g, kind, x).lossSum,
    });
  });
}

test('SFT loss and sequence log-probs sum the token log-probs at the response positions', async () => {
  const g = new GraphBuilder('sft');
  const lp = g.input('lp', 'float64', [3, 3]);
  const mask = g.input('mask', 'float64', [3, 3]);
  const at = emitResponsePositions(g, mask);
  // the losses get log-probs at the response positions only (as the lm_head computes them)
  const tokenLogps = g.op1('Gather', [g.op1('Reshape', [lp, g.int64([-1])]), at.index], { axis: 0 });
  const out = emitSftLoss(g, tokenLogps, at, mask);
  g.output(out.lossSum, 'float64', [], 'loss');
  g.output(out.tokens, 'float64', [], 'tokens');
  g.output(emitSequenceLogps(g, tokenLogps, at), 'float64', [3], 'seq');
  const r = await runSession(await createSession(serializeModel(g)), {
    lp: { dtype: 'float64', shape: [3, 3], data: Float64Array.of(-1, -2, -3, -4, -5, -6, -7, -8, -9) },
    mask: { dtype: 'float64', shape: [3, 3], data: Float64Array.of(0, 1, 1, 1, 0, 0, 0, 0, 1) },
  });
  assert.equal(r.loss.data[0], 2 + 3 + 4 + 9);
  assert.equal(r.tokens.data[0], 4);
  assert.deepEqual(Array.from(r.seq.data as Float64Array), [-5, -4, -9]);
});

test('rdpo without lengths and kto without a reference point are refused', () => {
  const g = new GraphBuilder('bad');
  const x = Object.fromEntries(['pc', 'pr', 'rc', 'rr'].map((n) => [n, g.input(n, 'float64', [2])]));
  assert.throws(() => emit(g, 'rdpo', x), /rdpo loss needs chosen and rejected lengths/);
  assert.throws(() => emit(g, 'kto', x), /kto loss needs the reference point/);
});

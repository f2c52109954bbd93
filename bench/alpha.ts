/**
 * Exact α* (paper Eq. 6) over a round-sized window: 10,000 groups × K = 16 responses.
 * Target (issue 5): ≤ 50 ms per solve. Prints the median and best of several timed runs after warm-up.
 * Usage: npm run bench:alpha [-- groups K]
 */
import { solveAlpha, type RewardGroups } from '../src/dice/alpha.ts';
import { Rng } from '../src/util/random.ts';

const groupCount = Number(process.argv[2] ?? 10_000);
const k = Number(process.argv[3] ?? 16);

function syntheticWindow(seed: number): RewardGroups {
  const rng = new Rng(seed);
  const n = groupCount * k;
  const rewards = new Float64Array(n);
  const lengths = new Float64Array(n);
  const offsets = new Uint32Array(groupCount + 1);
  for (let g = 0; g < groupCount; g++) {
    for (let i = g * k; i < (g + 1) * k; i++) {
      lengths[i] = 200 + rng.int(2800); // chat-length responses in characters
      rewards[i] = 0.002 * lengths[i] + rng.normal(); // vanilla implicit rewards favour length
    }
    offsets[g + 1] = (g + 1) * k;
  }
  return { rewards, lengths, offsets };
}

const window = syntheticWindow(1);
for (let i = 0; i < 5; i++) solveAlpha(window); // warm-up (JIT)
const times: number[] = [];
let last = solveAlpha(window);
for (let i = 0; i < 15; i++) {
  const t0 = performance.now();
  last = solveAlpha(window);
  times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
console.log(
  `alpha: ${groupCount} groups × K=${k}: median ${times[times.length >> 1].toFixed(1)} ms, best ${times[0].toFixed(1)} ms ` +
    `(target ≤ 50 ms); α*=${last.alpha.toPrecision(4)} mean diff ${last.meanDiffBefore.toFixed(1)} → ${last.meanDiffAfter.toFixed(1)}, ` +
    `${last.landscape.alphas.length} breakpoints`,
);

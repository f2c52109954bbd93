/**
 * float32 → ggml blocks for export, as ggml's reference quantisers define them (quantize_row_*_ref):
 *   Q8_0: d = max|x| / 127, q = round(x / d) (half away from zero), d stored as f16.
 *   Q4_0: m = the x of largest |x| (keeping its sign), d = m / −8, q = min(15, trunc(x / d + 8.5)).
 * Rows must be whole blocks of 32.
 */
import { floatToHalf } from '../safetensors.ts';

function putHalf(out: Uint8Array, at: number, x: number): void {
  const h = floatToHalf(x);
  out[at] = h & 0xff;
  out[at + 1] = h >> 8;
}

const f = Math.fround;

export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new Error(`Q8_0: ${x.length} values are not whole blocks of 32`);
  const out = new Uint8Array((x.length / 32) * 34);
  const q = new Int8Array(out.buffer);
  for (let b = 0, p = 0; b < x.length; b += 32, p += 34) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    putHalf(out, p, d);
    for (let j = 0; j < 32; j++) {
      const v = f(x[b + j] * id);
      q[p + 2 + j] = Math.sign(v) * Math.round(Math.abs(v)); // roundf: half away from zero
    }
  }
  return out;
}

export function quantizeQ4_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new Error(`Q4_0: ${x.length} values are not whole blocks of 32`);
  const out = new Uint8Array((x.length / 32) * 18);
  for (let b = 0, p = 0; b < x.length; b += 32, p += 18) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      if (Math.abs(x[b + j]) > amax) {
        amax = Math.abs(x[b + j]);
        max = x[b + j];
      }
    }
    const d = f(max / -8);
    const id = d ? f(1 / d) : 0;
    putHalf(out, p, d);
    for (let j = 0; j < 16; j++) {
      const lo = Math.min(15, Math.trunc(f(f(x[b + j] * id) + 8.5)));
      const hi = Math.min(15, Math.trunc(f(f(x[b + j + 16] * id) + 8.5)));
      out[p + 2 + j] = lo | (hi << 4);
    }
  }
  return out;
}

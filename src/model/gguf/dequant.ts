/**
 * ggml block formats to float32, written from the format definitions (ggml-common.h's block structs).
 * Every product is rounded to float32 in the order gguf-py's numpy dequantisation rounds it, so results
 * equal transformers' GGUF loader bit for bit (each step is exact in float32 but Q6_K's last product).
 *   Q4_0  {f16 d; u8 qs[16]}                     x = (nibble − 8)·d; low nibbles are x[0..15], high x[16..31]
 *   Q4_1  {f16 d; f16 m; u8 qs[16]}              x = nibble·d + m
 *   Q8_0  {f16 d; i8 qs[32]}                     x = q·d
 *   Q4_K  {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}            8 sub-blocks of 32, 6-bit scale and min
 *   Q5_K  {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]} as Q4_K plus a fifth bit from qh
 *   Q6_K  {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}           16 sub-blocks of 16, x = d·scale·(q − 32)
 */
import { halfToFloat } from '../safetensors.ts';
import { GGML_TYPES, ggmlTypeName } from './format.ts';

const HALF = new Float32Array(65536);
for (let h = 0; h < 65536; h++) HALF[h] = halfToFloat(h);

const f = Math.fround;

function f16(b: Uint8Array, at: number): number {
  return HALF[b[at] | (b[at + 1] << 8)];
}

function dequantQ4_0(b: Uint8Array, out: Float32Array): void {
  for (let blk = 0, o = 0, p = 0; o < out.length; blk++, o += 32, p += 18) {
    const d = f16(b, p);
    for (let j = 0; j < 16; j++) {
      const q = b[p + 2 + j];
      out[o + j] = f(((q & 0xf) - 8) * d);
      out[o + j + 16] = f(((q >> 4) - 8) * d);
    }
  }
}

function dequantQ4_1(b: Uint8Array, out: Float32Array): void {
  for (let o = 0, p = 0; o < out.length; o += 32, p += 20) {
    const d = f16(b, p);
    const m = f16(b, p + 2);
    for (let j = 0; j < 16; j++) {
      const q = b[p + 4 + j];
      out[o + j] = f(f((q & 0xf) * d) + m);
      out[o + j + 16] = f(f((q >> 4) * d) + m);
    }
  }
}

function dequantQ8_0(b: Uint8Array, out: Float32Array): void {
  const s = new Int8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let o = 0, p = 0; o < out.length; o += 32, p += 34) {
    const d = f16(b, p);
    for (let j = 0; j < 32; j++) out[o + j] = f(s[p + 2 + j] * d);
  }
}

/** The j-th 6-bit (scale, min) pair of a K-quant's 12 packed scale bytes at `at`. */
function scaleMinK4(b: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [b[at + j] & 63, b[at + j + 4] & 63];
  return [(b[at + j + 4] & 0xf) | ((b[at + j - 4] >> 6) << 4), (b[at + j + 4] >> 4) | ((b[at + j] >> 6) << 4)];
}

function dequantQ4_K(b: Uint8Array, out: Float32Array): void {
  for (let o = 0, p = 0; o < out.length; o += 256, p += 144) {
    const d = f16(b, p);
    const dmin = f16(b, p + 2);
    const qs = p + 16;
    for (let j = 0; j < 4; j++) {
      const [sc1, m1] = scaleMinK4(b, p + 4, 2 * j);
      const [sc2, m2] = scaleMinK4(b, p + 4, 2 * j + 1);
      const d1 = f(d * sc1), mm1 = f(dmin * m1), d2 = f(d * sc2), mm2 = f(dmin * m2);
      for (let l = 0; l < 32; l++) {
        const q = b[qs + 32 * j + l];
        out[o + 64 * j + l] = f(f(d1 * (q & 0xf)) - mm1);
        out[o + 64 * j + 32 + l] = f(f(d2 * (q >> 4)) - mm2);
      }
    }
  }
}

function dequantQ5_K(b: Uint8Array, out: Float32Array): void {
  for (let o = 0, p = 0; o < out.length; o += 256, p += 176) {
    const d = f16(b, p);
    const dmin = f16(b, p + 2);
    const qh = p + 16;
    const qs = p + 48;
    for (let j = 0; j < 4; j++) {
      const [sc1, m1] = scaleMinK4(b, p + 4, 2 * j);
      const [sc2, m2] = scaleMinK4(b, p + 4, 2 * j + 1);
      const d1 = f(d * sc1), mm1 = f(dmin * m1), d2 = f(d * sc2), mm2 = f(dmin * m2);
      const u1 = 1 << (2 * j), u2 = 2 << (2 * j);
      for (let l = 0; l < 32; l++) {
        const q = b[qs + 32 * j + l];
        const h = b[qh + l];
        out[o + 64 * j + l] = f(f(d1 * ((q & 0xf) + (h & u1 ? 16 : 0))) - mm1);
        out[o + 64 * j + 32 + l] = f(f(d2 * ((q >> 4) + (h & u2 ? 16 : 0))) - mm2);
      }
    }
  }
}

function dequantQ6_K(b: Uint8Array, out: Float32Array): void {
  const s = new Int8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let o = 0, p = 0; o < out.length; o += 256, p += 210) {
    const d = f16(b, p + 208);
    for (let half = 0; half < 2; half++) {
      const ql = p + 64 * half;
      const qh = p + 128 + 32 * half;
      const sc = p + 192 + 8 * half;
      const y = o + 128 * half;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = b[qh + l];
        const q1 = ((b[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((b[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((b[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((b[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[y + l] = f(f(d * s[sc + is]) * q1);
        out[y + l + 32] = f(f(d * s[sc + is + 2]) * q2);
        out[y + l + 64] = f(f(d * s[sc + is + 4]) * q3);
        out[y + l + 96] = f(f(d * s[sc + is + 6]) * q4);
      }
    }
  }
}

/** `count` float32 values from a tensor's bytes of ggml `type`. */
export function dequantize(type: number, bytes: Uint8Array, count: number, name = 'tensor'): Float32Array {
  const info = GGML_TYPES.get(type);
  if (!info) throw new Error(`${name}: unsupported ggml type ${ggmlTypeName(type)}`);
  if ((count / info.blockSize) * info.blockBytes !== bytes.byteLength) {
    throw new Error(`${name}: ${bytes.byteLength} bytes do not hold ${count} ${info.name} values`);
  }
  if (info.name === 'F32') {
    return bytes.byteOffset % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset, count) : new Float32Array(bytes.slice().buffer);
  }
  const out = new Float32Array(count);
  switch (info.name) {
    case 'F16':
      for (let i = 0; i < count; i++) out[i] = f16(bytes, 2 * i);
      break;
    case 'BF16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16;
      break;
    }
    case 'Q4_0': dequantQ4_0(bytes, out); break;
    case 'Q4_1': dequantQ4_1(bytes, out); break;
    case 'Q8_0': dequantQ8_0(bytes, out); break;
    case 'Q4_K': dequantQ4_K(bytes, out); break;
    case 'Q5_K': dequantQ5_K(bytes, out); break;
    case 'Q6_K': dequantQ6_K(bytes, out); break;
  }
  return out;
}

/**
 * Hand-written SVG figures for the report: overlaid histograms (paper Fig. 2), a step-function
 * landscape (Fig. 4) and line charts (per-round training metrics, the γ sweep of Fig. 3). Pure
 * functions of their data, so the same numbers give the same bytes.
 */

export interface Series {
  name: string;
  /** Points in data coordinates. */
  points: Array<[number, number]>;
  color?: string;
  /** Draw as a step function (value holds until the next x). */
  step?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** Horizontal reference lines (e.g. y = 0). */
  hLines?: Array<{ y: number; label?: string }>;
  /** Vertical reference lines (e.g. x = α*). */
  vLines?: Array<{ x: number; label?: string }>;
}

const PALETTE = ['#2a9d8f', '#e76f51', '#264653', '#e9c46a', '#8ab17d', '#9b5de5', '#f15bb5', '#00bbf9'];
const MARGIN = { left: 64, right: 16, top: 36, bottom: 48 };

/** Escapes text for SVG/XML. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Numbers in SVG attributes: 2 decimals, no "-0". */
function n(v: number): string {
  const s = v.toFixed(2);
  return s === '-0.00' ? '0.00' : s;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  // integer multiples of the step, so 0 is exactly 0 and no rounding error accumulates
  for (let k = Math.ceil(lo / step - 1e-9); k <= Math.floor(hi / step + 1e-9); k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  parts: string[];
  width: number;
  height: number;
}

function frame(opts: ChartOptions, xRange: [number, number], yRange: [number, number]): Frame {
  const width = opts.width ?? 640;
  const height = opts.height ?? 360;
  const [x0, x1] = xRange[1] > xRange[0] ? xRange : [xRange[0] - 0.5, xRange[0] + 0.5];
  const [y0, y1] = yRange[1] > yRange[0] ? yRange : [yRange[0] - 0.5, yRange[0] + 0.5];
  const pw = width - MARGIN.left - MARGIN.right;
  const ph = height - MARGIN.top - MARGIN.bottom;
  const x = (v: number) => MARGIN.left + ((v - x0) / (x1 - x0)) * pw;
  const y = (v: number) => MARGIN.top + ph - ((v - y0) / (y1 - y0)) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${xmlEscape(opts.title)}</text>`,
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  ];
  for (const t of niceTicks(x0, x1)) {
    parts.push(`<line x1="${n(x(t))}" y1="${MARGIN.top + ph}" x2="${n(x(t))}" y2="${MARGIN.top + ph + 4}" stroke="#666"/>`);
    parts.push(`<text x="${n(x(t))}" y="${MARGIN.top + ph + 16}" text-anchor="middle">${tickLabel(t)}</text>`);
  }
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${MARGIN.left - 4}" y1="${n(y(t))}" x2="${MARGIN.left + pw}" y2="${n(y(t))}" stroke="#eee"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${n(y(t) + 4)}" text-anchor="end">${tickLabel(t)}</text>`);
  }
  parts.push(`<text x="${MARGIN.left + pw / 2}" y="${height - 10}" text-anchor="middle">${xmlEscape(opts.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${MARGIN.top + ph / 2}) rotate(-90)" text-anchor="middle">${xmlEscape(opts.yLabel)}</text>`);
  for (const h of opts.hLines ?? []) {
    if (h.y < y0 || h.y > y1) continue;
    parts.push(`<line x1="${MARGIN.left}" y1="${n(y(h.y))}" x2="${MARGIN.left + pw}" y2="${n(y(h.y))}" stroke="#555" stroke-dasharray="4 3"/>`);
    if (h.label) parts.push(`<text x="${MARGIN.left + pw - 4}" y="${n(y(h.y) - 4)}" text-anchor="end" fill="#555">${xmlEscape(h.label)}</text>`);
  }
  for (const v of opts.vLines ?? []) {
    if (v.x < x0 || v.x > x1) continue;
    parts.push(`<line x1="${n(x(v.x))}" y1="${MARGIN.top}" x2="${n(x(v.x))}" y2="${MARGIN.top + ph}" stroke="#555" stroke-dasharray="4 3"/>`);
    if (v.label) parts.push(`<text x="${n(x(v.x) + 4)}" y="${MARGIN.top + 14}" fill="#555">${xmlEscape(v.label)}</text>`);
  }
  return { x, y, parts, width, height };
}

function legend(f: Frame, names: Array<{ name: string; color: string }>): void {
  names.forEach((s, i) => {
    const yy = MARGIN.top + 12 + i * 16;
    const xx = f.width - MARGIN.right - 170;
    f.parts.push(`<rect x="${xx}" y="${yy - 9}" width="12" height="10" fill="${s.color}" fill-opacity="0.7"/>`);
    f.parts.push(`<text x="${xx + 18}" y="${yy}">${xmlEscape(s.name)}</text>`);
  });
}

function extent(values: number[], pad = 0): [number, number] {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

/** Line (or step) chart of several series. */
export function lineChartSvg(series: Series[], opts: ChartOptions): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  for (const h of opts.hLines ?? []) ys.push(h.y);
  const f = frame(opts, extent(xs), extent(ys, 0.05));
  const named = series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length] }));
  for (const s of named) {
    if (s.points.length === 0) continue;
    const d: string[] = [];
    s.points.forEach(([px, py], i) => {
      if (i === 0) d.push(`M${n(f.x(px))} ${n(f.y(py))}`);
      else if (s.step) d.push(`H${n(f.x(px))} V${n(f.y(py))}`);
      else d.push(`L${n(f.x(px))} ${n(f.y(py))}`);
    });
    f.parts.push(`<path d="${d.join(' ')}" fill="none" stroke="${s.color}" stroke-width="1.8"/>`);
    if (s.points.length <= 12) for (const [px, py] of s.points) f.parts.push(`<circle cx="${n(f.x(px))}" cy="${n(f.y(py))}" r="3" fill="${s.color}"/>`);
  }
  legend(f, named);
  f.parts.push('</svg>');
  return f.parts.join('\n') + '\n';
}

export interface HistogramSeries {
  name: string;
  /** bins + 1 edges and bins counts (as src/dice/pairs.ts histogram gives them). */
  edges: ArrayLike<number>;
  counts: ArrayLike<number>;
  color?: string;
}

/** Overlaid, semi-transparent histograms on shared edges (paper Fig. 2, top). */
export function histogramSvg(series: HistogramSeries[], opts: ChartOptions): string {
  const xs = series.flatMap((s) => Array.from(s.edges));
  const ys = [0, ...series.flatMap((s) => Array.from(s.counts))];
  const f = frame(opts, extent(xs), [0, Math.max(...ys) * 1.05 || 1]);
  const named = series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length] }));
  for (const s of named) {
    for (let b = 0; b < s.counts.length; b++) {
      if (s.counts[b] === 0) continue;
      const x0 = f.x(s.edges[b]);
      const x1 = f.x(s.edges[b + 1]);
      const y1 = f.y(s.counts[b]);
      f.parts.push(`<rect x="${n(x0)}" y="${n(y1)}" width="${n(Math.max(0.5, x1 - x0))}" height="${n(f.y(0) - y1)}" fill="${s.color}" fill-opacity="0.5" stroke="${s.color}"/>`);
    }
  }
  legend(f, named);
  f.parts.push('</svg>');
  return f.parts.join('\n') + '\n';
}

/** At most `max` points of a step function, keeping the first, the last and the points nearest `keepX`. */
export function downsample(points: Array<[number, number]>, max: number, keepX?: number): Array<[number, number]> {
  if (points.length <= max) return points;
  const picked = new Set<number>([0, points.length - 1]);
  if (keepX !== undefined) {
    let best = 0;
    points.forEach((p, i) => {
      if (Math.abs(p[0] - keepX) < Math.abs(points[best][0] - keepX)) best = i;
    });
    for (const i of [best - 1, best, best + 1]) if (i >= 0 && i < points.length) picked.add(i);
  }
  const slots = Math.max(1, max - picked.size);
  for (let k = 1; k < slots; k++) picked.add(Math.round((k * (points.length - 1)) / slots));
  return [...picked].sort((a, b) => a - b).map((i) => points[i]);
}

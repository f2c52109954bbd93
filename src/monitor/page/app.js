// The dashboard: one websocket to /ws, every event folded into chart tables and a raw log.
// Everything from the server is data: it is written with textContent, never as HTML.
/* global uPlot */

const MAX_POINTS = 5000; // per chart, oldest dropped
const MAX_LOG_ROWS = 300;
const MAX_TABLE_ROWS = 200;
const REDRAW_MS = 250;
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
const IDENTITY_FIELDS = new Set(['stage', 'type', 'time', 'round', 'seq']);

const $ = (id) => document.getElementById(id);

/** A finite number field of an event. */
function num(e, name) {
  const v = e[name];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * A numeric field of one metrics event type (`stage/type`), or undefined for any other event.
 * Every field(e, kind, name) here is listed in src/monitor/page-fields.ts, typed against the events
 * the stages emit (test/monitor/page-fields.test.ts checks both).
 */
function field(e, kind, name) {
  return `${e.stage}/${e.type}` === kind ? num(e, name) : undefined;
}

/** A boolean field of one metrics event type (listed in page-fields.ts like field's). */
function flag(e, kind, name) {
  return `${e.stage}/${e.type}` === kind && typeof e[name] === 'boolean' ? e[name] : undefined;
}

/** A text field of one metrics event type (listed in page-fields.ts like field's). */
function text(e, kind, name) {
  return `${e.stage}/${e.type}` === kind && typeof e[name] === 'string' ? e[name] : undefined;
}

function str(v) {
  return v === undefined || v === null ? '–' : String(v);
}

/** Columns sharing one x axis; a series that appears later is back-filled with nulls. */
class SeriesTable {
  constructor() {
    this.reset();
  }
  reset() {
    this.xs = [];
    this.cols = new Map();
    this.count = 0;
  }
  add(x, values) {
    const entries = Object.entries(values).filter(([, v]) => typeof v === 'number' && Number.isFinite(v));
    if (entries.length === 0) return false;
    // uPlot needs ascending x; events from different sources can arrive slightly out of order.
    let at = this.xs.length;
    while (at > 0 && this.xs[at - 1] > x) at--;
    this.xs.splice(at, 0, x);
    for (const col of this.cols.values()) col.splice(at, 0, null);
    for (const [name, v] of entries) {
      let col = this.cols.get(name);
      if (!col) {
        col = new Array(this.xs.length).fill(null);
        this.cols.set(name, col);
      }
      col[at] = v;
    }
    if (this.xs.length > MAX_POINTS) {
      const cut = this.xs.length - MAX_POINTS;
      this.xs.splice(0, cut);
      for (const col of this.cols.values()) col.splice(0, cut);
    }
    this.count++;
    return true;
  }
  /** Next x for charts indexed by arrival (windows, steps). */
  nextIndex() {
    return this.count + 1;
  }
}

/**
 * y range that fits the data whatever its magnitude. uPlot's default gives a flat series a range of
 * 0..100 when it is all zeros (α* = 0 in every window), which reads as "no data"; a flat series here
 * gets a range around its value instead, and anything else uPlot's own padded range.
 */
function fitRange(u, min, max) {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = Math.abs(min) / 2 || 1;
    return [min - pad, max + pad];
  }
  return uPlot.rangeNum(min, max, 0.1, true);
}

const INTEGER_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

/**
 * Tick labels with as many digits as the tick spacing needs. uPlot's default labels round ticks of
 * a tiny range (α* ~ 1e-4) all to "0"; those get exponent notation here.
 */
function tickLabels(u, splits, axisIdx, space, incr) {
  const mag = Math.max(...splits.map((v) => Math.abs(v)));
  const step = Math.abs(incr) || mag || 1;
  if (mag !== 0 && (mag < 1e-2 || mag >= 1e6)) {
    const digits = decimalsOf(step / 10 ** Math.floor(Math.log10(mag)));
    return splits.map((v) => (v === 0 ? '0' : v.toExponential(digits)));
  }
  const decimals = decimalsOf(step);
  return splits.map((v) => v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals }));
}

/** Decimal places that write `x` exactly (at most 6): 2.5 → 1, 0.25 → 2, 5 → 0. */
function decimalsOf(x) {
  let d = 0;
  while (d < 6 && Math.abs(x * 10 ** d - Math.round(x * 10 ** d)) > 1e-6 * 10 ** d) d++;
  return d;
}

/** Shortest readable form of a latest value: tiny (α*) and large (tokens/s) numbers alike. */
function shortNumber(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

class Chart {
  /** `secondary`: series (by name) drawn against a right-hand axis, for values of another magnitude. */
  /** `style(name)`: extra uPlot series options, e.g. to keep a series visible under one it often equals. */
  constructor(id, { time = true, xLabel = '', yLabel = '', points = false, secondary = null, y2Label = '', style = null } = {}) {
    this.panel = $(id);
    this.el = this.panel.querySelector('.plot');
    this.latest = this.panel.querySelector('.latest');
    this.table = new SeriesTable();
    this.opts = { time, xLabel, yLabel, points, secondary, y2Label, style };
    this.plot = null;
    this.seriesKey = '';
    this.dirty = false;
  }
  reset() {
    this.table.reset();
    this.dirty = true;
  }
  add(x, values) {
    if (this.table.add(x, values)) this.dirty = true;
  }
  draw() {
    if (!this.dirty) return;
    this.dirty = false;
    const names = [...this.table.cols.keys()];
    this.panel.dataset.points = String(this.table.xs.length);
    this.panel.dataset.series = names.join(',');
    // Points per series and each series' newest value: a series drawn exactly under another (before =
    // after shaping when α* = 0) or too small for its axis is still readable here.
    const counts = {};
    const latest = {};
    for (const [name, col] of this.table.cols) {
      counts[name] = col.reduce((n, v) => n + (v === null ? 0 : 1), 0);
      const last = col.findLast((v) => v !== null);
      if (last !== undefined) latest[name] = last;
    }
    this.panel.dataset.seriesPoints = JSON.stringify(counts);
    this.panel.dataset.latest = JSON.stringify(latest);
    const text = Object.entries(latest).map(([name, v]) => `${name} ${shortNumber(v)}`);
    if (this.latest) this.latest.textContent = text.length ? `latest: ${text.join(' · ')}` : '';
    const data = [this.table.xs, ...this.table.cols.values()];
    const key = names.join('\u0000');
    if (this.plot && key === this.seriesKey) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.plot = null;
    this.seriesKey = key;
    if (this.table.xs.length === 0) return;
    const width = Math.max(300, this.el.clientWidth || this.panel.clientWidth - 16);
    const onRight = (name) => Boolean(this.opts.secondary && this.opts.secondary(name));
    // Index axes (window, step, round) tick at whole numbers only.
    const xAxis = this.opts.time ? { label: this.opts.xLabel } : { label: this.opts.xLabel, incrs: INTEGER_INCRS, values: tickLabels };
    const axes = [xAxis, { label: this.opts.yLabel, values: tickLabels }];
    const scales = { x: { time: this.opts.time }, y: { range: fitRange } };
    if (names.some(onRight)) {
      axes.push({ scale: 'y2', side: 1, grid: { show: false }, label: this.opts.y2Label, values: tickLabels });
      scales.y2 = { range: fitRange };
    }
    const opts = {
      width,
      height: 200,
      scales,
      axes,
      series: [
        {},
        ...names.map((name, i) => ({
          label: name,
          scale: onRight(name) ? 'y2' : 'y',
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: this.opts.points || this.table.xs.length < 40 },
          ...(this.opts.style ? this.opts.style(name) : {}),
        })),
      ],
      legend: { live: false },
      // Scale ranges as data attributes (data-y-min, data-y-max, …): what a test can check the axes against.
      hooks: {
        setScale: [
          (u, key) => {
            this.panel.dataset[`${key}Min`] = String(u.scales[key].min);
            this.panel.dataset[`${key}Max`] = String(u.scales[key].max);
          },
        ],
      },
    };
    this.plot = new uPlot(opts, data, this.el);
  }
  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(300, this.el.clientWidth), height: 200 });
  }
}

const charts = {
  throughput: new Chart('chart-throughput', { yLabel: 'records/s', secondary: (n) => n.endsWith('tokens/s'), y2Label: 'tokens/s' }),
  lag: new Chart('chart-lag', { yLabel: 'records' }),
  alpha: new Chart('chart-alpha', { time: false, xLabel: 'window', yLabel: 'α*' }),
  // 'before' is drawn wide and pale under a thin 'after': with α* = 0 the two are equal and coincide.
  lengthDiff: new Chart('chart-lengthdiff', {
    time: false,
    xLabel: 'window',
    yLabel: 'chars',
    style: (name) => (name.startsWith('before') ? { width: 6, stroke: 'rgba(31, 119, 180, 0.45)', points: { show: true, size: 12 } } : {}),
  }),
  margin: new Chart('chart-margin', { time: false, xLabel: 'step', yLabel: 'reward margin' }),
  loss: new Chart('chart-loss', { time: false, xLabel: 'step', yLabel: 'loss' }),
  accuracy: new Chart('chart-accuracy', { time: false, xLabel: 'step', yLabel: 'accuracy' }),
  eval: new Chart('chart-eval', { time: false, xLabel: 'round', points: true, secondary: (n) => /length/i.test(n), y2Label: 'length' }),
};

const state = { events: 0, round: undefined, policy: undefined, reference: undefined };

function resetState() {
  for (const c of Object.values(charts)) c.reset();
  Object.assign(state, { events: 0, round: undefined, policy: undefined, reference: undefined });
  for (const id of ['checkpoints', 'evaluations', 'event-log', 'health', 'role-time', 'staleness', 'engine-switches']) $(id).tBodies[0].replaceChildren();
  $('alerts').replaceChildren();
  checkpointRows.clear();
  gateDecisions.clear();
  renderFacts();
}

/** The loop's current policy and the reference it scores against, from the newest policy seen. */
function setVersions(policy, reference) {
  if (policy === undefined || policy === null) return;
  if (typeof policy === 'number' && typeof state.policy === 'number' && policy < state.policy) return;
  state.policy = policy;
  if (reference !== undefined && reference !== null) state.reference = reference;
}

function renderFacts() {
  $('round').textContent = str(state.round);
  $('policy-version').textContent = str(state.policy);
  $('reference-version').textContent = str(state.reference);
  $('event-count').textContent = String(state.events);
  document.body.dataset.round = str(state.round);
  document.body.dataset.policyVersion = str(state.policy);
  document.body.dataset.referenceVersion = str(state.reference);
}

function prependRow(tableId, cells, className) {
  const tr = document.createElement('tr');
  if (className) tr.className = className;
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.append(td);
  }
  const body = $(tableId).tBodies[0];
  body.prepend(tr);
  while (body.rows.length > MAX_TABLE_ROWS) body.deleteRow(body.rows.length - 1);
}

/** One timeline row per checkpoint version (it is announced on metrics and recorded on checkpoints). */
const checkpointRows = new Map();
function upsertCheckpoint(version, cells) {
  const existing = version === undefined ? undefined : checkpointRows.get(String(version));
  if (existing && existing.isConnected) {
    // Keep what is known: the checkpoints record has fields the announcement lacks and vice versa.
    cells.forEach((c, i) => {
      if (c !== '–' && c !== '{}') existing.cells[i].textContent = c;
    });
    return;
  }
  prependRow('checkpoints', cells);
  if (version !== undefined) checkpointRows.set(String(version), $('checkpoints').tBodies[0].rows[0]);
  markGate(version);
}

/** The health gate's decision per version: a promoted/rejected mark on its timeline row (whichever arrives first). */
const gateDecisions = new Map();
function markGate(version) {
  const row = version === undefined ? undefined : checkpointRows.get(String(version));
  const promoted = gateDecisions.get(String(version));
  if (!row || !row.isConnected || promoted === undefined) return;
  row.className = promoted ? 'promoted' : 'rejected';
  row.cells[row.cells.length - 1].textContent = promoted ? 'promoted' : 'rejected';
}

function fixed(v, digits = 3) {
  return v === undefined ? '–' : v.toFixed(digits);
}

function alertLine(message) {
  const li = document.createElement('li');
  li.textContent = message;
  $('alerts').prepend(li);
}

function timeText(ms) {
  return typeof ms === 'number' ? new Date(ms).toLocaleTimeString() : '–';
}

function otherFields(e, skip = IDENTITY_FIELDS) {
  const rest = {};
  for (const [k, v] of Object.entries(e)) if (!skip.has(k)) rest[k] = v;
  const s = JSON.stringify(rest);
  return s.length > 400 ? `${s.slice(0, 400)}…` : s;
}

/** Numeric fields of an event as chart series (e.g. an evaluation's win rates). */
function numericFields(e, skip) {
  const out = {};
  for (const [k, v] of Object.entries(e)) if (!skip.has(k) && typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  return out;
}

const EVAL_SKIP = new Set([...IDENTITY_FIELDS, 'version', 'policyVersion', 'referenceVersion', 'n', 'count']);

/** Folds one event into the dashboard; returns whether some chart or table used it. */
function apply(e) {
  const t = (e.time ?? Date.now()) / 1000;
  let used = false;

  // Rounds and versions only move forward; taking the newest keeps the header right although the
  // metrics and checkpoints topics are read independently and may interleave either way.
  if (typeof e.round === 'number' && !(e.round < state.round)) state.round = e.round;
  setVersions(field(e, 'round/start', 'policyVersion'), field(e, 'round/start', 'referenceVersion'));

  if (e.stage === 'bus' && e.type === 'throughput' && e.rates && typeof e.rates === 'object') {
    charts.throughput.add(t, e.rates);
    return true;
  }
  if (e.stage === 'bus' && e.type === 'lag' && e.lag && typeof e.lag === 'object') {
    charts.lag.add(t, e.lag);
    return true;
  }

  // A checkpoint record (checkpoints topic, made an event by the monitor) or its announcement on
  // the metrics topic: the loop now samples with it and scores against its parent.
  const announced = field(e, 'checkpoint/published', 'version');
  if (e.type === 'checkpoint' || announced !== undefined) {
    const version = announced ?? num(e, 'version');
    const parent = field(e, 'checkpoint/published', 'parentVersion') ?? num(e, 'parentVersion');
    const reference = field(e, 'checkpoint/published', 'referenceVersion') ?? num(e, 'referenceVersion');
    setVersions(version, parent);
    const metrics = e.metrics && typeof e.metrics === 'object' ? JSON.stringify(e.metrics) : otherFields(e, new Set([...IDENTITY_FIELDS, 'version', 'parentVersion', 'referenceVersion', 'sha256', 'key', 'location', 'createdAt']));
    upsertCheckpoint(version, [timeText(e.time), str(version), str(parent), str(reference), str(e.round), typeof e.sha256 === 'string' ? e.sha256.slice(0, 16) : '–', metrics.length > 300 ? `${metrics.slice(0, 300)}…` : metrics, '–']);
    return true;
  }

  // The health of a new version and the gate's decision (src/stages/health.ts).
  const checked = field(e, 'health/version', 'version');
  if (checked !== undefined) {
    const promoted = flag(e, 'health/version', 'promoted');
    const change = field(e, 'health/version', 'lengthChange');
    const length = field(e, 'health/version', 'probeLength');
    prependRow(
      'health',
      [
        timeText(e.time),
        str(checked),
        str(field(e, 'health/version', 'parentVersion')),
        promoted === undefined ? '–' : promoted ? 'promoted' : 'rejected',
        fixed(field(e, 'health/version', 'roundAccuracy')),
        `${fixed(field(e, 'health/version', 'cumulativeAccuracy'))} (${fixed(field(e, 'health/version', 'previousCumulativeAccuracy'))})`,
        fixed(field(e, 'health/version', 'rankingTau')),
        length === undefined ? '–' : `${length.toFixed(1)} (${change === undefined ? '–' : `${change >= 0 ? '+' : ''}${(100 * change).toFixed(1)} %`})`,
        fixed(field(e, 'health/version', 'kl')),
      ],
      promoted === undefined ? '' : promoted ? 'promoted' : 'rejected',
    );
    if (promoted !== undefined) gateDecisions.set(String(checked), promoted);
    markGate(checked);
    return true;
  }
  const rejected = field(e, 'health/gate-failed', 'version');
  if (rejected !== undefined) {
    const from = field(e, 'health/gate-failed', 'parentVersion');
    alertLine(`health gate failed: v${rejected} rejected, samplers and scorers stay on v${str(from)} — ${text(e, 'health/gate-failed', 'reasons') ?? ''}`);
    return true;
  }

  // dice serve: each role's busy and waiting time per round, and the staleness of each round's pairs.
  const busy = field(e, 'serve/role-time', 'busySeconds');
  if (busy !== undefined) {
    const utilisation = field(e, 'serve/role-time', 'utilisation');
    prependRow('role-time', [
      timeText(e.time),
      str(e.round),
      text(e, 'serve/role-time', 'role') ?? '–',
      fixed(busy, 2),
      fixed(field(e, 'serve/role-time', 'waitingSeconds'), 2),
      utilisation === undefined ? '–' : `${(100 * utilisation).toFixed(0)} %`,
    ]);
    return true;
  }
  const switched = field(e, 'serve/engine-switch', 'toVersion');
  if (switched !== undefined) {
    const from = field(e, 'serve/engine-switch', 'fromVersion');
    prependRow('engine-switches', [
      timeText(e.time),
      str(e.round),
      text(e, 'serve/engine-switch', 'role') ?? '–',
      `${from === undefined ? '–' : `v${from}`} → v${switched}`,
      fixed(field(e, 'serve/engine-switch', 'seconds'), 2),
    ]);
    return true;
  }
  const histogram = text(e, 'train/staleness', 'histogram');
  if (histogram !== undefined) {
    prependRow('staleness', [
      timeText(e.time),
      str(e.round),
      str(field(e, 'train/staleness', 'policyVersion')),
      histogram,
      fixed(field(e, 'train/staleness', 'meanStaleness'), 2),
      str(field(e, 'train/staleness', 'maxStaleness')),
      str(field(e, 'train/staleness', 'dropped')),
    ]);
    return true;
  }

  // Evaluations come from outside the loop (the testbed, or a client of the monitor's publish()).
  if (e.stage === 'eval') {
    const values = numericFields(e, EVAL_SKIP);
    charts.eval.add(typeof e.round === 'number' ? e.round : charts.eval.table.nextIndex(), values);
    prependRow('evaluations', [timeText(e.time), str(e.round), str(e.version ?? e.policyVersion), JSON.stringify(values)]);
    return true;
  }

  const tokenRate = field(e, 'sample/group', 'tokensPerSecond');
  if (tokenRate !== undefined) {
    charts.throughput.add(t, { 'sample tokens/s': tokenRate });
    used = true;
  }
  const lag = field(e, 'sample/group', 'lag') ?? field(e, 'score/group', 'lag');
  if (lag !== undefined) {
    charts.lag.add(t, { [e.stage]: lag });
    used = true;
  }

  const alpha = field(e, 'alpha/window', 'alpha');
  const before = field(e, 'alpha/window', 'lengthDiffBefore');
  const after = field(e, 'alpha/window', 'lengthDiffAfter');
  if (alpha !== undefined || before !== undefined || after !== undefined) {
    const x = charts.alpha.table.nextIndex();
    if (alpha !== undefined) charts.alpha.add(x, { 'α*': alpha });
    charts.lengthDiff.add(x, { 'before shaping (α=0)': before, 'after shaping (α*)': after });
    used = true;
  }

  const loss = field(e, 'train/step', 'loss');
  const accuracy = field(e, 'train/step', 'rewardAccuracy');
  const margin = field(e, 'train/step', 'margin');
  if (loss !== undefined || accuracy !== undefined || margin !== undefined) {
    // `step` restarts every round; the run-wide step is the x axis, so the three charts line up.
    const step = field(e, 'train/step', 'globalStep') ?? Math.max(charts.loss.table.nextIndex(), charts.accuracy.table.nextIndex(), charts.margin.table.nextIndex());
    if (loss !== undefined) charts.loss.add(step, { loss });
    if (accuracy !== undefined) charts.accuracy.add(step, { accuracy });
    if (margin !== undefined) charts.margin.add(step, { [e.stage]: margin });
    used = true;
  }
  return used || `${e.stage}/${e.type}` === 'round/start';
}

function handleEvents(events) {
  for (const e of events) {
    if (!e || typeof e !== 'object' || typeof e.stage !== 'string' || typeof e.type !== 'string') continue;
    state.events++;
    const used = apply(e);
    // The monitor's own periodic bus observations are charted, not logged: they would drown the log.
    if (e.stage !== 'bus') prependRow('event-log', [timeText(e.time), e.stage, e.type, str(e.round), otherFields(e)], used ? '' : 'unknown');
  }
  const log = $('event-log').tBodies[0];
  while (log.rows.length > MAX_LOG_ROWS) log.deleteRow(log.rows.length - 1);
  renderFacts();
}

function setStatus(status, text) {
  document.body.dataset.status = status;
  $('status').textContent = text ?? status;
}

// Reconnect with capped exponential backoff and jitter; a fresh `hello` resets the page, since the
// server then sends its whole history again.
let attempt = 0;
function connect() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/ws`);
  ws.onmessage = (msg) => {
    let m;
    try {
      m = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (m.kind === 'hello') {
      attempt = 0;
      resetState();
      $('namespace').textContent = str(m.namespace);
      setStatus('syncing', `syncing ${m.historyEvents} events`);
    } else if (m.kind === 'events' && Array.isArray(m.events)) {
      handleEvents(m.events);
    } else if (m.kind === 'live') {
      setStatus('live');
    }
  };
  ws.onclose = (ev) => {
    if (ev.code === 4401 || ev.code === 4403) {
      setStatus('unauthorized', ev.code === 4401 ? 'token refused: reload with ?token=…' : 'cross-origin connection refused');
      return;
    }
    const delay = Math.min(10_000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    attempt++;
    setStatus('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  };
}

setInterval(() => {
  for (const c of Object.values(charts)) c.draw();
}, REDRAW_MS);
window.addEventListener('resize', () => {
  for (const c of Object.values(charts)) c.resize();
});
connect();

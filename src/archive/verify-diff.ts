/**
 * The first place two decoded records differ, as a field path (`responses[2].tokenIds[5]`) and the
 * two values there. Numbers compare bit for bit (Object.is: a replay is either exact or it is not;
 * NaN equals NaN, 0 and −0 differ), typed arrays element by element.
 */
export interface FieldDifference {
  /** '' when the records differ as a whole (e.g. one is missing). */
  path: string;
  recorded: unknown;
  rederived: unknown;
}

type Indexable = ArrayLike<unknown>;

function isList(v: unknown): v is Indexable {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !isList(v);
}

export function firstDifference(recorded: unknown, rederived: unknown, path = ''): FieldDifference | null {
  if (isList(recorded) && isList(rederived)) {
    const n = Math.min(recorded.length, rederived.length);
    for (let i = 0; i < n; i++) {
      const d = firstDifference(recorded[i], rederived[i], `${path}[${i}]`);
      if (d) return d;
    }
    if (recorded.length !== rederived.length) return { path: `${path}.length`, recorded: recorded.length, rederived: rederived.length };
    return null;
  }
  if (isObject(recorded) && isObject(rederived)) {
    const keys = [...Object.keys(recorded), ...Object.keys(rederived).filter((k) => !(k in recorded))];
    for (const k of keys) {
      const d = firstDifference(recorded[k], rederived[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return null;
  }
  if (Object.is(recorded, rederived)) return null;
  return { path, recorded, rederived };
}

/** A value made fit for a report: typed arrays as arrays, long strings and lists shortened, bigints as strings. */
export function reportValue(v: unknown, maxItems = 16, maxChars = 200): unknown {
  if (typeof v === 'string') return v.length > maxChars ? `${v.slice(0, maxChars)}… (${v.length} chars)` : v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  if (isList(v)) {
    const items = Array.from(v as ArrayLike<unknown>).slice(0, maxItems).map((x) => reportValue(x, maxItems, maxChars));
    return v.length > maxItems ? [...items, `… (${v.length} items)`] : items;
  }
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reportValue(x, maxItems, maxChars)]));
  return v;
}

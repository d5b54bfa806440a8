// Write weir plugins in JavaScript.
//
// A filter exports `init` and `filter`; `filterBatch` does the batch work:
//
//   import { filterBatch } from "./weir.js";
//   export function init(config) {}
//   export function filter(batch) {
//     return filterBatch(batch, (event) => event.get("level") === "error");
//   }
//
// Events are read lazily from weir's packed batch (wit/LAYOUT.md):
// `event.get(key)` decodes only that field.

const utf8 = new TextDecoder();
const HEADER = 12;

function key(view, bytes, pos) {
  const n = view.getUint16(pos, true);
  return [bytes.subarray(pos + 2, pos + 2 + n), pos + 2 + n];
}

function skip(view, pos) {
  const tag = view.getUint8(pos);
  if (tag <= 2) return pos + 1;
  if (tag <= 4) return pos + 9;
  if (tag <= 8) return pos + 5 + view.getUint32(pos + 1, true);
  throw new Error(`unknown tag ${tag}`);
}

function value(view, bytes, pos) {
  const tag = view.getUint8(pos);
  const p = pos + 1;
  switch (tag) {
    case 0: return null;
    case 1: return false;
    case 2: return true;
    case 3: return view.getBigInt64(p, true);
    case 4: return view.getFloat64(p, true);
    case 5: return utf8.decode(bytes.subarray(p + 4, p + 4 + view.getUint32(p, true)));
    case 6: return bytes.slice(p + 4, p + 4 + view.getUint32(p, true));
    case 7: {
      const out = [];
      let q = p + 8;
      for (let i = view.getUint32(p + 4, true); i > 0; i--) {
        out.push(value(view, bytes, q));
        q = skip(view, q);
      }
      return out;
    }
    case 8: {
      const out = {};
      let q = p + 8;
      for (let i = view.getUint32(p + 4, true); i > 0; i--) {
        const [k, next] = key(view, bytes, q);
        out[utf8.decode(k)] = value(view, bytes, next);
        q = skip(view, next);
      }
      return out;
    }
    default: throw new Error(`unknown tag ${tag}`);
  }
}

const encoder = new TextEncoder();

/** One event of a batch. */
export class Event {
  constructor(view, bytes, start) {
    this.view = view;
    this.bytes = bytes;
    this.start = start;
  }
  get kind() { return this.view.getUint8(this.start) === 0 ? "log" : "metric"; }
  get timestamp() { return this.view.getBigInt64(this.start + 1, true); }
  /** A top-level field (string, BigInt, number, boolean, null, array, object). */
  get(name) {
    if (this.view.getUint8(this.start) !== 0) return undefined;
    const want = encoder.encode(name);
    let pos = this.start + 13;
    for (let i = this.view.getUint32(this.start + 9, true); i > 0; i--) {
      const [k, next] = key(this.view, this.bytes, pos);
      if (k.length === want.length && k.every((b, j) => b === want[j])) {
        return value(this.view, this.bytes, next);
      }
      pos = skip(this.view, next);
    }
    return undefined;
  }
}

/** The events of a packed batch, in order. */
export function* events(batch) {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  if (utf8.decode(batch.subarray(0, 4)) !== "WEIR" || view.getUint16(4, true) !== 1) {
    throw new Error("not a weir batch of layout version 1");
  }
  let pos = HEADER;
  for (let i = view.getUint32(8, true); i > 0; i--) {
    const n = view.getUint32(pos, true);
    if (pos + 4 + n > batch.byteLength) throw new Error("truncated event");
    yield new Event(view, batch, pos + 4);
    pos += 4 + n;
  }
}

/** A filter's verdict: `keep(event)` per event; a throw fails that event only. */
export function filterBatch(batch, keep) {
  const all = [...events(batch)];
  const bits = new Uint8Array((all.length + 7) >> 3);
  const errors = [];
  all.forEach((event, i) => {
    try {
      if (keep(event)) bits[i >> 3] |= 1 << (i & 7);
    } catch (e) {
      errors.push({ index: i, message: String(e && e.message ? e.message : e) });
    }
  });
  return { keep: bits, errors };
}

function encodeValue(v, out) {
  if (v === null || v === undefined) out.push(0);
  else if (typeof v === "boolean") out.push(v ? 2 : 1);
  else if (typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v))) {
    const b = new DataView(new ArrayBuffer(8));
    b.setBigInt64(0, BigInt(v), true);
    out.push(3, ...new Uint8Array(b.buffer));
  } else if (typeof v === "number") {
    const b = new DataView(new ArrayBuffer(8));
    b.setFloat64(0, v, true);
    out.push(4, ...new Uint8Array(b.buffer));
  } else if (typeof v === "string") {
    const raw = encoder.encode(v);
    out.push(5, ...u32(raw.length), ...raw);
  } else {
    const inner = [];
    if (Array.isArray(v)) v.forEach((x) => encodeValue(x, inner));
    else encodeFields(v, inner);
    const count = Array.isArray(v) ? v.length : Object.keys(v).length;
    out.push(Array.isArray(v) ? 7 : 8, ...u32(inner.length + 4), ...u32(count), ...inner);
  }
}

function u32(n) {
  return [n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255];
}

function encodeFields(fields, out) {
  for (const [k, v] of Object.entries(fields)) {
    const key = encoder.encode(k);
    out.push(key.length & 255, key.length >> 8, ...key);
    encodeValue(v, out);
  }
}

/** A packed batch of log events from plain objects, for tests. */
export function encode(logs) {
  const out = [...encoder.encode("WEIR"), 1, 0, 0, 0, ...u32(logs.length)];
  for (const fields of logs) {
    const body = [0, 0, 0, 0, 0, 0, 0, 0, 0, ...u32(Object.keys(fields).length)];
    encodeFields(fields, body);
    out.push(...u32(body.length), ...body);
  }
  return new Uint8Array(out);
}

// Keeps events whose `level` is `error` (or the configured `level`).
import { filterBatch } from "./weir.js";

let level = "error";

export function init(config) {
  for (const [k, v] of config) {
    if (k === "level") level = v;
    else throw `unknown setting \`${k}\` (known: level)`;
  }
}

export function filter(batch) {
  return filterBatch(batch, (event) => event.get("level") === level);
}

#!/usr/bin/env node
// Ranks the numeric assertions that came closest to their bounds in one or more margin-audit logs
// (see README.md beside this file). Usage: node scripts/margin-audit/report.mjs [--min 0.5] LOG...
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  options: { min: { type: "string", default: "0.5" }, help: { type: "boolean", short: "h" } },
  allowPositionals: true,
});
if (values.help || positionals.length === 0) {
  console.log("usage: node scripts/margin-audit/report.mjs [--min 0.5] LOG.jsonl...");
  console.log("Lists call sites whose values varied between calls and came within --min of their bound");
  console.log("(value/bound for less-than and close-to, bound/value for greater-than; 1 is the bound).");
  process.exit(values.help ? 0 : 2);
}
/** A bad argument or log: one line naming it, exit status 2 (no stack trace). */
function fail(message) {
  console.error(`margin-audit report: ${message}`);
  process.exit(2);
}
const min = Number(values.min);
if (!(min >= 0)) fail(`--min: expected a number >= 0, got ${JSON.stringify(values.min)}`);

/** How near a call came to failing: 0 far, 1 at the bound (undefined where the ratio means nothing). */
function nearness({ matcher, value, bound }) {
  if (matcher === "lt" || matcher === "le" || matcher === "close")
    return bound > 0 && value >= 0 ? value / bound : undefined;
  return value > 0 && bound > 0 ? bound / value : undefined;
}

const sites = new Map();
for (const file of positionals) {
  let lines;
  try {
    lines = readFileSync(file, "utf8").split("\n");
  } catch (err) {
    fail(`cannot read ${file}: ${err.message}`);
  }
  for (const [i, text] of lines.entries()) {
    if (!text) continue;
    let call;
    try {
      call = JSON.parse(text);
    } catch {
      fail(`${file}:${i + 1}: not a JSON line`);
    }
    if (call.negated) continue;
    const near = nearness(call);
    if (near === undefined) continue;
    const key = `${call.site} ${call.matcher}`;
    const list = sites.get(key) ?? [];
    list.push(near);
    sites.set(key, list);
  }
}

const rows = [];
for (const [key, list] of sites) {
  if (new Set(list).size < 2) continue; // the same value every time: nothing random to fail on
  const mean = list.reduce((s, x) => s + x, 0) / list.length;
  const sd = Math.sqrt(list.reduce((s, x) => s + (x - mean) ** 2, 0) / (list.length - 1));
  const max = Math.max(...list);
  if (max >= min)
    rows.push({ key, calls: list.length, mean, sd, max, sdToBound: sd > 0 ? (1 - mean) / sd : Infinity });
}
rows.sort((a, b) => b.max - a.max);
console.log("max    mean   sd     sd-to-bound  calls  site matcher");
for (const r of rows) {
  const f = (x) => x.toFixed(3).padEnd(6);
  console.log(
    `${f(r.max)} ${f(r.mean)} ${f(r.sd)} ${r.sdToBound.toFixed(1).padStart(11)}  ${String(r.calls).padStart(5)}  ${r.key}`,
  );
}
console.log(
  `\n${rows.length} varying call sites at or above ${min}. Exact-order checks (a <= b by construction) show 1.000;`,
);
console.log("what matters are statistical bounds near 1, or with few standard deviations to spare.");

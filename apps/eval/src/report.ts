import Table from "cli-table3";

/** Everything one evaluation run found; the JSON report is this object. */
export interface EvalReport {
  model: string;
  method: string;
  groupsize: number;
  levels: string;
  /** Backend of the @trirun/layers linear layers (cpu or cuda). */
  backend: string;
  runtime: string;
  checkpoint?: { path: string; bytes: number };
  /** seqLen: the longest row, minSeqLen the shortest, tokens all of them (rows may differ in length). */
  calibration?: { source: string; sequences: number; seqLen: number; minSeqLen?: number; tokens?: number };
  data: {
    source: string;
    /** True when the sequences were sampled from the unquantized model (no tokenizer / no data given). */
    sampledFromModel: boolean;
    seed?: number;
    windows: number;
    windowLength: number;
  };
  fp: { perplexity: number; nll: number; tokens: number };
  quantized: {
    perplexity: number;
    nll: number;
    kl_mean: number;
    kl_p99: number;
    top1_agreement: number;
    positions: number;
  };
  /** Other quantizers evaluated on the same windows, for comparison. */
  baselines?: {
    method: string;
    perplexity: number;
    kl_mean: number;
    kl_p99: number;
    top1_agreement: number;
  }[];
  tasks?: {
    file: string;
    items: number;
    fp: { acc: number; acc_norm: number };
    quantized: { acc: number; acc_norm: number };
  };
  weights: { fpLinearBytes: number; quantizedLinearBytes: number };
  seconds: { quantize?: number; evaluate: number };
  notes: string[];
  createdAt: string;
}

/** A markdown table cell: pipes escaped. */
const cell = (text: string) => text.replaceAll("|", "\\|");
const f = (x: number, digits = 4) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(3)} MiB`;

function baselineRows(r: EvalReport): string[][] {
  return (r.baselines ?? []).map((b) => [
    b.method,
    f(b.perplexity),
    f(b.kl_mean),
    f(b.kl_p99),
    pct(b.top1_agreement),
  ]);
}

const BASELINE_HEAD = ["method", "perplexity", "KL mean", "KL p99", "top-1 agreement"];

function rows(r: EvalReport): [string, string, string][] {
  const out: [string, string, string][] = [
    ["perplexity", f(r.fp.perplexity), f(r.quantized.perplexity)],
    ["NLL (nats/token)", f(r.fp.nll), f(r.quantized.nll)],
    ["KL(fp || q) mean", "-", f(r.quantized.kl_mean)],
    ["KL(fp || q) p99", "-", f(r.quantized.kl_p99)],
    ["top-1 agreement", "-", pct(r.quantized.top1_agreement)],
    ["linear weights", mib(r.weights.fpLinearBytes), mib(r.weights.quantizedLinearBytes)],
  ];
  if (r.tasks) {
    out.push(["task acc", f(r.tasks.fp.acc), f(r.tasks.quantized.acc)]);
    out.push(["task acc_norm", f(r.tasks.fp.acc_norm), f(r.tasks.quantized.acc_norm)]);
  }
  return out;
}

function describeData(r: EvalReport): string {
  const d = r.data;
  const what = d.sampledFromModel
    ? `${d.windows} sequences sampled from the unquantized model (temperature 1, seed ${d.seed}), because no evaluation data was given`
    : `${d.windows} windows from ${d.source}`;
  return `${what}; window length ${d.windowLength}`;
}

function header(r: EvalReport): string[] {
  const lines = [
    `model: ${r.model}`,
    `method: ${r.method} (${r.levels}), groupsize ${r.groupsize === -1 ? "-1 (one scale per output column)" : r.groupsize}, linear layers on ${r.backend}`,
    `runtime: ${r.runtime}`,
  ];
  if (r.calibration) {
    const c = r.calibration;
    const shortest = c.minSeqLen ?? c.seqLen;
    const shape =
      shortest === c.seqLen
        ? `${c.sequences} x ${c.seqLen} tokens`
        : `${c.sequences} sequences of ${shortest}..${c.seqLen} tokens (${c.tokens ?? "?"} in all)`;
    // A file is named after "from"; a description ("sampled from ...") stands on its own.
    const source = c.source.startsWith("sampled ") ? c.source : `from ${c.source}`;
    lines.push(`calibration: ${shape} ${source}`);
  }
  lines.push(`evaluation data: ${describeData(r)}`);
  if (r.checkpoint) lines.push(`checkpoint: ${r.checkpoint.path} (${mib(r.checkpoint.bytes)})`);
  return lines;
}

/**
 * Colour codes only on a terminal, and never with NO_COLOR set (https://no-color.org): redirected
 * output (files, logs) stays plain text.
 */
export function useColor(stream: { isTTY?: boolean } = process.stdout): boolean {
  return stream.isTTY === true && !process.env.NO_COLOR;
}

/** cli-table3 options: its default style colours the head and borders. */
const tableStyle = (color: boolean) => (color ? {} : { style: { head: [], border: [] } });

/** The report as a terminal table (coloured when `color`, by default when stdout is a terminal). */
export function formatTerminal(r: EvalReport, opts: { color?: boolean } = {}): string {
  const style = tableStyle(opts.color ?? useColor());
  const table = new Table({ head: ["metric", "fp (unquantized)", `quantized (${r.method})`], ...style });
  for (const row of rows(r)) table.push(row);
  const timing = `time: ${r.seconds.quantize !== undefined ? `quantize ${r.seconds.quantize.toFixed(1)} s, ` : ""}evaluate ${r.seconds.evaluate.toFixed(1)} s`;
  const parts = [...header(r), table.toString()];
  if (r.baselines?.length) {
    const t = new Table({ head: BASELINE_HEAD, ...style });
    t.push([
      r.method,
      f(r.quantized.perplexity),
      f(r.quantized.kl_mean),
      f(r.quantized.kl_p99),
      pct(r.quantized.top1_agreement),
    ]);
    for (const row of baselineRows(r)) t.push(row);
    parts.push(t.toString());
  }
  return [...parts, timing, ...r.notes.map((n) => `note: ${n}`)].join("\n");
}

/** The report as markdown. */
export function formatMarkdown(r: EvalReport): string {
  const lines = [
    `# TriRun evaluation: ${r.model}`,
    "",
    ...header(r).map((l) => `- ${l}`),
    "",
    `| metric | fp (unquantized) | quantized (${r.method}) |`,
    "| --- | ---: | ---: |",
    ...rows(r).map((row) => `| ${row.map(cell).join(" | ")} |`),
    ...(r.baselines?.length
      ? [
          "",
          `| ${BASELINE_HEAD.join(" | ")} |`,
          "| --- | ---: | ---: | ---: | ---: |",
          `| ${r.method} | ${f(r.quantized.perplexity)} | ${f(r.quantized.kl_mean)} | ${f(r.quantized.kl_p99)} | ${pct(r.quantized.top1_agreement)} |`,
          ...baselineRows(r).map((row) => `| ${row.join(" | ")} |`),
        ]
      : []),
    "",
    `Times: ${r.seconds.quantize !== undefined ? `quantize ${r.seconds.quantize.toFixed(1)} s, ` : ""}evaluate ${r.seconds.evaluate.toFixed(1)} s. Created ${r.createdAt}.`,
  ];
  if (r.notes.length) lines.push("", ...r.notes.map((n) => `- Note: ${n}`));
  return `${lines.join("\n")}\n`;
}

/**
 * Progress while the benchmark runs: a bar on a terminal, one line per step
 * otherwise (logs of a remote run stay readable).
 */
import { MultiBar, Presets, type SingleBar } from "cli-progress";
import type { ProgressEvent } from "./measure.js";
import { formatRowsTable, rowFigures } from "./report.js";
import type { ResultRow } from "./results.js";

export interface ProgressSink {
  write(text: string): void;
  readonly isTTY?: boolean;
}

export interface ProgressReporter {
  readonly onProgress: (event: ProgressEvent) => void;
  stop(): void;
}

function speedupsLine(rows: readonly ResultRow[], rooflineGbps: number): string {
  return rows
    .map((row) => {
      const { speedup } = rowFigures(row, rooflineGbps);
      const group = row.groupsize === -1 ? "per column" : `g${row.groupsize}`;
      return `${group} ${speedup === null ? "n/a" : `${speedup.toFixed(2)}x`}`;
    })
    .join(", ");
}

/**
 * Reports progress to `sink` (usually stderr) and, after each layer, its rows as a
 * table to `tables` (usually stdout) unless `tables` is undefined.
 */
export function createProgressReporter(
  sink: ProgressSink,
  tables?: (text: string) => void,
): ProgressReporter {
  let rooflineGbps = 0;
  let pending: ResultRow[] = [];
  let multibar: MultiBar | undefined;
  let bar: SingleBar | undefined;
  const flushTable = () => {
    if (tables && pending.length > 0) {
      const text = formatRowsTable(pending, rooflineGbps);
      if (multibar) multibar.log(`${text}\n`);
      else tables(`${text}\n`);
    }
    pending = [];
  };
  const onProgress = (event: ProgressEvent) => {
    switch (event.kind) {
      case "roofline":
        rooflineGbps = event.roofline.gbps;
        sink.write(
          `copy roofline: ${(event.roofline.gbps / 1000).toFixed(3)} TB/s (read + write, ${(event.roofline.bufferBytes / 2 ** 20).toFixed(0)} MiB buffers)\n`,
        );
        break;
      case "layer":
        flushTable();
        if (!multibar)
          sink.write(`${event.model} ${event.layer} (k=${event.k}, n=${event.n}): allocating and filling\n`);
        break;
      case "rows": {
        pending.push(...event.rows);
        const first = event.rows[0];
        const label = first ? `${first.model} ${first.layer} m=${first.m}` : "";
        if (sink.isTTY) {
          if (!multibar) {
            multibar = new MultiBar(
              { format: " {bar} {value}/{total} | {label}", hideCursor: true, clearOnComplete: true },
              Presets.shades_classic,
            );
            bar = multibar.create(event.total, 0, { label });
          }
          bar?.update(event.done, { label: `${label}: ${speedupsLine(event.rows, rooflineGbps)}` });
        } else {
          const width = String(event.total).length;
          sink.write(
            `[${String(event.done).padStart(width)}/${event.total}] ${label}: ${speedupsLine(event.rows, rooflineGbps)}\n`,
          );
        }
        break;
      }
    }
  };
  return {
    onProgress,
    stop() {
      flushTable();
      multibar?.stop();
    },
  };
}

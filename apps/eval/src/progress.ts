import { SingleBar } from "cli-progress";

/** A progress line on stderr: a live bar on a terminal, a few plain lines otherwise (CI logs). */
export interface Progress {
  update(done: number, total: number, detail?: string): void;
  stop(): void;
}

export function startProgress(label: string, opts: { quiet?: boolean } = {}): Progress {
  if (opts.quiet) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new SingleBar({
      format: `${label.padEnd(22)} {bar} {value}/{total} {detail}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    });
    let started = false;
    return {
      update(done, total, detail = "") {
        if (!started) {
          bar.start(total, done, { detail });
          started = true;
        } else {
          bar.setTotal(total);
          bar.update(done, { detail });
        }
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let lastQuarter = -1;
  const t0 = Date.now();
  return {
    update(done, total) {
      const quarter = Math.floor((4 * done) / total);
      if (quarter !== lastQuarter) {
        lastQuarter = quarter;
        process.stderr.write(`${label}: ${done}/${total} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
      }
    },
    stop() {},
  };
}

// A small stand-in for the part of vitest's API that GPU test files use
// (describe/it/hooks/expect), so that those files can be bundled with esbuild
// and run on the GPU machine, which has Node.js but no node_modules. Tests
// register in a global registry that the device check runs (check.ts, part
// "tests"). Unsupported matchers fail loudly instead of passing.
import { isDeepStrictEqual } from "node:util";

type Fn = () => unknown;

export interface RegisteredTest {
  file: string;
  name: string;
  fn: Fn;
  skip: boolean;
  /** The test's each-hooks, read when it runs (as vitest does: a hook registered after a test still applies). */
  readonly hooks: { readonly beforeEach: Fn[]; readonly afterEach: Fn[] };
}

interface Suite {
  name: string;
  skip: boolean;
  beforeAll: Fn[];
  afterAll: Fn[];
  beforeEach: Fn[];
  afterEach: Fn[];
  parent: Suite | undefined;
}

export interface Registry {
  file: string;
  tests: RegisteredTest[];
  /** Hooks that run once around the tests of a file, in registration order. */
  beforeAll: { file: string; fn: Fn; skip: boolean }[];
  afterAll: { file: string; fn: Fn; skip: boolean }[];
}

const KEY = Symbol.for("trirun.mini-vitest.registry");

export function registry(): Registry {
  const g = globalThis as unknown as Record<symbol, Registry | undefined>;
  g[KEY] ??= { file: "", tests: [], beforeAll: [], afterAll: [] };
  return g[KEY];
}

let current: Suite | undefined;

function newSuite(name: string, skip: boolean, parent: Suite | undefined): Suite {
  return { name, skip, beforeAll: [], afterAll: [], beforeEach: [], afterEach: [], parent };
}

// Each file's top level, as a nameless suite: its beforeEach/afterEach hooks apply to every test of the file.
const fileRoots = new Map<string, Suite>();
function fileRoot(file: string): Suite {
  let root = fileRoots.get(file);
  if (root === undefined) {
    root = newSuite("", false, undefined);
    fileRoots.set(file, root);
  }
  return root;
}

function suiteChain(): Suite[] {
  const chain: Suite[] = [];
  for (let s = current; s; s = s.parent) chain.unshift(s);
  return chain;
}

function skipped(): boolean {
  return suiteChain().some((s) => s.skip);
}

function runSuite(name: string, body: Fn, skip: boolean): void {
  const suite = newSuite(name, skip, current);
  current = suite;
  try {
    body();
  } finally {
    current = suite.parent;
  }
}

function register(name: string, fn: Fn, skip: boolean): void {
  const reg = registry();
  const chain = [fileRoot(reg.file), ...suiteChain()];
  reg.tests.push({
    file: reg.file,
    name: [...chain.slice(1).map((s) => s.name), name].join(" > "),
    fn,
    skip: skip || skipped(),
    hooks: {
      get beforeEach() {
        return chain.flatMap((s) => s.beforeEach);
      },
      get afterEach() {
        return chain.flatMap((s) => s.afterEach).reverse();
      },
    },
  });
}

type Describe = ((name: string, body: Fn) => void) & {
  skip: (name: string, body: Fn) => void;
  skipIf: (condition: unknown) => (name: string, body: Fn) => void;
  runIf: (condition: unknown) => (name: string, body: Fn) => void;
};

export const describe: Describe = Object.assign((name: string, body: Fn) => runSuite(name, body, false), {
  skip: (name: string, body: Fn) => runSuite(name, body, true),
  skipIf: (condition: unknown) => (name: string, body: Fn) => runSuite(name, body, Boolean(condition)),
  runIf: (condition: unknown) => (name: string, body: Fn) => runSuite(name, body, !condition),
});

type It = ((name: string, fn: Fn, timeout?: number) => void) & {
  skip: (name: string, fn: Fn) => void;
  skipIf: (condition: unknown) => (name: string, fn: Fn, timeout?: number) => void;
  runIf: (condition: unknown) => (name: string, fn: Fn, timeout?: number) => void;
};

export const it: It = Object.assign((name: string, fn: Fn) => register(name, fn, false), {
  skip: (name: string, fn: Fn) => register(name, fn, true),
  skipIf: (condition: unknown) => (name: string, fn: Fn) => register(name, fn, Boolean(condition)),
  runIf: (condition: unknown) => (name: string, fn: Fn) => register(name, fn, !condition),
});
export const test = it;

function hook(kind: "beforeAll" | "afterAll" | "beforeEach" | "afterEach", fn: Fn): void {
  if (current) {
    current[kind].push(fn);
    if (kind === "beforeAll" || kind === "afterAll") {
      registry()[kind].push({ file: registry().file, fn, skip: skipped() });
    }
  } else if (kind === "beforeAll" || kind === "afterAll") {
    registry()[kind].push({ file: registry().file, fn, skip: false });
  } else {
    fileRoot(registry().file)[kind].push(fn);
  }
}
// Callbacks for the running test's failure (vitest's onTestFailed): tests use
// them to print the seed of their random inputs.
let failureHooks: (() => void)[] = [];
export const onTestFailed = (fn: () => void) => {
  failureHooks.push(fn);
};
export const beforeAll = (fn: Fn) => hook("beforeAll", fn);
export const afterAll = (fn: Fn) => hook("afterAll", fn);
export const beforeEach = (fn: Fn) => hook("beforeEach", fn);
export const afterEach = (fn: Fn) => hook("afterEach", fn);

function show(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "function") return v.name || "function";
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 200 ? `${s.slice(0, 200)}...` : s;
  } catch {
    return String(v);
  }
}

function thrownBy(fn: unknown): { threw: boolean; error: unknown } {
  if (typeof fn !== "function") throw new TypeError("expect(...).toThrow: expected a function");
  try {
    fn();
    return { threw: false, error: undefined };
  } catch (error) {
    return { threw: true, error };
  }
}

function matchesError(error: unknown, expected: unknown): boolean {
  if (expected === undefined) return true;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof expected === "string") return message.includes(expected);
  if (expected instanceof RegExp) return expected.test(message);
  if (typeof expected === "function") return error instanceof expected;
  if (expected instanceof Error) return message === expected.message;
  return false;
}

function objectContains(actual: unknown, expected: unknown): boolean {
  if (expected === null || typeof expected !== "object") return isDeepStrictEqual(actual, expected);
  if (actual === null || typeof actual !== "object") return false;
  if (Array.isArray(expected)) {
    return (
      Array.isArray(actual) &&
      actual.length === expected.length &&
      expected.every((e, i) => objectContains(actual[i], e))
    );
  }
  return Object.entries(expected).every(([k, v]) =>
    objectContains((actual as Record<string, unknown>)[k], v),
  );
}

type Matchers = Record<string, (...args: unknown[]) => void>;

function matchers(actual: unknown, negate: boolean, label: string | undefined): Matchers {
  const check = (pass: boolean, what: string) => {
    if (pass === negate)
      throw new Error(`${label ? `${label}: ` : ""}expected ${show(actual)} ${negate ? "not " : ""}${what}`);
  };
  const num = (v: unknown) => v as number;
  return {
    toBe: (e) => check(Object.is(actual, e), `to be ${show(e)}`),
    toEqual: (e) =>
      check(
        isDeepStrictEqual(actual, e) || (objectContains(actual, e) && objectContains(e, actual)),
        `to equal ${show(e)}`,
      ),
    toStrictEqual: (e) => check(isDeepStrictEqual(actual, e), `to strictly equal ${show(e)}`),
    toMatchObject: (e) => check(objectContains(actual, e), `to match ${show(e)}`),
    toBeGreaterThan: (e) => check(num(actual) > num(e), `to be > ${show(e)}`),
    toBeGreaterThanOrEqual: (e) => check(num(actual) >= num(e), `to be >= ${show(e)}`),
    toBeLessThan: (e) => check(num(actual) < num(e), `to be < ${show(e)}`),
    toBeLessThanOrEqual: (e) => check(num(actual) <= num(e), `to be <= ${show(e)}`),
    toBeCloseTo: (e, digits = 2) =>
      check(Math.abs(num(actual) - num(e)) < 10 ** -num(digits) / 2, `to be close to ${show(e)}`),
    toBeInstanceOf: (c) =>
      check(actual instanceof (c as new () => unknown), `to be an instance of ${show(c)}`),
    toBeDefined: () => check(actual !== undefined, "to be defined"),
    toBeUndefined: () => check(actual === undefined, "to be undefined"),
    toBeNull: () => check(actual === null, "to be null"),
    toBeTruthy: () => check(Boolean(actual), "to be truthy"),
    toBeFalsy: () => check(!actual, "to be falsy"),
    toBeNaN: () => check(Number.isNaN(actual), "to be NaN"),
    toMatch: (e) =>
      check(
        typeof actual === "string" && (e instanceof RegExp ? e.test(actual) : actual.includes(String(e))),
        `to match ${show(String(e))}`,
      ),
    toContain: (e) =>
      check(
        (actual as { includes?: (x: unknown) => boolean }).includes?.(e) === true,
        `to contain ${show(e)}`,
      ),
    toHaveLength: (e) => check((actual as { length?: number }).length === e, `to have length ${show(e)}`),
    toThrow: (e) => {
      const { threw, error } = thrownBy(actual);
      check(
        threw && matchesError(error, e),
        `to throw ${e === undefined ? "" : show(e instanceof RegExp ? String(e) : e)} (got ${threw ? show(error instanceof Error ? `${error.name}: ${error.message}` : error) : "no error"})`,
      );
    },
  };
}

function withUnsupported(m: Matchers): Matchers {
  return new Proxy(m, {
    get(target, prop) {
      if (typeof prop === "string" && !(prop in target)) {
        throw new Error(`expect(...).${prop} is not supported by the device test runner`);
      }
      return target[prop as string];
    },
  });
}

type Expectation = Matchers & {
  not: Matchers;
  rejects: Record<string, (...a: unknown[]) => Promise<void>>;
  resolves: Record<string, (...a: unknown[]) => Promise<void>>;
};

export function expect(actual: unknown, label?: string): Expectation {
  const settled = (mode: "rejects" | "resolves") =>
    new Proxy({} as Record<string, (...a: unknown[]) => Promise<void>>, {
      get(_, prop) {
        return async (...args: unknown[]) => {
          let value: unknown;
          let rejected = false;
          try {
            value = await (typeof actual === "function" ? (actual as () => unknown)() : actual);
          } catch (error) {
            value = error;
            rejected = true;
          }
          if (rejected !== (mode === "rejects"))
            throw new Error(`expected the promise to ${mode === "rejects" ? "reject" : "resolve"}`);
          const target =
            prop === "toThrow"
              ? () => {
                  throw value;
                }
              : value;
          withUnsupported(matchers(target, false, label))[prop as string](...args);
        };
      },
    });
  return Object.assign(withUnsupported(matchers(actual, false, label)), {
    not: withUnsupported(matchers(actual, true, label)),
    rejects: settled("rejects"),
    resolves: settled("resolves"),
  }) as Expectation;
}

/** vi is not supported: a GPU test that needs mocks should stay a vitest-only test. */
export const vi = new Proxy(
  {},
  {
    get(_, prop) {
      throw new Error(`vi.${String(prop)} is not supported by the device test runner`);
    },
  },
);

export interface TestOutcome {
  file: string;
  name: string;
  status: "passed" | "failed" | "skipped";
  ms: number;
  error?: string;
}

/** Runs the registered tests of one file (after importing it), with its hooks. */
export async function runRegistered(file: string): Promise<TestOutcome[]> {
  const reg = registry();
  const outcomes: TestOutcome[] = [];
  const tests = reg.tests.filter((t) => t.file === file);
  const anyRuns = tests.some((t) => !t.skip);
  for (const h of reg.beforeAll.filter((h) => h.file === file && !h.skip && anyRuns)) await h.fn();
  for (const t of tests) {
    if (t.skip) {
      outcomes.push({ file, name: t.name, status: "skipped", ms: 0 });
      continue;
    }
    const started = performance.now();
    failureHooks = [];
    try {
      // As vitest: the afterEach hooks run even when a beforeEach hook or the test threw.
      try {
        for (const h of t.hooks.beforeEach) await h();
        await t.fn();
      } finally {
        for (const h of t.hooks.afterEach) await h();
      }
      outcomes.push({ file, name: t.name, status: "passed", ms: performance.now() - started });
    } catch (error) {
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      for (const h of failureHooks) h();
      outcomes.push({ file, name: t.name, status: "failed", ms: performance.now() - started, error: detail });
    }
  }
  for (const h of reg.afterAll.filter((h) => h.file === file && !h.skip && anyRuns).reverse()) await h.fn();
  return outcomes;
}

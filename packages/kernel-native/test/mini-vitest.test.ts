// The vitest stand-in that runs bundled GPU test files on the GPU machine.
import { describe, expect, it } from "vitest";
import * as mv from "../src/device/mini-vitest.js";

describe("mini-vitest", () => {
  it("registers, runs hooks in order, and reports passes, failures and skips", async () => {
    const file = `file-${Math.random()}`;
    mv.registry().file = file;
    const order: string[] = [];
    mv.describe("outer", () => {
      mv.beforeAll(() => {
        order.push("beforeAll");
      });
      mv.beforeEach(() => {
        order.push("beforeEach");
      });
      mv.afterEach(() => {
        order.push("afterEach");
      });
      mv.it("passes", () => {
        order.push("test");
        mv.expect(1 + 1).toBe(2);
        mv.expect({ a: [1, 2], b: "x" }).toEqual({ a: [1, 2], b: "x" });
        mv.expect({ a: 1, b: 2 }).toMatchObject({ a: 1 });
        mv.expect(() => {
          throw new RangeError("k: must be a multiple of 128");
        }).toThrow(/multiple of 128/);
        mv.expect(() => {
          throw new RangeError("x");
        }).toThrow(RangeError);
        mv.expect(3).not.toBe(4);
        mv.expect(0.1 + 0.2).toBeCloseTo(0.3, 5);
        mv.expect([1, 2, 3]).toHaveLength(3);
      });
      mv.it("fails", () => {
        mv.expect(1, "one").toBe(2);
      });
      mv.it("awaits promises", async () => {
        await mv.expect(Promise.reject(new TypeError("bad"))).rejects.toThrow(TypeError);
        await mv.expect(Promise.resolve(5)).resolves.toBe(5);
      });
      mv.it("fails on an unsupported matcher", () => {
        (mv.expect(1) as unknown as Record<string, () => void>).toSatisfyEverything();
      });
      mv.it("fails when toThrow sees no error", () => {
        mv.expect(() => 1).toThrow();
      });
    });
    mv.describe.skipIf(true)("skipped suite", () => {
      mv.it("never runs", () => {
        throw new Error("ran");
      });
    });
    const outcomes = await mv.runRegistered(file);
    expect(outcomes.map((o) => [o.name, o.status])).toEqual([
      ["outer > passes", "passed"],
      ["outer > fails", "failed"],
      ["outer > awaits promises", "passed"],
      ["outer > fails on an unsupported matcher", "failed"],
      ["outer > fails when toThrow sees no error", "failed"],
      ["skipped suite > never runs", "skipped"],
    ]);
    expect(outcomes[1].error).toMatch(/one: expected 1 to be 2/);
    expect(outcomes[3].error).toMatch(/toSatisfyEverything is not supported/);
    expect(order.slice(0, 4)).toEqual(["beforeAll", "beforeEach", "test", "afterEach"]);
  });

  it("runs a file's top-level beforeEach/afterEach around every test of that file only, wherever registered", async () => {
    const file = `file-${Math.random()}`;
    const other = `file-${Math.random()}`;
    const order: string[] = [];
    mv.registry().file = file;
    mv.afterEach(() => {
      order.push("file afterEach");
    });
    mv.it("top-level test", () => {
      order.push("top-level test");
    });
    mv.describe("suite", () => {
      mv.beforeEach(() => {
        order.push("suite beforeEach");
      });
      mv.afterEach(() => {
        order.push("suite afterEach 1");
      });
      mv.afterEach(() => {
        order.push("suite afterEach 2");
      });
      mv.it("nested test", () => {
        order.push("nested test");
      });
    });
    mv.describe("failing setup", () => {
      mv.beforeEach(() => {
        throw new Error("setup failed");
      });
      mv.it("never runs", () => {
        order.push("never");
      });
    });
    // Registered after the tests above, and still around them (as in vitest).
    mv.beforeEach(() => {
      order.push("file beforeEach");
    });
    mv.registry().file = other;
    mv.it("another file's test", () => {
      order.push("other test");
    });
    expect((await mv.runRegistered(file)).map((o) => [o.name, o.status])).toEqual([
      ["top-level test", "passed"],
      ["suite > nested test", "passed"],
      ["failing setup > never runs", "failed"],
    ]);
    // Outer beforeEach before inner; afterEach inner first, and in reverse registration order within a
    // suite (vitest's default "stack" order); after a failed beforeEach the afterEach hooks still run.
    expect(order).toEqual([
      "file beforeEach",
      "top-level test",
      "file afterEach",
      "file beforeEach",
      "suite beforeEach",
      "nested test",
      "suite afterEach 2",
      "suite afterEach 1",
      "file afterEach",
      "file beforeEach",
      "file afterEach",
    ]);
    order.length = 0;
    await mv.runRegistered(other);
    expect(order).toEqual(["other test"]);
  });
});

import { describe, expect, it } from "vitest";
import { Float16Linear, hostTensor, replaceLinear, TriRunLinear } from "../src/index.js";
import { makeRng, randomFloats } from "./helpers.js";

const rng = makeRng();

function f16(inF: number, outF: number, bias = false): Float16Linear {
  return Float16Linear.fromWeights(
    randomFloats(rng, inF * outF, 0.1),
    outF,
    inF,
    bias ? randomFloats(rng, outF) : undefined,
    { backend: "cpu" },
  );
}

class Opaque {
  hidden = f16(8, 8);
}

function makeModel() {
  const shared = f16(64, 64);
  return {
    embed: { weight: new Float32Array(4) },
    layers: [
      {
        attn: { q: f16(64, 64), o: shared },
        mlp: new Map<string, unknown>([
          ["up", f16(64, 172, true)],
          ["down", f16(172, 64)],
        ]),
      },
      {
        attn: { q: f16(64, 64), o: shared },
        mlp: new Map<string, unknown>([
          ["up", f16(64, 172)],
          ["down", f16(172, 64)],
        ]),
      },
    ],
    head: f16(64, 32),
    opaque: new Opaque(),
  };
}

describe("replaceLinear", () => {
  it("replaces matching layers in objects, arrays and Maps and reports their paths", () => {
    const model = makeModel();
    const up0 = model.layers[0].mlp.get("up") as Float16Linear;
    const result = replaceLinear(model, {
      filter: (path) => path !== "head",
      groupsize: 128,
      quantizer: "absmax",
    });
    expect(result.map((r) => r.path)).toEqual([
      "layers.0.attn.q",
      "layers.0.attn.o",
      "layers.0.mlp.up",
      "layers.0.mlp.down",
      "layers.1.attn.q",
      "layers.1.attn.o",
      "layers.1.mlp.up",
      "layers.1.mlp.down",
    ]);
    for (const r of result) expect(r.layer).toBeInstanceOf(TriRunLinear);
    expect(model.layers[0].attn.q).toBe(result[0].layer);
    expect(model.layers[0].mlp.get("up")).toBe(result[2].layer);
    expect(model.layers[1].mlp.get("down")).toBe(result[7].layer);
    // The shared layer becomes one shared TriRunLinear.
    expect(model.layers[0].attn.o).toBe(model.layers[1].attn.o);
    expect(result[1].layer).toBe(result[5].layer);
    // Filtered out, and not entered: class instances other than layers.
    expect(model.head).toBeInstanceOf(Float16Linear);
    expect(model.opaque.hidden).toBeInstanceOf(Float16Linear);
    // The replacement equals quantizing the old layer directly, bias included.
    const up = result[2];
    expect(up.replaced).toBe(up0);
    expect(up.replaced.disposed).toBe(true);
    const direct = TriRunLinear.quantize(up0, "absmax", 128);
    const x = hostTensor([3, 64], randomFloats(rng, 3 * 64));
    expect(Array.from(up.layer.forward(x).data)).toEqual(Array.from(direct.forward(x).data));
    expect(up.layer.bias).toBeDefined();
  });

  it("keeps the replaced layers when asked, and a layer the filter keeps on another path", () => {
    const shared = f16(64, 64);
    const model = { a: shared, b: [shared] };
    const result = replaceLinear(model, { filter: (path) => path === "a" });
    expect(result.map((r) => r.path)).toEqual(["a"]);
    expect(model.b[0]).toBe(shared);
    expect(shared.disposed).toBe(false);
    const kept = replaceLinear({ c: f16(64, 64) }, { keepReplaced: true, groupsize: -1 });
    expect(kept[0].replaced.disposed).toBe(false);
    expect(kept[0].layer.groupsize).toBe(-1);
  });

  it("handles cycles and rejects bad options", () => {
    const model: Record<string, unknown> = { l: f16(8, 8) };
    model.self = model;
    expect(replaceLinear(model).map((r) => r.path)).toEqual(["l"]);
    expect(() => replaceLinear({}, { groupsize: 64 })).toThrow(RangeError);
    expect(() => replaceLinear(null as never)).toThrow(TypeError);
    expect(() => replaceLinear({ l: f16(8, 8) }, { quantizer: "round" as never })).toThrow(TypeError);
  });
});

import { readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bufferSource,
  buildShardIndex,
  CheckpointError,
  type CheckpointErrorCode,
  SAFETENSORS_DTYPES,
  type SafetensorsDType,
  SafetensorsReader,
  serializeSafetensors,
  type TensorToWrite,
} from "../src/index.js";
import {
  openCheckpoint,
  openSafetensorsFile,
  SafetensorsFileWriter,
  writeSafetensorsFile,
} from "../src/node/index.js";
import { rawSafetensors, tempDir } from "./helpers.js";

const dir = tempDir();

function sampleTensors(): TensorToWrite[] {
  return [
    {
      name: "a.f32",
      dtype: "F32",
      shape: [3, 5],
      data: Float32Array.from({ length: 15 }, () => Math.random()),
    },
    {
      name: "b.f16",
      dtype: "F16",
      shape: [7],
      data: Uint16Array.from({ length: 7 }, () => Math.random() * 65536),
    },
    {
      name: "c.i32",
      dtype: "I32",
      shape: [2, 2, 3],
      data: Int32Array.from({ length: 12 }, (_, i) => i * -77777),
    },
    { name: "d.u8", dtype: "U8", shape: [5], data: Uint8Array.from([1, 2, 3, 4, 5]) },
    { name: "e.bf16", dtype: "BF16", shape: [3], data: Uint16Array.from([1, 2, 3]) },
    { name: "f.f64", dtype: "F64", shape: [], data: Float64Array.from([Math.PI]) },
    { name: "g.i64", dtype: "I64", shape: [2], data: BigInt64Array.from([-5n, 1n << 40n]) },
    { name: "h.empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  ];
}

async function expectCode(promise: Promise<unknown>, code: CheckpointErrorCode, message?: RegExp) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  expect((err as CheckpointError).code).toBe(code);
  if (message) expect((err as Error).message).toMatch(message);
  return err as CheckpointError;
}

const openBytes = (bytes: Uint8Array, file = "hostile.safetensors") =>
  SafetensorsReader.open(bufferSource(bytes), file);

describe("safetensors round trips", () => {
  it("reads back what it writes, in memory and on disk", async () => {
    const tensors = sampleTensors();
    const bytes = serializeSafetensors(tensors, { format: "pt", note: "x" });
    // Header padded to a multiple of 8 so that data starts aligned.
    expect(Number(new DataView(bytes.buffer).getBigUint64(0, true)) % 8).toBe(0);
    const path = join(dir, "round.safetensors");
    const size = await writeSafetensorsFile(path, tensors, { format: "pt", note: "x" });
    expect(size).toBe(bytes.length);
    expect(Buffer.from(readFileSync(path)).equals(Buffer.from(bytes))).toBe(true);
    for (const reader of [await openBytes(bytes), await openSafetensorsFile(path)]) {
      expect(reader.metadata).toEqual({ format: "pt", note: "x" });
      expect(reader.names()).toEqual(tensors.map((t) => t.name));
      for (const t of tensors) {
        const got = await reader.readTensor(t.name);
        expect(got.dtype).toBe(t.dtype);
        expect(got.shape).toEqual(t.shape);
        expect(Array.from(got.data as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
      }
      await reader.close();
    }
  });

  it("round-trips random tensor sets", async () => {
    const dtypes: SafetensorsDType[] = ["F32", "F16", "BF16", "I32", "U8", "I8", "F64", "U16", "I16", "U32"];
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            dtype: fc.constantFrom(...dtypes),
            shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
          }),
          {
            maxLength: 6,
          },
        ),
        async (specs) => {
          const tensors: TensorToWrite[] = specs.map((s, i) => {
            const count = s.shape.reduce((a, d) => a * d, 1) * SAFETENSORS_DTYPES[s.dtype];
            const bytes = Uint8Array.from({ length: count }, () => Math.random() * 256);
            return { name: `t${i}`, dtype: s.dtype, shape: s.shape, data: bytes };
          });
          const reader = await openBytes(serializeSafetensors(tensors));
          for (const t of tensors)
            expect(Array.from(await reader.readBytes(t.name))).toEqual(Array.from(t.data as Uint8Array));
        },
      ),
      { numRuns: 30 },
    );
  });

  it("keeps awkward tensor names such as __proto__", async () => {
    const tensors: TensorToWrite[] = [
      { name: "__proto__", dtype: "U8", shape: [2], data: Uint8Array.from([7, 8]) },
      { name: "constructor", dtype: "U8", shape: [1], data: Uint8Array.from([9]) },
    ];
    const reader = await openBytes(serializeSafetensors(tensors));
    expect(reader.names()).toEqual(["__proto__", "constructor"]);
    expect(Array.from((await reader.readTensor("__proto__")).data as Uint8Array)).toEqual([7, 8]);
  });

  it("checks dtype when asked and names missing tensors", async () => {
    const reader = await openBytes(serializeSafetensors(sampleTensors()), "m.safetensors");
    await expect(reader.readTensor("a.f32", "F16")).rejects.toThrow(
      /m.safetensors: tensor "a.f32" has dtype F32, expected F16/,
    );
    const err = await expectCode(reader.readTensor("nope"), "ERR_SAFETENSORS_TENSOR_NOT_FOUND");
    expect(err.tensor).toBe("nope");
  });

  it("rejects bad tensors on write", () => {
    expect(() =>
      serializeSafetensors([{ name: "x", dtype: "F32", shape: [3], data: new Float32Array(2) }]),
    ).toThrow(/needs 12 bytes, data has 8/);
    expect(() =>
      serializeSafetensors([{ name: "x", dtype: "F32", shape: [2], data: new Int32Array(2) }]),
    ).toThrow(TypeError);
    expect(() =>
      serializeSafetensors([
        { name: "x", dtype: "Q4" as SafetensorsDType, shape: [2], data: new Uint8Array(2) },
      ]),
    ).toThrow(/unknown dtype/);
    const t = { name: "x", dtype: "U8" as const, shape: [1], data: new Uint8Array(1) };
    expect(() => serializeSafetensors([t, t])).toThrow(/listed twice/);
  });
});

describe("hostile safetensors files", () => {
  const ok = (extra = "") => `{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}${extra}}`;

  it("accepts the well-formed baseline", async () => {
    const reader = await openBytes(rawSafetensors(ok(), 8));
    expect(reader.names()).toEqual(["t"]);
  });

  it("rejects files shorter than the length prefix", async () => {
    await expectCode(
      openBytes(new Uint8Array(5)),
      "ERR_SAFETENSORS_TRUNCATED",
      /hostile.safetensors: file has 5 bytes/,
    );
  });

  it("rejects a huge header length without allocating it", async () => {
    await expectCode(
      openBytes(rawSafetensors(ok(), 8, 1n << 62n)),
      "ERR_SAFETENSORS_HEADER_TOO_LARGE",
      /exceeds the limit/,
    );
    await expectCode(
      openBytes(rawSafetensors(ok(), 8, 99_999_999n)),
      "ERR_SAFETENSORS_TRUNCATED",
      /runs past the end/,
    );
  });

  it("rejects bad JSON and non-object headers", async () => {
    await expectCode(openBytes(rawSafetensors('{"t": [', 0)), "ERR_SAFETENSORS_BAD_JSON");
    await expectCode(openBytes(rawSafetensors("[1, 2]", 0)), "ERR_SAFETENSORS_BAD_HEADER");
    await expectCode(
      openBytes(rawSafetensors('{"t": 5}', 0)),
      "ERR_SAFETENSORS_BAD_HEADER",
      /tensor "t": entry must be an object/,
    );
    const badUtf8 = rawSafetensors('{"t":"xx"}', 0);
    badUtf8[13] = 0xff;
    await expectCode(openBytes(badUtf8), "ERR_SAFETENSORS_BAD_JSON", /UTF-8/);
    await expectCode(
      openBytes(rawSafetensors('{"__metadata__":{"a":1}}', 0)),
      "ERR_SAFETENSORS_BAD_HEADER",
      /must be a string/,
    );
  });

  it("rejects unknown dtypes, naming the tensor", async () => {
    const err = await expectCode(
      openBytes(rawSafetensors('{"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}', 8)),
      "ERR_SAFETENSORS_UNKNOWN_DTYPE",
      /tensor "w": unknown dtype "F17"/,
    );
    expect(err.file).toBe("hostile.safetensors");
  });

  it("rejects shapes that do not match their byte ranges", async () => {
    await expectCode(
      openBytes(rawSafetensors('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8)),
      "ERR_SAFETENSORS_SHAPE_MISMATCH",
      /tensor "w": shape \[3\] of F32 needs 12 bytes/,
    );
    // A product that overflows 2^64 must not wrap around to a match.
    const huge = `{"w":{"dtype":"U8","shape":[4294967296,4294967296,1],"data_offsets":[0,0]}}`;
    await expectCode(openBytes(rawSafetensors(huge, 0)), "ERR_SAFETENSORS_SHAPE_MISMATCH");
    await expectCode(
      openBytes(rawSafetensors('{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}', 0)),
      "ERR_SAFETENSORS_BAD_HEADER",
    );
    await expectCode(
      openBytes(rawSafetensors('{"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}}', 0)),
      "ERR_SAFETENSORS_BAD_HEADER",
    );
    await expectCode(
      openBytes(rawSafetensors('{"w":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}', 0)),
      "ERR_SAFETENSORS_BAD_HEADER",
    );
  });

  it("rejects offsets outside the file, overlaps, gaps and trailing bytes", async () => {
    await expectCode(
      openBytes(rawSafetensors('{"w":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}', 8)),
      "ERR_SAFETENSORS_BAD_OFFSETS",
      /tensor "w": data_offsets \[0, 16\] run past the end of the data \(8 bytes\)/,
    );
    const overlap =
      '{"a":{"dtype":"U8","shape":[6],"data_offsets":[0,6]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}';
    await expectCode(
      openBytes(rawSafetensors(overlap, 8)),
      "ERR_SAFETENSORS_BAD_OFFSETS",
      /tensor "b".*overlaps/,
    );
    const gap =
      '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}';
    await expectCode(openBytes(rawSafetensors(gap, 8)), "ERR_SAFETENSORS_BAD_OFFSETS", /tensor "b".*gap/);
    await expectCode(
      openBytes(rawSafetensors(ok(), 12)),
      "ERR_SAFETENSORS_BAD_OFFSETS",
      /cover 8 data bytes but the file holds 12/,
    );
    // Two names for the same bytes.
    const alias =
      '{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}';
    await expectCode(openBytes(rawSafetensors(alias, 8)), "ERR_SAFETENSORS_BAD_OFFSETS", /overlaps/);
  });

  it("rejects a file truncated after its header, and one that shrinks after opening", async () => {
    const full = serializeSafetensors(sampleTensors());
    const path = join(dir, "shrink.safetensors");
    writeFileSync(path, full.subarray(0, full.length - 10));
    await expectCode(openSafetensorsFile(path), "ERR_SAFETENSORS_BAD_OFFSETS", /shrink.safetensors/);
    writeFileSync(path, full);
    const reader = await openSafetensorsFile(path);
    truncateSync(path, full.length - 200);
    const last = reader.names().at(-2)!;
    await expectCode(reader.readTensor(last), "ERR_SAFETENSORS_TRUNCATED", /shrink.safetensors: file ended/);
    await reader.close();
  });

  it("never throws anything but CheckpointError on random corruption", async () => {
    const base = serializeSafetensors(sampleTensors(), { format: "pt" });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.nat(base.length - 1), value: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.nat(base.length),
        async (edits, cut) => {
          const bytes = base.slice(0, Math.max(cut, base.length - 40));
          for (const e of edits) if (e.at < bytes.length) bytes[e.at] = e.value;
          try {
            const reader = await openBytes(bytes);
            for (const name of reader.names()) await reader.readTensor(name);
          } catch (err) {
            expect(err).toBeInstanceOf(CheckpointError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("reports a missing file with a code", async () => {
    await expectCode(
      openSafetensorsFile(join(dir, "missing.safetensors")),
      "ERR_CHECKPOINT_NOT_FOUND",
      /missing.safetensors/,
    );
    await expectCode(openCheckpoint(join(dir, "missing-dir")), "ERR_CHECKPOINT_NOT_FOUND");
  });
});

describe("sharded checkpoints", () => {
  async function writeShards(sub: string) {
    const { mkdirSync } = await import("node:fs");
    const d = join(dir, sub);
    mkdirSync(d, { recursive: true });
    const tensors = sampleTensors();
    await writeSafetensorsFile(join(d, "model-00001-of-00002.safetensors"), tensors.slice(0, 3));
    await writeSafetensorsFile(join(d, "model-00002-of-00002.safetensors"), tensors.slice(3));
    const map = new Map(tensors.map((t, i) => [t.name, `model-0000${i < 3 ? 1 : 2}-of-00002.safetensors`]));
    return { d, tensors, map };
  }

  it("opens a sharded folder through its index and reads every tensor", async () => {
    const { d, tensors, map } = await writeShards("sharded");
    writeFileSync(join(d, "model.safetensors.index.json"), buildShardIndex(map, 123));
    const ckpt = await openCheckpoint(d);
    expect(ckpt.shards.length).toBe(2);
    expect(new Set(ckpt.names())).toEqual(new Set(tensors.map((t) => t.name)));
    for (const t of tensors) {
      expect(Array.from((await ckpt.readTensor(t.name)).data as ArrayLike<unknown>)).toEqual(
        Array.from(t.data as ArrayLike<unknown>),
      );
    }
    expect(ckpt.shardOf("d.u8").file).toMatch(/model-00002-of-00002/);
    await ckpt.close();
  });

  it("rejects an index that disagrees with the shards or escapes the folder", async () => {
    const { d, map } = await writeShards("bad-index");
    const wrong = new Map(map);
    wrong.set("a.f32", "model-00002-of-00002.safetensors");
    writeFileSync(join(d, "model.safetensors.index.json"), buildShardIndex(wrong, 0));
    await expectCode(openCheckpoint(d), "ERR_SAFETENSORS_BAD_INDEX", /"a.f32" in model-00002/);
    writeFileSync(
      join(d, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { "a.f32": "../../etc/passwd.safetensors" } }),
    );
    await expectCode(openCheckpoint(d), "ERR_SAFETENSORS_BAD_INDEX", /plain \*.safetensors file name/);
    writeFileSync(join(d, "model.safetensors.index.json"), "{not json");
    await expectCode(openCheckpoint(d), "ERR_SAFETENSORS_BAD_INDEX");
    // An empty index would hide the shards beside it: a checkpoint of nothing.
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify({ weight_map: {} }));
    await expectCode(openCheckpoint(d), "ERR_SAFETENSORS_BAD_INDEX", /lists no tensors/);
  });

  it("rejects a tensor present in two shards", async () => {
    const { mkdirSync } = await import("node:fs");
    const d = join(dir, "dupe");
    mkdirSync(d);
    const t = sampleTensors()[0];
    await writeSafetensorsFile(join(d, "a.safetensors"), [t]);
    await writeSafetensorsFile(join(d, "b.safetensors"), [t]);
    await expectCode(openCheckpoint(d), "ERR_SAFETENSORS_BAD_INDEX", /tensor "a.f32": tensor is also in/);
  });
});

describe("streaming writer", () => {
  it("enforces order and sizes, and leaves no file when aborted", async () => {
    const path = join(dir, "stream.safetensors");
    const specs = [
      { name: "x", dtype: "F32" as const, shape: [2] },
      { name: "y", dtype: "U8" as const, shape: [3] },
    ];
    const w = await SafetensorsFileWriter.create(path, specs);
    await expect(w.write("y", new Uint8Array(3))).rejects.toThrow(/expected tensor "x" next/);
    await expect(w.write("x", new Float32Array(3))).rejects.toThrow(/needs 8 bytes/);
    await w.write("x", Float32Array.from([1, 2]));
    await expect(w.close()).rejects.toThrow(/closed after 1 of 2/);
    const { existsSync } = await import("node:fs");
    expect(existsSync(path) || existsSync(`${path}.partial`)).toBe(false);
  });
});

/**
 * `replaceLinear`: walks a plain object graph (objects, arrays, Maps) and swaps matching
 * `Float16Linear`s for quantized `TriRunLinear`s in place, like the reference `replace_linear`.
 */
import { Float16Linear } from "./float16-linear.js";
import { type Quantizer, TriRunLinear } from "./trirun-linear.js";
import { checkGroupsize } from "./trirun-weights.js";
import type { Backend } from "./types.js";

export interface ReplaceLinearOptions {
  /** Which layers to replace, by dotted path (e.g. `layers.0.mlp.up`); default: all. */
  filter?: (path: string, layer: Float16Linear) => boolean;
  /** 128 (default) or -1 (one scale per output column). */
  groupsize?: number;
  /** A `@trirun/packing` method or a custom function; default "absmean". */
  quantizer?: Quantizer;
  /** Backend of the new layers; default: the backend of each replaced layer. */
  backend?: Backend;
  /** Keep the replaced layers' weights alive (default false: they are disposed). */
  keepReplaced?: boolean;
}

export interface Replacement {
  path: string;
  layer: TriRunLinear;
  /** The layer that was replaced (disposed unless `keepReplaced`; its host `weight` stays readable). */
  replaced: Float16Linear;
}

type Slot = { path: string; layer: Float16Linear; set: (layer: TriRunLinear) => void };

function isPlainContainer(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function collect(value: unknown, path: string, seen: Set<object>, slots: Slot[]): void {
  if (typeof value !== "object" || value === null || seen.has(value)) return;
  seen.add(value);
  const join = (key: string): string => (path === "" ? key : `${path}.${key}`);
  const visit = (child: unknown, key: string, set: (layer: TriRunLinear) => void): void => {
    if (child instanceof Float16Linear) slots.push({ path: join(key), layer: child, set });
    else collect(child, join(key), seen, slots);
  };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      visit(value[i], String(i), (layer) => {
        value[i] = layer;
      });
    }
  } else if (value instanceof Map) {
    for (const [key, child] of value) {
      visit(child, String(key), (layer) => {
        value.set(key, layer);
      });
    }
  } else if (isPlainContainer(value)) {
    for (const key of Object.keys(value)) {
      visit(value[key], key, (layer) => {
        value[key] = layer;
      });
    }
  }
}

/**
 * Replaces every `Float16Linear` reachable from `model` through plain objects, arrays and Maps
 * (class instances other than layers are not entered) for which `filter(path, layer)` holds.
 * A layer reachable along several paths is replaced at each of them by one shared `TriRunLinear`.
 * Returns the replacements in walk order.
 */
export function replaceLinear(model: object, opts: ReplaceLinearOptions = {}): Replacement[] {
  if (typeof model !== "object" || model === null)
    throw new TypeError("model must be an object, array or Map");
  const groupsize = opts.groupsize ?? 128;
  checkGroupsize(groupsize, "opts.groupsize");
  const quantizer = opts.quantizer ?? "absmean";
  if (opts.filter !== undefined && typeof opts.filter !== "function") {
    throw new TypeError("opts.filter must be a function (path, layer) => boolean");
  }
  const slots: Slot[] = [];
  collect(model, "", new Set(), slots);
  const done = new Map<Float16Linear, TriRunLinear>();
  // A layer shared with a path the filter keeps must stay alive.
  const kept = new Set<Float16Linear>();
  const replacements: Replacement[] = [];
  for (const slot of slots) {
    if (opts.filter !== undefined && !opts.filter(slot.path, slot.layer)) {
      kept.add(slot.layer);
      continue;
    }
    let layer = done.get(slot.layer);
    if (layer === undefined) {
      layer = TriRunLinear.quantize(slot.layer, quantizer, groupsize, {
        backend: opts.backend ?? slot.layer.backend,
      });
      done.set(slot.layer, layer);
    }
    slot.set(layer);
    replacements.push({ path: slot.path, layer, replaced: slot.layer });
  }
  if (opts.keepReplaced !== true) {
    for (const old of done.keys()) if (!kept.has(old)) old.dispose();
  }
  return replacements;
}

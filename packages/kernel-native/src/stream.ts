// CUDA streams and events. Work is asynchronous on a stream; events time it.
import { DisposedError } from "./errors.js";
import { type NativeEvent, type NativeStream, requireNative } from "./native.js";

const streams = new WeakMap<Stream, NativeStream>();

/**
 * A CUDA stream (blocking: it also orders with work on the default stream).
 * Owns the kernel workspace of trirunMatmul calls made on it. Destroyed by
 * dispose() or, as a safety net, when garbage collected.
 */
export class Stream {
  constructor() {
    streams.set(this, new (requireNative().Stream)());
  }

  get disposed(): boolean {
    return streams.get(this)!.destroyed;
  }

  /** The device the stream belongs to. */
  get device(): number {
    return streams.get(this)!.device;
  }

  /** Waits until all work queued on the stream has finished. */
  synchronize(): void {
    nativeStream(this, "stream")!.synchronize();
  }

  /** True when all queued work has finished (does not wait). */
  query(): boolean {
    return nativeStream(this, "stream")!.query();
  }

  /** Idempotent; waits for the stream's work before releasing it. */
  dispose(): void {
    streams.get(this)!.destroy();
  }
}

/** @internal The native stream of `stream` (null for the default stream). */
export function nativeStream(stream: Stream | undefined | null, name: string): NativeStream | null {
  if (stream === undefined || stream === null) return null;
  const native = stream instanceof Stream ? streams.get(stream) : undefined;
  if (native === undefined) throw new TypeError(`${name}: expected a Stream`);
  if (native.destroyed) throw new DisposedError(name);
  return native;
}

const events = new WeakMap<Event, NativeEvent>();

/** A CUDA event for ordering and timing (elapsedMs). */
export class Event {
  constructor() {
    events.set(this, new (requireNative().Event)());
  }

  get disposed(): boolean {
    return events.get(this)!.destroyed;
  }

  /** Records the event on `stream` (default stream when omitted). */
  record(stream?: Stream): void {
    const native = liveEvent(this, "event");
    native.record(nativeStream(stream, "stream"));
  }

  /** Waits until the event has completed. */
  synchronize(): void {
    liveEvent(this, "event").synchronize();
  }

  /** True when the event has completed (does not wait). */
  query(): boolean {
    return liveEvent(this, "event").query();
  }

  /** Milliseconds from `start` to this event; both must be recorded and complete. */
  elapsedMs(start: Event): number {
    if (!(start instanceof Event)) throw new TypeError("start: expected an Event");
    return liveEvent(this, "event").elapsedMs(liveEvent(start, "start"));
  }

  /** Idempotent. */
  dispose(): void {
    events.get(this)!.destroy();
  }
}

function liveEvent(event: Event, name: string): NativeEvent {
  const native = events.get(event);
  if (native === undefined) throw new TypeError(`${name}: expected an Event`);
  if (native.destroyed) throw new DisposedError(name);
  return native;
}

/**
 * protoc-gen-es maps (u)int64 fields (byte counts, offsets, seeds, counters) to `bigint`, which
 * holds every 64-bit value exactly but does not mix with `number` arithmetic or JSON.stringify.
 */

/** A 64-bit field as a `number`; RangeError instead of a silent rounding above 2^53 - 1. */
export function toSafeNumber(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`${value} does not fit a JavaScript number exactly`);
  }
  return Number(value);
}

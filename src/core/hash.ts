/**
 * Client-address hashing for Hash groups.
 *
 * balance 3.54 hashed IPv4 clients from bytes that are the same for every
 * client, sending all of them to one channel. We hash the address bytes
 * themselves, and reduce IPv4-mapped IPv6 (`::ffff:1.2.3.4`) to its IPv4 bytes
 * first, so a client hashes alike whichever socket family accepted it.
 *
 * @module
 */

/**
 * Parses a textual IPv4 or IPv6 address into its bytes (4 or 16), with
 * IPv4-mapped IPv6 reduced to 4 bytes. Returns `undefined` for anything else.
 *
 * @example
 * ```ts
 * addressBytes("::ffff:10.0.0.1"); // Uint8Array [10, 0, 0, 1]
 * ```
 */
export function addressBytes(address: string): Uint8Array | undefined {
  const zone = address.indexOf("%");
  const text = zone >= 0 ? address.slice(0, zone) : address;
  if (!text.includes(":")) return ipv4Bytes(text);
  const v6 = ipv6Bytes(text);
  if (v6 === undefined) return undefined;
  const mapped = v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff &&
    v6[11] === 0xff;
  return mapped ? v6.slice(12) : v6;
}

// Dotted quad, four decimal parts of at most three digits, each <= 255.
// Hand-written: this runs for every client of a Hash group.
function ipv4Bytes(text: string): Uint8Array | undefined {
  const bytes = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || part === 3) return undefined;
      bytes[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39 && digits < 3) {
      value = value * 10 + c - 0x30;
      digits++;
      if (value > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (part !== 3 || digits === 0) return undefined;
  bytes[3] = value;
  return bytes;
}

function ipv6Bytes(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const words = (s: string) => (s === "" ? [] : s.split(":"));
  const head = words(halves[0]);
  const tail = halves.length === 2 ? words(halves[1]) : [];
  // A trailing dotted quad stands for the last two 16-bit words.
  const last = tail.length ? tail : head;
  let v4: Uint8Array | undefined;
  if (last.length && last[last.length - 1].includes(".")) {
    v4 = ipv4Bytes(last.pop()!);
    if (v4 === undefined) return undefined;
  }
  const wordCount = head.length + tail.length + (v4 ? 2 : 0);
  if (halves.length === 1 ? wordCount !== 8 : wordCount > 7) return undefined;
  const bytes = new Uint8Array(16);
  const put = (list: string[], at: number) => {
    for (const w of list) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return false;
      const n = parseInt(w, 16);
      bytes[at++] = n >> 8;
      bytes[at++] = n & 0xff;
    }
    return true;
  };
  const tailStart = 16 - tail.length * 2 - (v4 ? 4 : 0);
  if (!put(head, 0) || !put(tail, tailStart)) return undefined;
  if (v4) bytes.set(v4, 12);
  return bytes;
}

/**
 * A 32-bit hash of a client address: FNV-1a over the address bytes, then a
 * final avalanche so that neighbouring addresses (10.0.0.1, 10.0.0.2, …) land
 * on unrelated channels for any channel count. Stable across runs and
 * platforms: a client keeps its channel after a restart.
 * Unparseable text (it should not happen: sockets give numeric addresses)
 * is hashed as its characters.
 *
 * @example
 * ```ts
 * hashClientAddress("1.2.3.4") === hashClientAddress("::ffff:1.2.3.4"); // true
 * const channelIndex = hashClientAddress("1.2.3.4") % 3;
 * ```
 */
export function hashClientAddress(address: string): number {
  const bytes = addressBytes(address) ?? new TextEncoder().encode(address);
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  // murmur3's fmix32: every input bit affects every output bit.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

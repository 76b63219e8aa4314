/**
 * Client-address and channel-identity hashing for Hash groups
 * (schedule/rendezvous.ts combines the two).
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
 * hashedChannels(group, hashClientAddress("1.2.3.4"), false); // its channel in a Hash group
 * ```
 */
export function hashClientAddress(address: string): number {
  return fmix32(fnv1a(FNV_OFFSET, address)) >>> 0;
}

/**
 * A 32-bit identity of a channel, from its address bytes (as for clients:
 * `::ffff:10.0.0.1` and `10.0.0.1` are one host) and its port, so that every
 * balancer naming the same backend derives the same value, whatever the
 * channel's place in its group.
 *
 * @example
 * ```ts
 * hashChannelIdentity("10.0.0.1", 80) === hashChannelIdentity("::ffff:10.0.0.1", 80); // true
 * ```
 */
export function hashChannelIdentity(address: string, port: number): number {
  let h = fnv1a(FNV_OFFSET, address);
  h = Math.imul(h ^ (port >>> 8), FNV_PRIME);
  h = Math.imul(h ^ (port & 0xff), FNV_PRIME);
  return fmix32(h) >>> 0;
}

/**
 * Mixes two 32-bit values into one (a murmur3 block step and its final
 * avalanche): integer arithmetic only, so every runtime and platform gives
 * the same result; consistent hashing depends on that.
 *
 * @example
 * ```ts
 * mixHash(hashClientAddress("10.0.0.1"), hashChannelIdentity("10.0.0.9", 80)); // 0 … 2**32-1
 * ```
 */
export function mixHash(a: number, b: number): number {
  let k = Math.imul(b, 0xcc9e2d51);
  k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
  let h = a ^ k;
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  return fmix32(h) >>> 0;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnv1a(h: number, address: string): number {
  const bytes = addressBytes(address) ?? new TextEncoder().encode(address);
  for (const b of bytes) h = Math.imul(h ^ b, FNV_PRIME);
  return h;
}

// murmur3's fmix32: every input bit affects every output bit.
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

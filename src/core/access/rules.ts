/**
 * `--allow` and `--deny`: ordered rules over address prefixes, the first
 * match deciding, as nginx's `allow`/`deny`. Matching walks one prefix tree
 * per family along the client's address bits, so a thousand rules cost what
 * one does.
 *
 * @module
 */
import { addressBytes } from "../selection/hash.ts";
import { usageError } from "../util/exit_error.ts";
import { shown } from "../util/shown.ts";

/** What a rule does with a client it matches. */
export type RuleAction = "allow" | "deny";

/**
 * One `--allow`/`--deny` as given: the action and its SPEC (a comma-separated
 * list of addresses and prefixes, or `all`).
 *
 * @example
 * ```ts
 * const rule: AccessRule = { action: "deny", spec: "10.0.0.7,192.0.2.0/24" };
 * ```
 */
export interface AccessRule {
  action: RuleAction;
  spec: string;
}

/** One address or prefix of a SPEC: its bits, as many as count, in 4 or 16 bytes. */
export interface Prefix {
  /** 4 (IPv4, an IPv4-mapped IPv6 prefix included) or 16 bytes; ignored for `all`. */
  bytes: Uint8Array;
  /** Leading bits that must match; 0 with `all` matches every family. */
  length: number;
  /** `all`: every client, IPv4 and IPv6. */
  all: boolean;
  /** As written, for messages. */
  text: string;
}

/**
 * Parses a SPEC: comma-separated IPv4 or IPv6 addresses and CIDR prefixes,
 * or `all`. Throws a usage error (exit 64) naming `flag` and the SPEC.
 *
 * @example
 * ```ts
 * parsePrefixList("10.0.0.0/8,::1", "--allow").length; // 2
 * parsePrefixList("10.0.0.0/33", "--allow"); // throws: invalid address (--allow) '10.0.0.0/33': prefix length must be 0-32
 * ```
 */
export function parsePrefixList(spec: string, flag: string): Prefix[] {
  const fail = (why: string) => usageError(`invalid address (${flag}) '${shown(spec)}': ${why}`);
  if (spec.trim() === "") throw fail("an address, a prefix or 'all' is needed");
  return spec.split(",").map((word) => {
    const text = word.trim();
    if (text === "all") return { bytes: new Uint8Array(0), length: 0, all: true, text };
    const slash = text.indexOf("/");
    const address = slash >= 0 ? text.slice(0, slash) : text;
    const bytes = addressBytes(address);
    if (!bytes || address.includes("%")) throw fail(`'${shown(text)}' is not an IPv4 or IPv6 address or prefix`);
    // An IPv4-mapped IPv6 prefix counts its bits from the IPv4 part.
    const mapped = bytes.length === 4 && address.includes(":");
    const bits = mapped ? 128 : bytes.length * 8;
    let length = bits;
    if (slash >= 0) {
      const lengthText = text.slice(slash + 1);
      length = /^\d{1,3}$/.test(lengthText) ? Number(lengthText) : NaN;
      if (!(length <= bits) || (mapped && length < 96)) {
        throw fail(`prefix length must be ${mapped ? 96 : 0}-${bits}`);
      }
    }
    return { bytes, length: mapped ? length - 96 : length, all: false, text };
  });
}

/** A rule's verdict on a client: the action, and the rule as an operator would write it. */
export interface RuleMatch {
  action: RuleAction;
  /** e.g. `--deny 198.51.100.0/24`: the flag and the prefix that matched. */
  rule: string;
}

/** Sentinel for "no entry ends here". */
const NONE = 0x7fffffff;

/**
 * One family's prefix tree: node 0 is the root, a child index of 0 means
 * none. Each node keeps the first entry (in rule order) whose prefix ends
 * there; a walk keeps the smallest it passes.
 */
class PrefixTree {
  private children = new Int32Array(64);
  private first = new Int32Array(32).fill(NONE);
  private size = 1;

  insert(bytes: Uint8Array, length: number, entry: number): void {
    let node = 0;
    for (let i = 0; i < length; i++) {
      const slot = node * 2 + ((bytes[i >> 3] >> (7 - (i & 7))) & 1);
      let next = this.children[slot];
      if (next === 0) {
        next = this.grow();
        this.children[slot] = next;
      }
      node = next;
    }
    if (entry < this.first[node]) this.first[node] = entry;
  }

  /** The first entry whose prefix holds the IPv4 address `value` (32 bits), or {@link NONE}. */
  lookup4(value: number): number {
    const children = this.children;
    const first = this.first;
    let best = first[0];
    let node = 0;
    for (let shift = 31; shift >= 0; shift--) {
      node = children[node * 2 + ((value >>> shift) & 1)];
      if (node === 0) break;
      if (first[node] < best) best = first[node];
    }
    return best;
  }

  /** The first entry whose prefix holds `bytes`, or {@link NONE}. */
  lookup(bytes: Uint8Array): number {
    const children = this.children;
    const first = this.first;
    let best = first[0];
    let node = 0;
    const bits = bytes.length * 8;
    for (let i = 0; i < bits; i++) {
      node = children[node * 2 + ((bytes[i >> 3] >> (7 - (i & 7))) & 1)];
      if (node === 0) break;
      if (first[node] < best) best = first[node];
    }
    return best;
  }

  private grow(): number {
    if (this.size === this.first.length) {
      const first = new Int32Array(this.size * 2).fill(NONE);
      first.set(this.first);
      this.first = first;
      const children = new Int32Array(this.size * 4);
      children.set(this.children);
      this.children = children;
    }
    return this.size++;
  }
}

/**
 * `--allow`/`--deny` rules in force. No rule matching a client allows it.
 *
 * @example
 * ```ts
 * const rules = new AccessRules([{ action: "allow", spec: "10.0.0.0/8" }, { action: "deny", spec: "all" }]);
 * rules.match(addressBytes("10.1.2.3")!)?.action; // "allow"
 * rules.match(addressBytes("192.0.2.1")!)?.rule; // "--deny all"
 * ```
 */
export class AccessRules {
  /** Every prefix of every rule, in rule order: a tree's entries index it. */
  private readonly entries: RuleMatch[] = [];
  private readonly v4 = new PrefixTree();
  private readonly v6 = new PrefixTree();

  /** Throws a usage error for a malformed SPEC. */
  constructor(readonly rules: readonly AccessRule[]) {
    for (const { action, spec } of rules) {
      for (const prefix of parsePrefixList(spec, `--${action}`)) {
        const entry = this.entries.length;
        this.entries.push({ action, rule: `--${action} ${prefix.text}` });
        if (prefix.all || prefix.bytes.length === 4) this.v4.insert(prefix.bytes, prefix.length, entry);
        if (prefix.all || prefix.bytes.length === 16) this.v6.insert(prefix.bytes, prefix.length, entry);
      }
    }
  }

  /** Whether there is any rule at all. */
  get any(): boolean {
    return this.entries.length > 0;
  }

  /** The first rule matching the client's address (4 or 16 bytes, IPv4-mapped ones as 4), if any. */
  match(bytes: Uint8Array): RuleMatch | undefined {
    const entry = (bytes.length === 4 ? this.v4 : this.v6).lookup(bytes);
    return entry === NONE ? undefined : this.entries[entry];
  }

  /** {@link match} for an IPv4 address as a 32-bit number ({@link ipv4Value}): no bytes to allocate. */
  match4(value: number): RuleMatch | undefined {
    const entry = this.v4.lookup4(value);
    return entry === NONE ? undefined : this.entries[entry];
  }
}

const MAPPED = "::ffff:";

/**
 * An IPv4 address (dotted quad, or IPv4-mapped IPv6 `::ffff:a.b.c.d`) as an
 * unsigned 32-bit number, or -1 for anything else: the common client
 * address read without allocating.
 *
 * @example
 * ```ts
 * ipv4Value("10.0.0.7"); // 167772167
 * ipv4Value("::ffff:10.0.0.7"); // 167772167
 * ipv4Value("::1"); // -1
 * ```
 */
export function ipv4Value(text: string): number {
  let i = text.startsWith(MAPPED) || text.startsWith("::FFFF:") ? MAPPED.length : 0;
  let value = 0;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (text.charCodeAt(i) !== 0x2e) return -1;
      i++;
    }
    let byte = 0;
    const start = i;
    for (; i < text.length && i - start < 3; i++) {
      const c = text.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) break;
      byte = byte * 10 + c;
    }
    if (i === start || byte > 255) return -1;
    value = value * 256 + byte;
  }
  return i === text.length ? value : -1;
}

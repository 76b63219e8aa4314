import { blaming, usageError } from "../util/exit_error.ts";
import { shown } from "../util/shown.ts";
import { addressBytes } from "../selection/hash.ts";
import type { GroupType } from "../model/group.ts";

/**
 * The command-line grammar of balance 3.54: ports (numbers or service names)
 * and channels `host[:port[:maxc[:weight]]]`, grouped by `!` and `%`.
 *
 * @module
 */

/** Looks up a TCP service name (`smtp`) to its port; `undefined` if unknown. */
export type ServiceLookup = (name: string) => number | undefined;

/** A channel as written on the command line, host not yet resolved. */
export interface ChannelSpec {
  host: string;
  port: number;
  maxc: number;
  /** Share of new connections, 0-256; 1 when not given. */
  weight?: number;
  /** `false` for a channel that starts disabled (`:dis`); enabled when not given. */
  enabled?: boolean;
}

/** A group as written on the command line. */
export interface GroupSpec {
  type: GroupType;
  channels: ChannelSpec[];
  /** The service (`@NAME`) the group belongs to; absent, the default service. */
  service?: string;
}

/** A service name as `@NAME` writes it: letters, digits, `-`, `_` and `.`. */
export const SERVICE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Largest channel weight (`host:port:maxc:weight`); 0 drains a channel. */
export const MAX_WEIGHT = 256;

/** Largest maxc accepted: beyond any descriptor limit, yet exact in a double. */
export const MAX_MAXC = 2 ** 31 - 1;

/**
 * Parses a port: a number 1-65535 or a service name.
 *
 * @example
 * ```ts
 * parsePort("8080", () => undefined); // 8080
 * parsePort("smtp", (n) => (n === "smtp" ? 25 : undefined)); // 25
 * ```
 */
export function parsePort(text: string, lookup: ServiceLookup, what = "port"): number {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n >= 1 && n <= 65535) return n;
    throw usageError(`invalid ${what} '${shown(text)}': must be 1-65535`);
  }
  const n = /^[A-Za-z][\w.+-]*$/.test(text) ? lookup(text) : undefined;
  if (n === undefined) throw usageError(`invalid ${what} '${shown(text)}': not a number or known service`);
  return n;
}

/** The range of {@link parseCount}, and what its numbers count. */
export interface CountRange {
  min?: number;
  max?: number;
  /** Named after the range in the message: `must be 1-2000000 seconds`. */
  unit?: string;
}

/**
 * Parses a whole number from `min` (default 0) to `max` (default
 * {@link MAX_MAXC}). Whatever is wrong with the text, the message names the
 * same range, so `-t 0` and `-t abc` say the same thing.
 *
 * @example
 * ```ts
 * parseCount("16", "maxc"); // 16
 * parseCount("0", "connect timeout (-t)", { min: 1, max: 2_000_000, unit: "seconds" });
 * // throws: invalid connect timeout (-t) '0': must be 1-2000000 seconds
 * ```
 */
export function parseCount(text: string, what: string, { min = 0, max = MAX_MAXC, unit }: CountRange = {}): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) {
    throw usageError(`invalid ${what} '${shown(text)}': must be ${min}-${max}${unit ? ` ${unit}` : ""}`);
  }
  return n;
}

/**
 * Parses a number of seconds, decimals allowed (`0.5`, `2`, `.25`), from
 * `min` to `max`; the message names the range whatever is wrong.
 *
 * @example
 * ```ts
 * parseSeconds("0.5", "--check-interval", 0.1, 2_000_000); // 0.5
 * parseSeconds("0", "--check-interval", 0.1, 2_000_000);
 * // throws: invalid --check-interval '0': must be 0.1-2000000 seconds
 * ```
 */
export function parseSeconds(text: string, what: string, min: number, max: number): number {
  const n = /^(\d{1,10}(\.\d{0,9})?|\.\d{1,9})$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw usageError(`invalid ${what} '${shown(text)}': must be ${min}-${max} seconds`);
  return n;
}

/**
 * Parses one channel, `host[:port[:maxc[:weight]]]` or
 * `[ipv6][:port[:maxc[:weight]]]`. A missing or empty port means the listen
 * port (`host::16`), an empty maxc no limit; `weight` (0-256) is left out of
 * the result when not given (it is then 1). A host that cannot be one (`!!`,
 * `[:::1]`) is a usage error, not a name to resolve.
 *
 * @example
 * ```ts
 * parseChannel("[::1]:8080:10", 80, () => undefined);
 * // { host: "::1", port: 8080, maxc: 10 }
 * parseChannel("web1::16", 80, () => undefined); // { host: "web1", port: 80, maxc: 16 }
 * parseChannel("web1:81::3", 80, () => undefined); // { host: "web1", port: 81, maxc: 0, weight: 3 }
 * ```
 */
export function parseChannel(spec: string, listenPort: number, lookup: ServiceLookup): ChannelSpec {
  const bracketsHint = () =>
    usageError(`invalid channel '${shown(spec)}': write IPv6 addresses in brackets, e.g. [::1]:80`);
  let host: string;
  let rest: string[];
  if (spec.startsWith("[")) {
    const close = spec.indexOf("]");
    if (close < 0) throw usageError(`invalid channel '${shown(spec)}': missing ']'`);
    host = spec.slice(1, close);
    const after = spec.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) {
      throw usageError(`invalid channel '${shown(spec)}': expected ':' after ']'`);
    }
    rest = after === "" ? [] : after.slice(1).split(":");
  } else {
    [host, ...rest] = spec.split(":");
    if (rest.length > maxFields(rest) || spec.startsWith("::")) throw bracketsHint();
  }
  if (host === "") throw usageError(`invalid channel '${shown(spec)}': missing host`);
  if (!isHost(host)) {
    throw usageError(`invalid channel '${shown(spec)}': '${shown(host)}' is not a host name or address`);
  }
  if (rest.length > maxFields(rest)) throw usageError(`invalid channel '${shown(spec)}': too many ':' fields`);
  try {
    return channelFields(spec, host, rest, listenPort, lookup);
  } catch (err) {
    // `db::64:2` is a host with fields, `2001:db8::1` an address that lost its brackets.
    throw !spec.startsWith("[") && addressBytes(spec) ? bracketsHint() : err;
  }
}

// Letters, digits, `.`, `-` and `_`, with a letter or digit among them: a
// word that is not (`!!`, a separator typo) is a mistake to name, not a name to
// ask DNS about.
const HOST_NAME = /^[\p{L}\p{N}._-]*[\p{L}\p{N}][\p{L}\p{N}._-]*$/u;

function isHost(host: string): boolean {
  return HOST_NAME.test(host) || addressBytes(host) !== undefined;
}

// port, maxc, weight, and the state (`dis`) when the last field says it.
function maxFields(rest: string[]): number {
  return rest.length === 4 && rest[3] === DISABLED ? 4 : 3;
}

/** The last field of a channel that starts disabled (`host:port:maxc:weight:dis`), as `show` names the state. */
export const DISABLED = "dis";

function channelFields(
  spec: string,
  host: string,
  [portText = "", maxcText = "", weightText = "", state = ""]: string[],
  listenPort: number,
  lookup: ServiceLookup,
): ChannelSpec {
  const port = portText === "" ? listenPort : parsePort(portText, lookup, `port in channel '${shown(spec)}'`);
  const maxc = maxcText === "" ? 0 : parseCount(maxcText, `maxc in channel '${shown(spec)}'`);
  const channel: ChannelSpec = { host, port, maxc };
  if (weightText !== "") {
    channel.weight = parseCount(weightText, `weight in channel '${shown(spec)}'`, { max: MAX_WEIGHT });
  }
  if (state === DISABLED) channel.enabled = false;
  return channel;
}

/** The word that ends a group of each type: balance's `!` and `%`, and `+` for least connection. */
export const GROUP_SEPARATORS: Readonly<Record<GroupType, string>> = { RR: "!", Hash: "%", LC: "+" };

/**
 * Splits the channel arguments into groups. `!` ends an RR group, `%` a
 * Hash group, `+` a least-connection group; a group not ended by one is RR.
 * `@NAME` starts a service: the groups after it, up to the next `@NAME`,
 * are its failover chain; groups before the first are the default service.
 * An error blames its word, an index into `args`.
 *
 * @example
 * ```ts
 * parseGroups(["a", "b", "%", "c"], 80, () => undefined).map((g) => g.type);
 * // ["Hash", "RR"]
 * parseGroups(["a", "@api", "b", "c", "%"], 80, () => undefined).map((g) => g.service);
 * // [undefined, "api"]
 * ```
 */
export function parseGroups(args: string[], listenPort: number, lookup: ServiceLookup): GroupSpec[] {
  const groups: GroupSpec[] = [];
  let channels: ChannelSpec[] = [];
  let service: string | undefined;
  let serviceAt = -1;
  const services = new Set<string>();
  const typeEndedBy = new Map(Object.entries(GROUP_SEPARATORS).map(([type, word]) => [word, type as GroupType]));
  const endGroup = (type: GroupType) => {
    groups.push(service === undefined ? { type, channels } : { type, channels, service });
    channels = [];
  };
  const endService = () => {
    if (channels.length) endGroup("RR");
    if (service !== undefined && groups.at(-1)?.service !== service) {
      throw usageError(`service '@${shown(service)}' has no channel`).at(serviceAt);
    }
  };
  args.forEach((arg, i) => {
    const type = typeEndedBy.get(arg);
    if (type) {
      if (channels.length === 0) throw usageError(`group separator '${shown(arg)}' with no channel before it`).at(i);
      endGroup(type);
    } else if (arg.startsWith("@")) {
      const name = arg.slice(1);
      if (!SERVICE_NAME.test(name)) {
        throw usageError(`invalid service '${shown(arg)}': must be @NAME (letters, digits, '-', '_', '.')`).at(i);
      }
      if (services.has(name)) throw usageError(`service '${shown(arg)}' given twice`).at(i);
      endService();
      services.add(name);
      service = name;
      serviceAt = i;
    } else {
      channels.push(blaming(i, () => parseChannel(arg, listenPort, lookup)));
    }
  });
  endService();
  if (groups.length === 0) throw usageError("no channel given");
  return groups;
}

/**
 * Parses the text of a services file (`/etc/services` format) into a lookup
 * of TCP service names and aliases.
 *
 * @example
 * ```ts
 * const lookup = parseServices("smtp 25/tcp mail\n");
 * lookup("mail"); // 25
 * ```
 */
export function parseServices(text: string): ServiceLookup {
  const ports = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [name, portProto, ...aliases] = line.replace(/#.*/, "").trim().split(/\s+/);
    const m = /^(\d+)\/tcp$/.exec(portProto ?? "");
    if (!m) continue;
    for (const n of [name, ...aliases]) if (!ports.has(n)) ports.set(n, Number(m[1]));
  }
  return (name) => ports.get(name);
}

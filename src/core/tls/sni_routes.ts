/**
 * `--sni PATTERN=@NAME`: which service a TLS client goes to, by the host
 * name its ClientHello asks for. PATTERN is a host name or `*.suffix`;
 * an exact name beats every wildcard and a longer suffix a shorter one, so
 * the order of the options does not matter. A lookup costs at most one map
 * lookup per label of the name, however many patterns there are.
 *
 * @module
 */
import { usageError } from "../util/exit_error.ts";
import { SERVICE_NAME } from "../config/grammar.ts";
import { shown } from "../util/shown.ts";

/**
 * One `--sni`: a pattern, lowercase and without a trailing dot, and the
 * service it routes to.
 *
 * @example
 * ```ts
 * const route: SniRoute = { pattern: "*.api.example", service: "api" };
 * ```
 */
export interface SniRoute {
  pattern: string;
  service: string;
}

const LABEL = /^[a-z0-9_-]{1,63}$/;

/**
 * Parses the word of one `--sni`: `PATTERN=@NAME`, where PATTERN is a host
 * name or `*.suffix` (`*` only as the whole first label), with labels of
 * 1-63 letters, digits, `-` or `_` and at most 253 characters, and NAME is
 * letters, digits, `-`, `_` and `.`. The pattern comes back lowercase and
 * without a trailing dot. Throws a usage error (exit 64) quoting the word.
 *
 * @example
 * ```ts
 * parseSniRoute("*.API.example.=@api"); // { pattern: "*.api.example", service: "api" }
 * parseSniRoute("a.test"); // throws: invalid --sni 'a.test': must be PATTERN=@NAME
 * ```
 */
export function parseSniRoute(text: string): SniRoute {
  const fail = (why: string) => usageError(`invalid --sni '${shown(text)}': ${why}`);
  const equals = text.indexOf("=");
  if (equals <= 0 || text[equals + 1] !== "@") throw fail("must be PATTERN=@NAME");
  const service = text.slice(equals + 2);
  if (!SERVICE_NAME.test(service)) throw fail("NAME must be 1-64 letters, digits, '-', '_' or '.'");
  const pattern = withoutTrailingDot(text.slice(0, equals).toLowerCase());
  if (pattern.length > 253) throw fail("PATTERN is longer than 253 characters");
  const labels = pattern.split(".");
  const wildcard = labels[0] === "*";
  if (wildcard && labels.length === 1) throw fail("'*' needs a suffix, as in *.example.com");
  for (const label of wildcard ? labels.slice(1) : labels) {
    if (LABEL.test(label)) continue;
    if (label.includes("*")) throw fail("'*' may only be the whole first label, as in *.example.com");
    throw fail(
      label === "" ? "PATTERN has an empty label" : `label '${shown(label)}' is not 1-63 letters, digits, '-' or '_'`,
    );
  }
  return { pattern, service };
}

/**
 * The `--sni` routes of a listener. `route` takes a host name and answers
 * with the route that applies: the exact pattern if there is one, else the
 * wildcard with the longest suffix, else none. `*.suffix` stands for one or
 * more labels: `*.api.example` matches `a.api.example` and
 * `x.y.api.example`, not `api.example`. Case and one trailing dot count
 * neither in patterns nor in names. A pattern given twice is a usage error.
 *
 * @example
 * ```ts
 * const routes = new SniRoutes(["*.example=@web", "*.api.example=@api", "admin.api.example=@admin"].map(parseSniRoute));
 * routes.route("x.y.API.example.")?.service; // "api"
 * routes.route("admin.api.example")?.service; // "admin"
 * routes.route("api.example")?.service; // "web"
 * routes.route("example"); // undefined
 * ```
 */
export class SniRoutes {
  private readonly exact = new Map<string, SniRoute>();
  /** Wildcard routes by their suffix: `*.api.example` under `api.example`. */
  private readonly wildcards = new Map<string, SniRoute>();
  /** Which suffix lengths, in labels, some wildcard has: the walk looks up no other. */
  private readonly suffixLabels: boolean[] = [];

  constructor(routes: readonly SniRoute[]) {
    for (const { pattern: given, service } of routes) {
      const pattern = withoutTrailingDot(given.toLowerCase());
      const wildcard = pattern.startsWith("*.");
      const table = wildcard ? this.wildcards : this.exact;
      const key = wildcard ? pattern.slice(2) : pattern;
      if (table.has(key)) throw usageError(`--sni pattern '${shown(pattern)}' given twice`);
      table.set(key, { pattern, service });
      if (wildcard) this.suffixLabels[key.split(".").length] = true;
    }
  }

  /** The route for `serverName`, or `undefined` when no pattern matches it. */
  route(serverName: string): SniRoute | undefined {
    const name = withoutTrailingDot(serverName.toLowerCase());
    const exact = this.exact.get(name);
    if (exact !== undefined || this.wildcards.size === 0) return exact;
    let labels = 1;
    for (let dot = name.indexOf("."); dot >= 0; dot = name.indexOf(".", dot + 1)) labels++;
    // Longest suffix first; none after a leading dot, which leaves no label for the `*`. Slicing and
    // hashing a suffix is most of a lookup's cost, hence only the lengths some wildcard has.
    for (let dot = name.indexOf("."); dot >= 0; dot = name.indexOf(".", dot + 1)) {
      labels--;
      if (dot === 0 || !this.suffixLabels[labels]) continue;
      const wildcard = this.wildcards.get(name.slice(dot + 1));
      if (wildcard !== undefined) return wildcard;
    }
    return undefined;
  }
}

/**
 * `--sni` and `--sni-default` in force: the routes as given (what a worker
 * thread is sent, what `show --json` shows) and built for lookups.
 *
 * @example
 * ```ts
 * const sni = sniRouting([parseSniRoute("a.example=@a")], "");
 * sni.table.route("A.example.")?.service; // "a"
 * ```
 */
export interface SniRouting {
  routes: readonly SniRoute[];
  /** The service of clients no route places (`--sni-default`); `""`, the default service. */
  defaultService: string;
  table: SniRoutes;
}

/** Builds the {@link SniRouting} of `routes`; throws a usage error for a pattern given twice. */
export function sniRouting(routes: readonly SniRoute[], defaultService: string): SniRouting {
  return { routes, defaultService, table: new SniRoutes(routes) };
}

function withoutTrailingDot(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

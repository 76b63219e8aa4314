/**
 * Who may connect: the `--allow`/`--deny` rules, `--proxy-from`, and the
 * per-client limits, decided for each client before any channel is chosen.
 * A refused client is counted, warned about (throttled per kind) and closed.
 *
 * @module
 */
import { addressBytes } from "../selection/hash.ts";
import type { SharedState } from "../model/state.ts";
import { type AccessRule, AccessRules, ipv4Value, type RuleMatch } from "./rules.ts";
import { type ClientKey, clientKey, type ClientLimits, type ClientRow, ClientTable } from "./client_table.ts";

/**
 * The access settings in force: what `show --json` shows, what a reload
 * replaces, what workers are sent.
 *
 * @example
 * ```ts
 * const settings: AccessSettings = { rules: [{ action: "deny", spec: "all" }], maxPerClient: 10 };
 * ```
 */
export interface AccessSettings {
  /** `--allow`/`--deny`, in the order given. */
  rules: AccessRule[];
  /** `--proxy-from`: the only peers that may send a PROXY header. */
  proxyFrom?: string;
  /** `--max-per-client`. */
  maxPerClient?: number;
  /** `--rate-per-client N/SEC`. */
  ratePerClient?: { connections: number; seconds: number };
}

/** A client the gate turned away: by a rule, or by a limit. */
export type Refusal = "denied" | "limited";

/** Slot of an admitted client the table does not track (nothing to release). */
export const UNTRACKED = -1;

/**
 * One thread's view of the access settings and the shared client table.
 *
 * @example
 * ```ts
 * const gate = new ClientGate(ClientTable.create(65536), state, warn, settings);
 * const slot = gate.admit("10.0.0.7"); // a slot, or "denied" / "limited"
 * if (typeof slot === "number") gate.release(slot); // when the connection ends
 * ```
 */
export class ClientGate {
  /** Whether anything is checked at all: without rules or limits a client costs nothing here. */
  active = false;
  private rules!: AccessRules;
  private proxyFrom: AccessRules | undefined;
  private limits!: ClientLimits;
  private settingsInForce!: AccessSettings;

  /** Throws a usage error for a malformed SPEC. */
  constructor(
    readonly table: ClientTable,
    private readonly state: SharedState,
    private readonly warn: (message: string, key: string) => void,
    settings: AccessSettings,
  ) {
    this.configure(settings);
  }

  /** The settings in force. */
  get settings(): AccessSettings {
    return this.settingsInForce;
  }

  /**
   * Puts `settings` in force at once (a reload): open connections stay, and
   * the table keeps every client's counts.
   */
  configure(settings: AccessSettings): void {
    this.rules = new AccessRules(settings.rules);
    this.proxyFrom = settings.proxyFrom === undefined
      ? undefined
      : new AccessRules([{ action: "allow", spec: settings.proxyFrom }]);
    this.limits = { maxOpen: settings.maxPerClient, rate: settings.ratePerClient };
    this.settingsInForce = settings;
    this.active = this.rules.any || settings.maxPerClient !== undefined || settings.ratePerClient !== undefined;
  }

  /** `--proxy-from`: whether `peer` may connect at all; one that may not is counted and warned about. */
  peerAllowed(peer: string): boolean {
    if (!this.proxyFrom) return true;
    const bytes = addressBytes(peer);
    if (bytes && this.proxyFrom.match(bytes)) return true;
    this.state.countDenied();
    this.warn(`client ${peer} denied by --proxy-from`, "client denied");
    return false;
  }

  /**
   * Rules first, then limits: a slot for the admitted client (pass it to
   * {@link release} when its connection ends), or why it is refused.
   */
  admit(client: string): number | Refusal {
    const v4 = ipv4Value(client);
    let key: ClientKey;
    let match: RuleMatch | undefined;
    if (v4 >= 0) {
      key = { family: 4, hi: 0, lo: v4 | 0 };
      match = this.rules.match4(v4);
    } else {
      const bytes = addressBytes(client);
      // Not an address (a PROXY v1 UNKNOWN names none): nothing to match or count.
      if (!bytes) return UNTRACKED;
      key = clientKey(bytes);
      match = this.rules.match(bytes);
    }
    // The wall clock, the one every thread shares; the table bears a step back.
    const now = Date.now();
    if (match?.action === "deny") {
      this.table.refuse(key, now);
      this.state.countDenied();
      this.warn(`client ${client} denied by ${match.rule}`, "client denied");
      return "denied";
    }
    const slot = this.table.admit(key, this.limits, now);
    if (typeof slot === "number") return slot;
    this.state.countLimited(slot);
    const { maxPerClient, ratePerClient } = this.settingsInForce;
    const limit = slot === "concurrent"
      ? `--max-per-client ${maxPerClient}`
      : `--rate-per-client ${ratePerClient!.connections}/${ratePerClient!.seconds}`;
    this.warn(`client ${client} limited by ${limit}`, `client limited ${slot}`);
    return "limited";
  }

  /** The connection {@link admit} gave `slot` has ended. */
  release(slot: number): void {
    if (slot !== UNTRACKED) this.table.release(slot);
  }

  /** `clients`: the `n` clients with the most open connections. */
  top(n: number): ClientRow[] {
    return this.table.top(n);
  }
}

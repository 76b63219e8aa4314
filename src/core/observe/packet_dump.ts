/**
 * The `-p` packet dump of balance: relayed data made readable.
 *
 * @module
 */

/** `->` client to server, `-<` server to client. */
export type Direction = "->" | "-<";

const WRAP_COLUMN = 80;

/**
 * Formats one relayed chunk: a header line `-> N` (or `-< N`), then the bytes
 * with printable ASCII as is, `\` as `\\` and every other byte as `\XX` hex;
 * a line break follows each `\0A` and any line reaching 80 columns, and the
 * dump always ends with a line break. Terminal control bytes thus never reach
 * the terminal raw.
 *
 * @example
 * ```ts
 * formatPacketDump("->", new TextEncoder().encode("GET /\r\n"));
 * // "-> 7\nGET /\\0D\\0A\n"
 * ```
 */
export function formatPacketDump(direction: Direction, bytes: Uint8Array): string {
  let out = `${direction} ${bytes.length}\n`;
  let column = 0;
  for (const b of bytes) {
    let piece: string;
    if (b === 0x5c) piece = "\\\\";
    else if (b >= 0x20 && b <= 0x7e) piece = String.fromCharCode(b);
    else piece = "\\" + b.toString(16).toUpperCase().padStart(2, "0");
    out += piece;
    column += piece.length;
    if (b === 0x0a || column >= WRAP_COLUMN) {
      out += "\n";
      column = 0;
    }
  }
  return column > 0 ? out + "\n" : out;
}

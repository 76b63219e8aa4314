import { usageError } from "../util/exit_error.ts";
import { shown } from "../util/shown.ts";

const SIMPLE: Record<string, number> = { r: 0x0d, n: 0x0a, t: 0x09, "\\": 0x5c };

/**
 * The bytes of a `--check-send`/`--check-expect` value: `\r`, `\n`, `\t`,
 * `\\` and `\xNN` (two hex digits) are decoded, everything else is taken as
 * UTF-8. Any other backslash sequence is a usage error (exit 64, one line),
 * so a typo never sends something else than meant.
 *
 * @example
 * ```ts
 * decodeEscapes("PING\\r\\n", "--check-send"); // Uint8Array [80, 73, 78, 71, 13, 10]
 * decodeEscapes("\\x00\\xff", "--check-expect"); // Uint8Array [0, 255]
 * ```
 */
export function decodeEscapes(text: string, option: string): Uint8Array {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  let literal = "";
  const flush = () => {
    bytes.push(...encoder.encode(literal));
    literal = "";
  };
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== "\\") {
      literal += text[i];
      continue;
    }
    flush();
    const next = text[i + 1];
    if (next !== undefined && next in SIMPLE) {
      bytes.push(SIMPLE[next]);
      i++;
    } else if (next === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      bytes.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      const sequence = next === undefined ? "\\" : next === "x" ? text.slice(i, i + 4) : `\\${next}`;
      throw usageError(
        `invalid ${option} '${shown(text)}': unknown escape '${shown(sequence)}' (use \\r \\n \\t \\\\ \\xNN)`,
      );
    }
  }
  flush();
  return Uint8Array.from(bytes);
}

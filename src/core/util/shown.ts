/**
 * Makes outside text safe to put in a message: control characters and
 * anything beyond printable ASCII become escapes (`\n`, `\x1b`, `\u00e9`),
 * and long text is cut. Whatever a user or client typed then reaches the
 * terminal or the log as one harmless line.
 *
 * @example
 * ```ts
 * shown("a\nb\x1b[31m"); // "a\\nb\\x1b[31m"
 * ```
 */
export function shown(text: string, max = 80): string {
  const cut = text.length > max ? text.slice(0, max) : text;
  const escaped = JSON.stringify(cut).slice(1, -1)
    .replaceAll('\\"', '"')
    .replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return cut === text ? escaped : `${escaped}...`;
}

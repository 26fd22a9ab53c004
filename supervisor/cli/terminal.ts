/**
 * Terminal-safe text. Issue titles and bodies are written by strangers and agent output by a
 * program that runs their text: printed raw, `ESC[2J` clears the screen, OSC 0 retitles the
 * terminal, OSC 52 writes the clipboard, OSC 8 hides a link behind harmless text, and bidi
 * overrides make a line read differently from what it contains. Every human-readable output
 * goes through `escapeTerminal`; `--raw` opts out, `--json` is exact JSON (which escapes
 * control characters itself).
 */

/**
 * C0 controls but tab and newline, DEL, C1 controls (0x80–0x9f: 8-bit CSI/OSC on some
 * terminals), and the bidi controls: LRM/RLM/ALM, embeddings and overrides U+202A–202E,
 * isolates U+2066–2069.
 */
const UNSAFE =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  return code < 0x100
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `text` with every unsafe character shown as `\xNN` / `\uNNNN` (tabs and newlines kept). */
export function escapeTerminal(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

/** True when `text` holds something `escapeTerminal` would change. */
export function hasUnsafe(text: string): boolean {
  UNSAFE.lastIndex = 0;
  const found = UNSAFE.test(text);
  UNSAFE.lastIndex = 0;
  return found;
}

let raw = false;

/** `--raw`: print issue text and agent output as they are (the user asked for it). */
export function setRawOutput(on: boolean): void {
  raw = on;
}

export function rawOutput(): boolean {
  return raw;
}

/** What a human-readable output prints for untrusted text: escaped unless `--raw`. */
export function forTerminal(text: string): string {
  return raw ? text : escapeTerminal(text);
}

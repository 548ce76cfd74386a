/**
 * Output rows are made by splicing text, never by parsing and re-serialising the input row, so every
 * field reaches output.jsonl byte for byte (big integers, `1.50`, `1e400`, key order, escapes) and a
 * deeply nested row costs no recursion. The scanner walks the row once, iteratively, tracking only
 * strings and nesting depth, and reports the top-level members of an object.
 */

export interface TopLevelMember {
  /** The decoded key. */
  key: string;
  /** [start, end) of the whole member text: from the key's opening quote to the end of its value. */
  start: number;
  end: number;
}

export interface ScannedRow {
  /** The row is a JSON object (after trimming whitespace). */
  isObject: boolean;
  members: TopLevelMember[];
  /** Offset of the object's closing brace. */
  close: number;
}

/** Walks a JSON text (already validated by the producer) and returns its top-level object members. */
export function scanRow(text: string): ScannedRow {
  const open = firstNonSpace(text, 0);
  if (text[open] !== '{') return { isObject: false, members: [], close: -1 };
  const members: TopLevelMember[] = [];
  let depth = 0;
  let memberStart = -1;
  let key: string | undefined;
  let expectKey = true;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      if (depth === 1 && expectKey) {
        memberStart = i;
        key = JSON.parse(text.slice(i, end + 1)) as string;
        expectKey = false;
      }
      i = end;
    } else if (c === '{' || c === '[') {
      depth++;
    } else if (c === '}' || c === ']') {
      if (depth === 1 && c === '}') {
        if (key !== undefined) members.push({ key, start: memberStart, end: trimEnd(text, i) });
        return { isObject: true, members, close: i };
      }
      depth--;
    } else if (c === ',' && depth === 1) {
      if (key !== undefined) members.push({ key, start: memberStart, end: trimEnd(text, i) });
      key = undefined;
      expectKey = true;
    }
  }
  return { isObject: false, members: [], close: -1 };
}

function firstNonSpace(text: string, from: number): number {
  let i = from;
  while (i < text.length && /\s/.test(text[i]!)) i++;
  return i;
}

/** Index of the closing quote of the string starting at `start`. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return text.length - 1;
}

/** End of a member's text before the separator at `at` (whitespace before it left out). */
function trimEnd(text: string, at: number): number {
  let i = at;
  while (i > 0 && /\s/.test(text[i - 1]!)) i--;
  return i;
}

/**
 * Whitespace between tokens as single spaces where it holds a line break (a row's text may contain raw
 * CR or LF between tokens; output.jsonl lines cannot). Inside strings nothing changes.
 */
export function oneLine(text: string): string {
  if (!/[\r\n]/.test(text)) return text;
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      const end = stringEnd(text, i);
      out += text.slice(i, end + 1);
      i = end;
    } else out += c === '\r' || c === '\n' ? ' ' : c;
  }
  return out;
}

/** Keys t2i appends to output rows. An input row's own members of these names are kept, renamed. */
export const OUTPUT_KEYS = ['images', 'image_meta'] as const;

/**
 * The row's text with `appended` members added before its closing brace. An input member named like
 * one t2i writes (`images`, `image_meta`) keeps its value byte for byte under `input_<name>` so the
 * output has one member per key. A row that is not an object is wrapped: `{"row":<text>,…}`.
 */
export function spliceRow(rowJson: string, appended: string): string {
  const text = oneLine(rowJson.trim());
  const scanned = scanRow(text);
  if (!scanned.isObject) return `{"row":${text === '' ? 'null' : text},${appended}}`;
  let body = text.slice(0, scanned.close);
  // Rename from the end so earlier offsets stay valid.
  for (const member of [...scanned.members].reverse()) {
    if (!(OUTPUT_KEYS as readonly string[]).includes(member.key)) continue;
    const keyEnd = stringEnd(body, member.start);
    body = `${body.slice(0, member.start)}${JSON.stringify(`input_${member.key}`)}${body.slice(keyEnd + 1)}`;
  }
  body = body.trimEnd();
  return `${body}${scanned.members.length > 0 ? ',' : ''}${appended}}`;
}

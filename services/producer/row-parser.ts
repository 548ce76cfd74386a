import { isUtf8 } from 'node:buffer';
import type { InputLine } from './line-splitter.ts';
import { readOverrides, type GenerationOverrides } from './overrides.ts';

/** The rules a row is checked against (from the job's options). */
export interface RowRules {
  /** Field holding the chat messages (`conversations` by default). */
  promptKey: string;
  /** Longest prompt, in characters (Unicode code points). */
  maxPromptChars: number;
  /** Most prompts one row may hold (each becomes a request carrying the whole row). */
  maxPromptsPerRow: number;
  /** Longest line, in bytes. */
  maxLineBytes: number;
  /** How much of a bad line goes into its error record, in bytes. */
  maxRawBytes: number;
}

export interface GoodRow {
  ok: true;
  prompts: string[];
  overrides: GenerationOverrides;
  /** The row as it was in the input (JSON text, without line ending or BOM). */
  rowJson: string;
}

export interface BadRow {
  ok: false;
  stage: 'parse' | 'validate';
  /** The reason, naming the field and the fix. */
  error: string;
  /** The line's text, cut to `maxRawBytes` (invalid UTF-8 bytes shown as U+FFFD). */
  raw: string;
}

export type RowOutcome = GoodRow | BadRow;

/**
 * Checks one input line and extracts its prompts and overrides. Returns null for a blank line (not a
 * row: it produces nothing). Pure: the same line and rules always give the same outcome.
 */
export function parseLine(line: InputLine, rules: RowRules): RowOutcome | null {
  const { bytes } = line;
  if (line.truncated) {
    return bad(
      'parse',
      `line is ${line.length} bytes, over the ${rules.maxLineBytes}-byte limit: shorten the row (or raise --max-line-bytes)`,
      bytes,
      rules,
    );
  }
  if (isBlank(bytes)) return null;
  if (!isUtf8(bytes)) {
    return bad(
      'parse',
      `line is not valid UTF-8 (first bad byte at byte ${firstInvalidUtf8Offset(bytes) + 1}): save the file as UTF-8`,
      bytes,
      rules,
    );
  }
  const text = bytes.toString('utf8');
  let row: unknown;
  try {
    row = JSON.parse(text);
  } catch (error) {
    return bad('parse', `invalid JSON (${(error as Error).message}): each line must be one JSON object`, bytes, rules);
  }
  if (row === null || typeof row !== 'object' || Array.isArray(row)) {
    const kind = row === null ? 'null' : Array.isArray(row) ? 'an array' : `a ${typeof row}`;
    return bad('validate', `the line is ${kind}, not a JSON object: each line must be one object like {"prompt": "…"}`, bytes, rules);
  }
  const record = row as Record<string, unknown>;

  const extracted = extractPrompts(record, rules.promptKey);
  if (!extracted.ok) return bad('validate', extracted.error, bytes, rules);
  const { prompts } = extracted;
  if (prompts.length > rules.maxPromptsPerRow) {
    return bad(
      'validate',
      `the row has ${prompts.length} prompts, over the ${rules.maxPromptsPerRow} limit of one row (each prompt's request carries the whole row): split its prompts over rows (or raise --max-prompts-per-row)`,
      bytes,
      rules,
    );
  }
  for (let i = 0; i < prompts.length; i++) {
    const prompt = prompts[i]!;
    // UTF-16 length bounds the code point count from above: count code points only when it might matter.
    if (prompt.length > rules.maxPromptChars) {
      const chars = countCodePoints(prompt);
      if (chars > rules.maxPromptChars) {
        const which = prompts.length > 1 ? `prompt ${i + 1} of ${prompts.length}` : 'the prompt';
        return bad(
          'validate',
          `${which} is ${chars} characters, over the ${rules.maxPromptChars} limit: shorten it (or raise --max-prompt-chars)`,
          bytes,
          rules,
        );
      }
    }
  }

  const { overrides, problems } = readOverrides(record);
  if (problems.length > 0) return bad('validate', problems.join('; '), bytes, rules);
  if (overrides.seed !== undefined && overrides.seed > Number.MAX_SAFE_INTEGER - (prompts.length - 1)) {
    return bad(
      'validate',
      `seed ${overrides.seed} + ${prompts.length - 1} (one per further prompt of the row) exceeds ${Number.MAX_SAFE_INTEGER}: use a smaller seed`,
      bytes,
      rules,
    );
  }
  return { ok: true, prompts, overrides, rowJson: text };
}

/**
 * The prompts of a row, in the design's order of precedence: the chat messages under `promptKey`
 * (each message with role `user` or no role and non-empty string content, in order), else `prompt`,
 * else `prompts`. The first of these that yields a prompt wins; when none does, the error says what
 * each present field lacks.
 */
export function extractPrompts(
  row: Record<string, unknown>,
  promptKey = 'conversations',
): { ok: true; prompts: string[] } | { ok: false; error: string } {
  const problems: string[] = [];

  const conversations = row[promptKey];
  if (conversations !== undefined && conversations !== null) {
    if (!Array.isArray(conversations)) {
      problems.push(`"${promptKey}" must be an array of {"role": "user", "content": "…"}`);
    } else {
      const prompts: string[] = [];
      for (const message of conversations) {
        if (message === null || typeof message !== 'object') continue;
        const { role, content } = message as { role?: unknown; content?: unknown };
        if (role !== undefined && role !== null && role !== 'user') continue;
        if (typeof content === 'string' && content.trim() !== '') prompts.push(content);
      }
      if (prompts.length > 0) return { ok: true, prompts };
      problems.push(`"${promptKey}" has no user message with non-empty string content`);
    }
  }

  const prompt = row.prompt;
  if (prompt !== undefined && prompt !== null) {
    if (typeof prompt === 'string' && prompt.trim() !== '') return { ok: true, prompts: [prompt] };
    problems.push('"prompt" must be a non-empty string');
  }

  const list = row.prompts;
  if (list !== undefined && list !== null) {
    if (!Array.isArray(list) || list.length === 0) {
      problems.push('"prompts" must be a non-empty array of non-empty strings');
    } else {
      const badIndex = list.findIndex((p) => typeof p !== 'string' || p.trim() === '');
      if (badIndex === -1) return { ok: true, prompts: list as string[] };
      problems.push(`"prompts"[${badIndex}] must be a non-empty string`);
    }
  }

  const expected = `give "${promptKey}" (array of {"role": "user", "content": "…"}), "prompt" (string) or "prompts" (array of strings)`;
  return { ok: false, error: problems.length > 0 ? `no prompt: ${problems.join('; ')}` : `no prompt: ${expected}` };
}

function bad(stage: BadRow['stage'], error: string, bytes: Buffer, rules: RowRules): BadRow {
  return { ok: false, stage, error, raw: headText(bytes, rules.maxRawBytes) };
}

/** The first `maxBytes` of `bytes` as text, cut at a character boundary. */
export function headText(bytes: Buffer, maxBytes: number): string {
  if (bytes.length <= maxBytes) return bytes.toString('utf8');
  let end = maxBytes;
  // Step back over continuation bytes (10xxxxxx) so the cut does not split a character.
  while (end > 0 && end > maxBytes - 4 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}

function isBlank(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  }
  return true;
}

function countCodePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is a single character.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

/** Offset of the first byte that breaks UTF-8 (only called on lines known to be invalid). */
export function firstInvalidUtf8Offset(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let need: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i;
    }
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return bytes.length;
}

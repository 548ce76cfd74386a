import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineSplitter, type InputLine } from '../../services/producer/line-splitter.ts';
import { overrideProblem, readOverrides } from '../../services/producer/overrides.ts';
import { extractPrompts, firstInvalidUtf8Offset, headText, parseLine, type RowRules } from '../../services/producer/row-parser.ts';

const rules: RowRules = { promptKey: 'conversations', maxPromptChars: 20, maxPromptsPerRow: 3, maxLineBytes: 200, maxRawBytes: 16 };

function line(text: string | Buffer, lineNo = 1): InputLine {
  const bytes = typeof text === 'string' ? Buffer.from(text) : text;
  return { lineNo, bytes, truncated: false, length: bytes.length };
}

function split(chunks: (string | Buffer)[], options = { maxLineBytes: 10, keepBytes: 4 }): InputLine[] {
  const splitter = new LineSplitter(options);
  const out: InputLine[] = [];
  const onLine = (l: InputLine) => out.push({ ...l, bytes: Buffer.from(l.bytes) });
  for (const chunk of chunks) splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk, onLine);
  splitter.end(onLine);
  return out;
}

test('line splitter: numbers lines from 1, drops BOM and CR, keeps blank lines as numbered lines, joins lines across chunks', () => {
  const lines = split(['\ufeffab\r\n', '\r\nc', 'de\n', 'f']);
  assert.deepEqual(
    lines.map((l) => [l.lineNo, l.bytes.toString(), l.truncated]),
    [
      [1, 'ab', false],
      [2, '', false],
      [3, 'cde', false],
      [4, 'f', false],
    ],
  );
});

test('line splitter: an over-long line is cut to its head, the rest skipped up to the next newline, across chunks', () => {
  const lines = split(['0123456789AB', 'CDEF', 'GH\nok\n', '0123456789ABCDEF\nend']);
  assert.deepEqual(
    lines.map((l) => [l.lineNo, l.bytes.toString(), l.truncated, l.length]),
    [
      [1, '0123', true, 18],
      [2, 'ok', false, 2],
      [3, '0123', true, 16],
      [4, 'end', false, 3],
    ],
  );
  // A line exactly at the limit, with CRLF, is not over it.
  assert.deepEqual(
    split(['0123456789\r\n']).map((l) => [l.bytes.toString(), l.truncated]),
    [['0123456789', false]],
  );
});

test('prompts: conversations user messages in order (role user or none, non-empty strings), then prompt, then prompts', () => {
  const row = {
    conversations: [
      { role: 'system', content: 'sys' },
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'x' },
      { content: 'b' },
      { role: 'user', content: '' },
      { role: 'user', content: [{ type: 'text' }] },
      { role: 'user', content: 'c' },
    ],
    prompt: 'ignored',
  };
  assert.deepEqual(extractPrompts(row), { ok: true, prompts: ['a', 'b', 'c'] });
  assert.deepEqual(extractPrompts({ prompt: 'p' }), { ok: true, prompts: ['p'] });
  assert.deepEqual(extractPrompts({ prompts: ['p', 'q'] }), { ok: true, prompts: ['p', 'q'] });
  assert.deepEqual(extractPrompts({ messages: [{ role: 'user', content: 'm' }] }, 'messages'), { ok: true, prompts: ['m'] });
  // A conversation without user content falls through to prompt.
  assert.deepEqual(extractPrompts({ conversations: [{ role: 'assistant', content: 'x' }], prompt: 'p' }), { ok: true, prompts: ['p'] });

  const none = extractPrompts({ id: 1 });
  assert.equal(none.ok, false);
  assert.match(!none.ok ? none.error : '', /no prompt: give "conversations".*"prompt".*"prompts"/);
  const badList = extractPrompts({ prompts: ['ok', 3] });
  assert.match(!badList.ok ? badList.error : '', /"prompts"\[1\] must be a non-empty string/);
  const badConv = extractPrompts({ conversations: 'hello' });
  assert.match(!badConv.ok ? badConv.error : '', /"conversations" must be an array/);
});

test('parseLine: good rows keep their text and overrides; blank lines are not rows', () => {
  const text = '{"prompt":"a cat","seed":7,"width":512,"height":null,"steps":4,"guidance":3.5,"extra":{"k":1}}';
  assert.deepEqual(parseLine(line(text), rules), {
    ok: true,
    prompts: ['a cat'],
    overrides: { seed: 7, width: 512, steps: 4, guidance: 3.5 },
    rowJson: text,
  });
  assert.equal(parseLine(line(''), rules), null);
  assert.equal(parseLine(line('  \t'), rules), null);
});

test('parseLine: each kind of bad row gets its stage and a reason naming the fix', () => {
  const cases: [string | Buffer, 'parse' | 'validate', RegExp][] = [
    [Buffer.from([0x7b, 0x22, 0x70, 0xff, 0xfe, 0x7d]), 'parse', /not valid UTF-8 \(first bad byte at byte 4\)/],
    ['{"prompt": "a"', 'parse', /invalid JSON .*each line must be one JSON object/],
    ['[1,2]', 'validate', /the line is an array, not a JSON object/],
    ['"just text"', 'validate', /the line is a string, not a JSON object/],
    ['{"id": 3}', 'validate', /no prompt/],
    ['{"prompt": "this prompt is far longer than twenty characters"}', 'validate', /the prompt is 48 characters, over the 20 limit/],
    ['{"prompts": ["ok", "this one is much too long"]}', 'validate', /prompt 2 of 2 is 25 characters/],
    ['{"prompt": "a", "width": 500}', 'validate', /width must be an integer multiple of 16 from 16 to 4096, got 500 \(nearest: 496\)/],
    ['{"prompt": "a", "height": "512"}', 'validate', /height must be .* got "512"/],
    ['{"prompt": "a", "steps": 0}', 'validate', /steps must be an integer from 1 to 200, got 0/],
    ['{"prompt": "a", "guidance": 101}', 'validate', /guidance must be a number from 0 to 100, got 101/],
    ['{"prompt": "a", "seed": -1}', 'validate', /seed must be an integer from 0 to 9007199254740991, got -1/],
    ['{"prompt": "a", "seed": 1.5}', 'validate', /seed must be/],
    ['{"prompts": ["a", "b"], "seed": 9007199254740991}', 'validate', /exceeds 9007199254740991/],
  ];
  for (const [text, stage, pattern] of cases) {
    const outcome = parseLine(line(text), rules);
    assert.ok(outcome && !outcome.ok, `expected a bad row: ${String(text)}`);
    assert.equal(outcome.stage, stage, String(text));
    assert.match(outcome.error, pattern, String(text));
    assert.ok(Buffer.byteLength(outcome.raw) <= rules.maxRawBytes + 3, 'raw is truncated');
  }
  // Both bad overrides are named.
  const two = parseLine(line('{"prompt": "a", "steps": 0, "guidance": -1}'), rules);
  assert.match(two && !two.ok ? two.error : '', /steps .*; guidance/);
  // A truncated (over-long) line.
  const long = parseLine({ lineNo: 9, bytes: Buffer.from('{"prompt":'), truncated: true, length: 5000 }, rules);
  assert.deepEqual(long, {
    ok: false,
    stage: 'parse',
    error: 'line is 5000 bytes, over the 200-byte limit: shorten the row (or raise --max-line-bytes)',
    raw: '{"prompt":',
  });
});

test('prompt limit counts characters (code points), not UTF-16 units', () => {
  const emoji = '😀'.repeat(20); // 40 UTF-16 units, 20 characters
  const outcome = parseLine(line(JSON.stringify({ prompt: emoji })), { ...rules, maxLineBytes: 1000 });
  assert.ok(outcome?.ok);
});

test('overrides: null is absent; values at the bounds pass', () => {
  assert.deepEqual(readOverrides({ seed: null, width: 16, height: 4096, steps: 200, guidance: 0 }), {
    overrides: { width: 16, height: 4096, steps: 200, guidance: 0 },
    problems: [],
  });
  assert.equal(overrideProblem('seed', Number.MAX_SAFE_INTEGER), undefined);
  assert.match(overrideProblem('seed', 2 ** 64) ?? '', /seed must be/);
  assert.match(overrideProblem('width', 4112) ?? '', /width/);
});

test('headText cuts at a character boundary; firstInvalidUtf8Offset finds the bad byte', () => {
  assert.equal(headText(Buffer.from('aéé'), 2), 'a');
  assert.equal(headText(Buffer.from('aéé'), 3), 'aé');
  assert.equal(firstInvalidUtf8Offset(Buffer.from([0x61, 0xc3, 0xa9, 0xc3])), 3);
  assert.equal(firstInvalidUtf8Offset(Buffer.from([0xed, 0xa0, 0x80])), 0); // a UTF-16 surrogate encoded in UTF-8
  assert.equal(firstInvalidUtf8Offset(Buffer.from([0xc0, 0x80])), 0); // overlong
});

test('row parser: a row with more prompts than maxPromptsPerRow is a validate error naming the count, the limit and the fix', () => {
  const three = parseLine(line(JSON.stringify({ prompts: ['a', 'b', 'c'] }), 1), rules);
  assert.ok(three?.ok, 'a row at the limit is a good row');
  const four = parseLine(line(JSON.stringify({ prompts: ['a', 'b', 'c', 'd'] }), 2), rules);
  assert.ok(four && !four.ok);
  assert.equal(four.stage, 'validate');
  assert.match(four.error, new RegExp(`4 prompts, over the ${rules.maxPromptsPerRow} limit`));
  assert.match(four.error, /--max-prompts-per-row/);
  const chat = Array.from({ length: 5 }, (_, i) => ({ role: 'user', content: `m${i}` }));
  const five = parseLine(line(JSON.stringify({ conversations: chat }), 3), rules);
  assert.ok(five && !five.ok && /5 prompts/.test(five.error), 'chat messages count too');
});

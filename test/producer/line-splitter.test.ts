import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineSplitter, type InputLine } from '../../services/producer/line-splitter.ts';

function split(
  chunks: Buffer[],
  maxLineBytes = 100,
  keepBytes = 8,
): { lineNo: number; text: string; truncated: boolean; length: number }[] {
  const out: InputLine[] = [];
  const splitter = new LineSplitter({ maxLineBytes, keepBytes });
  for (const chunk of chunks) splitter.push(chunk, (l) => out.push({ ...l, bytes: Buffer.from(l.bytes) }));
  splitter.end((l) => out.push(l));
  return out.map((l) => ({ lineNo: l.lineNo, text: l.bytes.toString('utf8'), truncated: l.truncated, length: l.length }));
}
const bytewise = (text: string) => [...Buffer.from(text, 'utf8')].map((b) => Buffer.from([b]));
const texts = (lines: { text: string }[]) => lines.map((l) => l.text);

test('a BOM split across the first chunks is dropped (stdin can deliver one byte at a time)', () => {
  const input = '\ufeff{"a":1}\n{"b":2}\n';
  assert.deepEqual(texts(split(bytewise(input))), ['{"a":1}', '{"b":2}']);
  assert.deepEqual(texts(split([Buffer.from(input)])), ['{"a":1}', '{"b":2}']);
  // Bytes that only start like a BOM are content.
  assert.deepEqual(texts(split([Buffer.from([0xef]), Buffer.from([0xbb, 0x41, 0x0a])])), [
    Buffer.from([0xef, 0xbb, 0x41]).toString('utf8'),
  ]);
  assert.deepEqual(texts(split([Buffer.from([0xef])])), [Buffer.from([0xef]).toString('utf8')]);
});

test('line endings: LF, CRLF (also split across chunks) and lone CR (classic Mac) all end a line', () => {
  const input = '{"a":1}\r{"b":2}\r\n{"c":3}\n\r\n{"d":4}\r';
  const expected = ['{"a":1}', '{"b":2}', '{"c":3}', '', '{"d":4}'];
  assert.deepEqual(texts(split([Buffer.from(input)])), expected);
  assert.deepEqual(texts(split(bytewise(input))), expected, 'fed one byte at a time');
  assert.deepEqual(
    split(bytewise(input)).map((l) => l.lineNo),
    [1, 2, 3, 4, 5],
  );
});

test('any chunking gives the same lines as one chunk (over-long lines included)', () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 50; round++) {
    const parts: string[] = [];
    for (let i = 0; i < 20; i++) parts.push('x'.repeat(1 + Math.floor(rand() * 30)) + ['\n', '\r\n', '\r'][Math.floor(rand() * 3)]!);
    const input = Buffer.from((rand() < 0.5 ? '\ufeff' : '') + parts.join(''));
    const whole = split([input], 20, 4);
    const chunks: Buffer[] = [];
    for (let i = 0; i < input.length;) {
      const n = 1 + Math.floor(rand() * 7);
      chunks.push(input.subarray(i, i + n));
      i += n;
    }
    assert.deepEqual(split(chunks, 20, 4), whole, `round ${round}`);
    assert.equal(whole.length, 20);
    assert.ok(whole.every((l) => l.truncated === l.length > 20));
  }
});

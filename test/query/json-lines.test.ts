import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCursor, splitLines, type Line } from '../../services/query/json-lines.ts';
import { QueryError } from '../../services/query/query-error.ts';

async function collect(chunks: (string | Buffer)[], start = 0, max?: number): Promise<Line[]> {
  const out: Line[] = [];
  for await (const line of splitLines(
    (async function* () {
      yield* chunks;
    })(),
    start,
    max,
  ))
    out.push(line);
  return out;
}

test('splitLines: byte offsets across chunk boundaries, multi-byte UTF-8, CRLF, blank lines, no final newline', async () => {
  const text = '{"a":1}\r\n\n{"p":"café ☕"}\n   \n{"z":true}';
  const bytes = Buffer.from(text);
  // Every split point, including inside the multi-byte characters.
  for (let cut = 0; cut <= bytes.length; cut++) {
    const lines = await collect([bytes.subarray(0, cut), bytes.subarray(cut)]);
    assert.deepEqual(
      lines.map((l) => l.text),
      ['{"a":1}', '{"p":"café ☕"}', '{"z":true}'],
      `cut ${cut}`,
    );
    for (const line of lines)
      assert.equal(
        bytes
          .subarray(line.start, line.end)
          .toString()
          .replace(/\r?\n$/, ''),
        line.text,
      );
  }
  const lines = await collect([bytes], 1000);
  assert.deepEqual(
    lines.map((l) => [l.start, l.end]),
    [
      [1000, 1009],
      [1010, 1028],
      [1032, 1042],
    ],
  );
});

test('splitLines refuses a line over the limit; cursors are decimal offsets', async () => {
  await assert.rejects(collect(['x'.repeat(50), 'y'.repeat(50)], 0, 64), /over 64 bytes/);
  assert.equal(parseCursor(undefined), 0);
  assert.equal(parseCursor('123'), 123);
  for (const bad of ['-1', 'abc', '1.5', '1'.repeat(16)]) assert.throws(() => parseCursor(bad), QueryError);
});

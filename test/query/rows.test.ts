import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTestEnv } from '../helpers/env.ts';
import { findRow, promptsOf, readRowsPage, rowView } from '../../services/query/rows.ts';

test('promptsOf: user messages of conversations, else prompt, else prompts', () => {
  assert.deepEqual(
    promptsOf({
      conversations: [
        { role: 'system', content: 'sys' },
        { role: 'user', content: 'one' },
        { content: 'two' },
        { role: 'assistant', content: 'no' },
        { role: 'user', content: '  ' },
        { role: 'user', content: 3 },
      ],
      prompt: 'ignored',
    }),
    ['one', 'two'],
  );
  assert.deepEqual(promptsOf({ conversations: [{ role: 'assistant', content: 'x' }], prompt: 'p' }), ['p']);
  assert.deepEqual(promptsOf({ prompts: ['a', 2, '', 'b'] }), ['a', 'b']);
  assert.deepEqual(promptsOf({ text: 'nothing' }), []);
});

test('a row nested 5000 deep comes back as its stored text, so the API can answer (issue 15, item 4)', () => {
  const text = `{"prompt":"x","d":${'['.repeat(5000)}1${']'.repeat(5000)},"images":["s3://b/jobs/j/images/000000001-0.png"]}`;
  const deep = rowView({ text, start: 0, end: text.length } as Parameters<typeof rowView>[0])!;
  assert.equal(deep.text, text);
  assert.deepEqual(deep.prompts, ['x']);
  assert.equal(deep.row, 1);
  assert.equal(JSON.parse(JSON.stringify(deep)).text, text, 'the view serialises');
  const flat = rowView({ text: '{"prompt":"y","n":[1,[2]]}', start: 0, end: 26 } as Parameters<typeof rowView>[0])!;
  assert.equal(flat.text, undefined);
  assert.deepEqual(flat.data.n, [1, [2]]);
});

test('rowView: row number and k from the image keys (s3:// or https://), aligned image_meta, unknown layouts kept', () => {
  const line = {
    start: 10,
    end: 20,
    text: JSON.stringify({
      prompts: ['a', 'b', 'c'],
      images: ['s3://bkt/jobs/j1/images/000000042-0.png', 'https://cdn.example/x/jobs/j1/images/000000042-2.png', 'file:///elsewhere.png'],
      image_meta: [{ seed: 1 }, { seed: 3 }],
    }),
  };
  const view = rowView(line);
  assert.ok(view);
  assert.equal(view.row, 42);
  assert.equal(view.offset, 10);
  assert.deepEqual(
    view.images.map((i) => [i.row, i.k, i.meta?.seed]),
    [
      [42, 0, 1],
      [42, 2, 3],
      [null, null, undefined],
    ],
  );
  assert.equal(rowView({ start: 0, end: 5, text: '[1,2]' }), undefined);
  assert.equal(rowView({ start: 0, end: 5, text: '{bad' }), undefined);
});

// The timeout turns a leaked connection (abandoned ranged GETs exhaust the client's sockets and hang) into a failure.
test(
  'a large output.jsonl: findRow by binary search over ranged reads, filtered pages with a bounded scan',
  { timeout: 120_000 },
  async () => {
    const { store } = await createTestEnv();
    // 20,000 input lines: every 7th was bad (no output row), every 11th row produced no image (no number).
    const lines: string[] = [];
    const expected = new Map<number, string>();
    for (let row = 1; row <= 20_000; row++) {
      if (row % 7 === 0) continue;
      const prompt = row % 1000 === 500 ? `needle ${row}` : `prompt number ${row} ${'x'.repeat(row % 97)}`;
      const images = row % 11 === 0 ? [] : [`s3://${store.bucket}/jobs/big/images/${String(row).padStart(9, '0')}-0.png`];
      const text = JSON.stringify({ id: row, prompt, images, image_meta: images.map(() => ({ seed: row })) });
      lines.push(text);
      if (images.length > 0) expected.set(row, text);
    }
    const body = `${lines.join('\n')}\n`;
    await store.put('jobs/big/output.jsonl', body, 'application/x-ndjson');
    assert.ok(body.length > 1_500_000, `large enough to need probes: ${body.length}`);

    for (const row of [1, 2, 6, 8, 12_345, 19_997, 20_000, 9_998, 15_002]) {
      const found = await findRow(store, 'big', row);
      assert.ok(found, `row ${row}`);
      assert.equal(found.row, row);
      assert.equal(found.data.id, row);
      assert.equal(body.slice(found.offset, found.offset + (expected.get(row) as string).length), expected.get(row));
    }
    for (const row of [7, 14, 11, 22, 15_001, 19_998, 19_999, 20_001, 99_999])
      assert.equal(await findRow(store, 'big', row), undefined, `row ${row} has no numbered output row`);
    assert.equal(await findRow(store, 'nope', 1), undefined);

    // A search for a rare prompt scans at most ~maxScanBytes per page and goes on from the cursor.
    const maxScanBytes = 128 * 1024;
    const found: number[] = [];
    let cursor: number | undefined = 0;
    let pages = 0;
    while (cursor !== undefined) {
      const page = await readRowsPage(store, 'big', { offset: cursor, limit: 5, grep: 'NEEDLE', maxScanBytes });
      assert.ok(page);
      assert.ok(page.scannedBytes <= maxScanBytes + 300, `page scanned ${page.scannedBytes}`);
      found.push(...page.items.map((r) => r.data.id as number));
      cursor = page.nextCursor === undefined ? undefined : Number(page.nextCursor);
      pages++;
    }
    const needles = Array.from({ length: 20 }, (_, i) => i * 1000 + 500).filter((r) => r % 7 !== 0);
    assert.deepEqual(found, needles);
    assert.ok(pages >= Math.floor(body.length / maxScanBytes), `${pages} pages`);
  },
);

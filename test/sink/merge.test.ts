import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { mergeSortedParts, readLines, sortAndDedupe, type MergeCounters } from '../../services/sink/merge.ts';
import { errorEntryLine, imageEntryLine, parseEntry, type PartEntry } from '../../services/sink/part-format.ts';
import { imageResult } from './synthetic-job.ts';
import { parsePartKey, partKey } from '../../services/common/bucket-layout.ts';

function img(row: number, k: number): string {
  return imageEntryLine(imageResult('j', row, k, 3, `p${row}.${k}`, '{"a":1}'));
}

function err(row: number, k: number | null, error = 'boom'): string {
  return errorEntryLine({
    jobId: 'j',
    row,
    promptIndex: k,
    promptCount: k === null ? null : 3,
    stage: 'engine',
    error,
    raw: null,
    prompt: 'p',
    rowJson: '{}',
    attempts: 1,
    createdAt: 1,
  });
}

async function* lines(list: string[]): AsyncGenerator<string> {
  for (const l of list) yield l;
}

async function collect(it: AsyncIterable<PartEntry>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of it) out.push(`${e.row}:${e.promptIndex}:${e.kind}`);
  return out;
}

test('part lines round-trip their sort key; part keys carry their line count', () => {
  const entry = parseEntry(err(12, null));
  assert.deepEqual([entry?.row, entry?.promptIndex, entry?.kind], [12, -1, 1]);
  assert.equal(parseEntry('not\ta line'), undefined);
  assert.equal(parseEntry('x\t1\t0\t{}'), undefined);
  const key = partKey('job-1', '01J0ABC', 5000);
  assert.equal(key, 'jobs/job-1/_sink/parts/01J0ABC-n5000.jsonl');
  assert.deepEqual(parsePartKey(key), { id: '01J0ABC', count: 5000 });
  assert.equal(parsePartKey('jobs/job-1/output.jsonl'), undefined);
});

test('a buffer is sorted by (row, prompt, kind) and exact-key duplicates dropped, the image beating a dead letter', () => {
  const out = sortAndDedupe([err(3, 0), img(2, 1), img(3, 0), err(2, null), img(2, 1), img(10, 0), img(2, 0)]).map((l) => {
    const e = parseEntry(l) as PartEntry;
    return `${e.row}:${e.promptIndex}:${e.kind}`;
  });
  // numeric order (10 after 3), whole-row dead letter (-1) first, image (0) kept over dead letter (1) for 3:0
  assert.deepEqual(out, ['2:-1:1', '2:0:0', '2:1:0', '3:0:0', '10:0:0']);
});

test('k-way merge de-duplicates across parts and counts what it read', async () => {
  const a = sortAndDedupe([img(1, 0), img(2, 0), img(4, 1), err(5, null)]);
  const b = sortAndDedupe([img(1, 0), err(2, 0), img(3, 0), img(4, 0)]);
  const c = sortAndDedupe([err(2, 0, 'other text'), img(4, 1), img(6, 2)]);
  const counters: MergeCounters = { read: 0, distinct: 0 };
  const merged = await collect(
    mergeSortedParts(
      [a, b, c].map((l, i) => ({ name: `p${i}`, lines: lines(l) })),
      counters,
    ),
  );
  assert.deepEqual(merged, ['1:0:0', '2:0:0', '3:0:0', '4:0:0', '4:1:0', '5:-1:1', '6:2:0']);
  assert.deepEqual(counters, { read: 11, distinct: 7 });
});

test('the merge refuses an unsorted part', async () => {
  await assert.rejects(collect(mergeSortedParts([{ name: 'bad', lines: lines([img(2, 0), img(1, 0)]) }])), /not sorted at row 1/);
});

test('readLines splits across chunk boundaries, including multi-byte characters', async () => {
  const text = 'ab\ncdé\n\nfin';
  const bytes = Buffer.from(text);
  const chunks = [bytes.subarray(0, 1), bytes.subarray(1, 5), bytes.subarray(5, 6), bytes.subarray(6)];
  const out: string[] = [];
  for await (const l of readLines(Readable.from(chunks))) out.push(l);
  assert.deepEqual(out, ['ab', 'cdé', 'fin']);
});

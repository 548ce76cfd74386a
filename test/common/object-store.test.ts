import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { createTestEnv } from '../helpers/env.ts';

test('put, get, head, list with pagination, stream upload and presign on the real S3 server', async () => {
  const { store } = await createTestEnv();
  await store.put('jobs/a/x.txt', 'hello', 'text/plain');
  assert.equal((await store.get('jobs/a/x.txt'))?.toString(), 'hello');
  assert.equal((await store.head('jobs/a/x.txt'))?.size, 5);
  assert.equal(await store.get('jobs/a/missing'), undefined);
  assert.equal(await store.head('jobs/a/missing'), undefined);

  for (let i = 0; i < 7; i++) await store.put(`jobs/b/${i}.txt`, String(i));
  const page1 = await store.listPage('jobs/b/', { limit: 3 });
  assert.equal(page1.objects.length, 3);
  assert.ok(page1.nextToken);
  const page2 = await store.listPage('jobs/b/', { limit: 10, token: page1.nextToken });
  assert.equal(page2.objects.length, 4);
  assert.equal(page2.nextToken, undefined);
  const folders = await store.listPage('jobs/', { delimiter: '/' });
  assert.deepEqual(folders.prefixes.sort(), ['jobs/a/', 'jobs/b/']);

  const big = Buffer.alloc(9 * 1024 * 1024, 7); // over one multipart part
  await store.putStream('jobs/c/big.bin', Readable.from([big.subarray(0, 5_000_000), big.subarray(5_000_000)]));
  const back = await store.get('jobs/c/big.bin');
  assert.equal(back?.length, big.length);
  assert.ok(back?.equals(big));
  const range = await store.getStream('jobs/a/x.txt', { start: 1, end: 3 });
  const chunks: Buffer[] = [];
  for await (const c of range ?? []) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'ell');

  const url = await store.presignGet('jobs/a/x.txt', 60);
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'hello');
  assert.equal(store.uri('jobs/a/x.txt'), `s3://${store.bucket}/jobs/a/x.txt`);
  assert.equal(await store.deletePrefix('jobs/b/'), 7);
  assert.equal((await store.listPage('jobs/b/')).objects.length, 0);
  assert.ok(await store.head('jobs/a/x.txt'), 'other prefixes stay');
});

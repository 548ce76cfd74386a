import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { T2iError } from '../../services/common/errors.ts';
import { parseDefaultsSpec, resolveProduceOptions } from '../../services/producer/options.ts';
import { deriveSeed, promptSeed, seedNamespace } from '../../services/producer/seeds.ts';

test('derived seeds: sha256 of namespace/row/promptIndex, first 4 bytes; deterministic, in [0, 2^32), distinct per prompt', () => {
  const expected = createHash('sha256').update('job:J1/7/2').digest().readUInt32BE(0);
  assert.equal(deriveSeed('job:J1', 7, 2), expected);
  assert.equal(promptSeed(undefined, seedNamespace('J1', undefined), 7, 2), expected);
  const seen = new Set<number>();
  for (let row = 1; row <= 200; row++) {
    for (let k = 0; k < 3; k++) {
      const seed = promptSeed(undefined, 'job:J1', row, k);
      assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32);
      seen.add(seed);
    }
  }
  assert.equal(seen.size, 600);
  assert.notEqual(deriveSeed('job:J1', 7, 2), deriveSeed('job:J2', 7, 2));
  // A seed base replaces the job id, so another job with the same base gets the same seeds.
  assert.equal(seedNamespace('J1', 42), 'seed:42');
  assert.equal(promptSeed(undefined, seedNamespace('A', 42), 3, 0), promptSeed(undefined, seedNamespace('B', 42), 3, 0));
  // A row's own seed is its first prompt's; the others count up from it.
  assert.deepEqual(
    [0, 1, 2].map((k) => promptSeed(100, 'job:J1', 5, k)),
    [100, 101, 102],
  );
});

test('--defaults accepts JSON or k=v,k=v and names unknown keys', () => {
  assert.deepEqual(parseDefaultsSpec('{"steps": 4, "guidance": 3.5}'), { steps: 4, guidance: 3.5 });
  assert.deepEqual(parseDefaultsSpec('steps=4, width=512,seed=9'), { steps: 4, width: 512, seed: 9 });
  assert.throws(() => parseDefaultsSpec('stpes=4'), /unknown key "stpes"; known: seed, width, height, steps, guidance/);
  assert.throws(() => parseDefaultsSpec('steps'), /not key=value/);
  assert.throws(() => parseDefaultsSpec('{"steps": '), /invalid JSON/);
});

test('options: job id validated with a clear error, generated as a ULID when absent; defaults range-checked', () => {
  const generated = resolveProduceOptions({});
  assert.match(generated.jobId, /^[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.equal(generated.promptKey, 'conversations');
  assert.equal(generated.maxPromptChars, 4000);
  assert.equal(generated.maxLineBytes, 1024 * 1024);
  assert.throws(
    () => resolveProduceOptions({ jobId: 'bad id/1' }),
    (error: unknown) =>
      error instanceof T2iError && error.code === 'CONFIG_INVALID' && /job id "bad id\/1": use 1 to 64 letters/.test(error.message),
  );
  assert.throws(() => resolveProduceOptions({ jobId: 'x'.repeat(65) }), /job id/);
  // "." and ".." name the bucket's jobs/ folder itself or its parent (issue 15, item 9).
  for (const jobId of ['.', '..']) assert.throws(() => resolveProduceOptions({ jobId }), /job id "\.{1,2}": use .*not "\." or "\.\."/);
  assert.equal(resolveProduceOptions({ jobId: '...' }).jobId, '...');
  assert.throws(
    () => resolveProduceOptions({ defaults: parseDefaultsSpec('steps=0,width=100') }),
    /default width must be .*default steps must be|default steps must be/,
  );
  assert.deepEqual(resolveProduceOptions({ jobId: 'j', defaults: { steps: 4, seed: 1 } }).defaults, { steps: 4, seed: 1 });
});

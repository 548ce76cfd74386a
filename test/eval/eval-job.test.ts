import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evalKey, imageKey, manifestKey, outputKey } from '../../services/common/bucket-layout.ts';
import { evaluateJob, type ImageEval } from '../../services/eval/eval-job.ts';
import { getJob } from '../../services/query/jobs.ts';
import { createTestEnv } from '../helpers/env.ts';
import { runCli } from '../helpers/cli.ts';
import { encodeTile, loadRenderedScenes, type RenderedScene } from './helpers.ts';

const { store, env } = await createTestEnv();
const scenes = (await loadRenderedScenes()).slice(0, 12);

/** A completed job in the sink's layout: row i lists the image of scenes[imageOf(i)] under the prompt of scenes[i]. */
async function writeJob(jobId: string, imageOf: (i: number) => number, extraRows: Record<string, unknown>[] = []): Promise<void> {
  const lines: string[] = [];
  for (const [i, scene] of scenes.entries()) {
    const row = i + 1;
    const key = imageKey(jobId, row, 0);
    await store.put(key, await encodeTile(scenes[imageOf(i)] as RenderedScene), 'image/png');
    lines.push(JSON.stringify({ id: `r${row}`, prompt: scene.prompt, images: [store.uri(key)] }));
  }
  lines.push(...extraRows.map((r) => JSON.stringify(r)));
  await store.put(outputKey(jobId), `${lines.join('\n')}\n`, 'application/x-ndjson');
  await store.put(manifestKey(jobId), JSON.stringify({ jobId, counts: { rows: lines.length } }), 'application/json');
}

test('t2i eval on a job whose images follow their prompts: every image passes; eval.jsonl and the manifest summary written', async () => {
  await writeJob('eval-good', (i) => i, [{ id: 'no-images', prompt: 'a red circle', images: [] }]);
  const result = await evaluateJob(store, 'eval-good');
  assert.equal(result.summary.judged, scenes.length);
  assert.equal(result.summary.allRight, 1);
  const lines = (await store.get(evalKey('eval-good')))!
    .toString()
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as ImageEval);
  assert.deepEqual(
    lines.map((l) => [l.row, l.k, l.prompt, l.pass]),
    scenes.map((s, i) => [i + 1, 0, s.prompt, true]),
  );
  const manifest = JSON.parse((await store.get(manifestKey('eval-good')))!.toString()) as {
    jobId: string;
    eval: { judged: number; allRight: number };
  };
  assert.equal(manifest.jobId, 'eval-good', 'the rest of the manifest is kept');
  assert.equal(manifest.eval.judged, scenes.length);
  // The query service (and so the gallery) shows the summary.
  const job = await getJob(store, 'eval-good');
  assert.deepEqual(job?.promptFollowing, {
    judged: scenes.length,
    allRight: 1,
    attributes: { colour: 1, shape: 1, position: 1, size: 1, background: 1 },
  });
});

test('t2i eval on a job whose images sit one row off: the misplaced images fail', async () => {
  await writeJob('eval-shifted', (i) => (i + 1) % scenes.length);
  const result = await evaluateJob(store, 'eval-shifted');
  assert.equal(result.summary.judged, scenes.length);
  assert.ok(result.summary.allRight < 0.2, `allRight ${result.summary.allRight}`);
});

test('t2i eval (the CLI): --json summary; a job that is not complete is a clear error', async () => {
  await writeJob('eval-cli', (i) => i);
  const ok = await runCli(['eval', 'eval-cli', '--json'], { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { summary: { allRight: number } }).summary.allRight, 1);
  const missing = await runCli(['eval', 'no-such-job'], { env });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no-such-job.*no manifest\.json.*not complete/);
});

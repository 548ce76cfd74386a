import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { fetchModel, localPathFor, STATE_FILE } from '../../deploy/docker/fetch-model.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createTestEnv } from '../helpers/env.ts';

const run = promisify(execFile);
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-fetch-model-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

test('localPathFor keeps every key inside the directory', () => {
  assert.equal(localPathFor('/models/x', 'transformer/model.onnx'), path.resolve('/models/x/transformer/model.onnx'));
  for (const bad of ['../etc/passwd', 'a/../../b', '/abs', 'a//b', 'a\\b', './a', 'a/.', '']) {
    assert.throws(() => localPathFor('/models/x', bad), /not a plain relative path|leaves/, bad);
  }
});

test('copies a model prefix, keeps unchanged files on the next run, replaces changed ones', async () => {
  const { store } = await createTestEnv();
  const files: Record<string, Buffer> = {
    'model_index.json': Buffer.from('{"_class_name":"FluxPipeline"}'),
    'transformer/model.onnx': Buffer.alloc(200_000, 7),
    'transformer/model.onnx_data': Buffer.alloc(1_500_000, 9),
    'tokenizer/tokenizer.json': Buffer.from('{}'),
  };
  for (const [key, body] of Object.entries(files)) await store.put(`models/flux/${key}`, body);
  await store.put('models/flux-other/model_index.json', 'not this one'); // a sibling prefix must not leak in
  await store.put('models/flux/empty-dir/', ''); // a "folder" marker some tools create

  const dir = path.join(scratch, 'a');
  const first = await fetchModel({ store, prefix: 'models/flux', dir });
  assert.deepEqual(first, { files: 4, downloaded: 4, kept: 0, bytesDownloaded: Object.values(files).reduce((n, b) => n + b.length, 0) });
  for (const [key, body] of Object.entries(files)) assert.ok(fs.readFileSync(path.join(dir, key)).equals(body), key);
  assert.deepEqual(fs.readdirSync(dir).sort(), [STATE_FILE, 'model_index.json', 'tokenizer', 'transformer']);
  assert.equal(fs.readdirSync(path.join(dir, 'transformer')).filter((f) => f.endsWith('.part')).length, 0);

  const second = await fetchModel({ store, prefix: 'models/flux/', dir });
  assert.deepEqual(second, { files: 4, downloaded: 0, kept: 4, bytesDownloaded: 0 });

  await store.put('models/flux/tokenizer/tokenizer.json', '{"changed":true}');
  fs.writeFileSync(path.join(dir, 'model_index.json'), 'corrupted locally');
  const third = await fetchModel({ store, prefix: 'models/flux', dir });
  assert.equal(third.downloaded, 2);
  assert.equal(fs.readFileSync(path.join(dir, 'tokenizer', 'tokenizer.json'), 'utf8'), '{"changed":true}');
  assert.ok(fs.readFileSync(path.join(dir, 'model_index.json')).equals(files['model_index.json'] as Buffer));

  await assert.rejects(fetchModel({ store, prefix: 'models/nothing-here', dir: path.join(scratch, 'b') }), /no model files under/);
});

test('the image entrypoint fetches T2I_MODEL=s3://… before `worker`, and runs fetch-model as a command', async () => {
  const { store, env } = await createTestEnv();
  await store.put('m/tiny/model_index.json', '{"x":1}');
  await store.put('m/tiny/vae_decoder/model.onnx', Buffer.alloc(1000, 1));
  const entrypoint = path.join(PACKAGE_ROOT, 'deploy', 'docker', 'entrypoint.sh');
  const cache = path.join(scratch, 'cache');
  // `worker --help` exits after printing help: what matters is that the model was copied first.
  const { stdout, stderr } = await run('sh', [entrypoint, 'worker', '--help'], {
    env: { ...process.env, ...env, T2I_MODEL: `s3://${store.bucket}/m/tiny/`, T2I_MODEL_CACHE: cache },
  });
  assert.match(stdout, /--max-wait-ms/, 'the worker help ran after the fetch');
  assert.match(stderr, /fetch-model: 2 files/);
  assert.equal(fs.readFileSync(path.join(cache, 'model_index.json'), 'utf8'), '{"x":1}');

  const target = path.join(scratch, 'init-container');
  await run('sh', [entrypoint, 'fetch-model', `s3://${store.bucket}/m/tiny`, target], { env: { ...process.env, ...env } });
  assert.equal(fs.statSync(path.join(target, 'vae_decoder', 'model.onnx')).size, 1000);

  // Other commands ignore an s3:// T2I_MODEL (only the worker and generate load a model).
  const other = path.join(scratch, 'unused');
  await run('sh', [entrypoint, 'sink', '--help'], {
    env: { ...process.env, ...env, T2I_MODEL: `s3://${store.bucket}/m/tiny/`, T2I_MODEL_CACHE: other },
  });
  assert.equal(fs.existsSync(other), false);
});

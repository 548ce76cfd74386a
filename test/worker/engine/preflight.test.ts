/**
 * The model preflight and `t2i model check`: the right verdict on the bundled models, the exporter
 * fixtures and a directory in each unsupported layout, each problem with its file and fix, without
 * creating an onnxruntime session.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import ort from 'onnxruntime-node';
import { preflightModel, type PreflightReport } from '../../../services/worker/engine/preflight.ts';
import { runCli } from '../../helpers/cli.ts';
import { graphModel, identityModel } from './helpers/onnx-bytes.ts';
import { PACKAGE_ROOT_FOR_TESTS } from './helpers/paths.ts';
import { TINY_FP16_MODEL_DIR, TINY_MODEL_DIR } from './helpers/reference.ts';

const EXPORTERS = join(PACKAGE_ROOT_FOR_TESTS, 'test', 'fixtures', 'exporters');

async function copyOf(t: TestContext, source: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 't2i-preflight-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(source, dir, { recursive: true });
  return dir;
}

const errors = (report: PreflightReport) => report.issues.filter((i) => i.severity === 'error');

describe('model preflight', () => {
  it('opens no onnxruntime session', async (t) => {
    const create = t.mock.method(ort.InferenceSession, 'create');
    const report = await preflightModel(TINY_MODEL_DIR);
    assert.equal(report.ok, true);
    assert.equal(create.mock.callCount(), 0);
  });

  it('the bundled models and the optimum export pass, with what they are', async () => {
    for (const [dir, guidance, clip, t5] of [
      [TINY_MODEL_DIR, true, 'tokenizer.json', 'tokenizer.json'],
      [TINY_FP16_MODEL_DIR, true, 'tokenizer.json', 'tokenizer.json'],
      [join(EXPORTERS, 'optimum-fp32'), true, 'vocab.json + merges.txt', 'spiece.model'],
    ] as const) {
      const report = await preflightModel(dir);
      assert.deepEqual(errors(report), [], dir);
      assert.equal(report.usesGuidance, guidance);
      assert.deepEqual(report.tokenizers, { clip, t5 });
      assert.equal(report.schedule?.source, 'scheduler/scheduler_config.json');
      assert.ok(report.weightBytes > 100_000, `${dir}: weights ${report.weightBytes}`);
    }
  });

  it('a guidance model without scheduler config gets FLUX.1-dev’s schedule and a warning, never schnell’s', async (t) => {
    const dir = await copyOf(t, TINY_MODEL_DIR);
    await rm(join(dir, 'scheduler'), { recursive: true });
    const report = await preflightModel(dir);
    assert.equal(report.ok, true);
    assert.equal(report.schedule?.config.useDynamicShifting, true);
    assert.equal(report.schedule?.config.shift, 3);
    assert.match(report.issues[0]?.problem ?? '', /missing: the transformer has a guidance input \(FLUX\.1-dev\)/);
    assert.equal(report.issues[0]?.severity, 'warning');
  });

  it('black-forest-labs’ TensorRT layout: not supported, with the export command that makes a supported one', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 't2i-bfl-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    for (const sub of ['clip.opt', 't5.opt', 'transformer.opt/bf16', 'transformer.opt/fp8', 'vae.opt'])
      await mkdir(join(dir, sub), { recursive: true });
    await writeFile(
      join(dir, 'transformer.opt', 'bf16', 'model.onnx'),
      identityModel(
        [{ name: 'latent', type: 'bfloat16', shape: [1, 4096, 64] }],
        [{ name: 'latent_out', type: 'bfloat16', shape: [1, 4096, 64] }],
      ),
    );
    const report = await preflightModel(dir);
    assert.equal(report.ok, false);
    assert.match(report.layout, /black-forest-labs TensorRT/);
    assert.match(errors(report)[0]!.fix, /optimum-cli export onnx --model .* --task text-to-image/);
  });

  it('a PyTorch (diffusers safetensors) checkpoint: export it first', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 't2i-pt-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, 'transformer'));
    await writeFile(join(dir, 'transformer', 'diffusion_pytorch_model.safetensors'), 'x');
    const report = await preflightModel(dir);
    assert.equal(report.layout, 'diffusers PyTorch checkpoint');
    assert.match(errors(report)[0]!.fix, /export it to ONNX first: optimum-cli export onnx/);
  });

  it('bf16 I/O: says why and how to re-export', async (t) => {
    const dir = await copyOf(t, TINY_MODEL_DIR);
    await writeFile(
      join(dir, 'vae_decoder', 'model.onnx'),
      identityModel(
        [{ name: 'latent_sample', type: 'bfloat16', shape: ['b', 4, 'h', 'w'] }],
        [{ name: 'sample', type: 'bfloat16', shape: ['b', 3, 'h', 'w'] }],
      ),
    );
    const [problem] = errors(await preflightModel(dir));
    assert.match(problem!.file, /vae_decoder\/model\.onnx$/);
    assert.match(problem!.problem, /latent_sample is bfloat16/);
    assert.match(problem!.fix, /export with float32 I\/O \(optimum\) or float16 I\/O \(optimize_pipeline\.py --float16\)/);
  });

  it('external weights (Olive/DirectML name model.onnx.data): missing, truncated, then present', async (t) => {
    const dir = await copyOf(t, TINY_MODEL_DIR);
    const model = graphModel(
      [{ name: 'input_ids', type: 'int64', shape: ['b', 'l'] }],
      [
        { name: 'last_hidden_state', type: 'float', shape: ['b', 'l', 32] },
        { name: 'pooler_output', type: 'float', shape: ['b', 32] },
      ],
      [],
      [{ name: 'weight', dims: [1000, 32], external: { location: 'model.onnx.data' } }],
    );
    await writeFile(join(dir, 'text_encoder', 'model.onnx'), model);
    const missing = errors(await preflightModel(dir));
    assert.equal(missing.length, 1);
    assert.match(missing[0]!.problem, /external weight file model\.onnx\.data \(referenced by text_encoder\/model\.onnx\) is missing/);
    assert.match(missing[0]!.fix, /copy model\.onnx\.data next to text_encoder\/model\.onnx/);
    await writeFile(join(dir, 'text_encoder', 'model.onnx.data'), Buffer.alloc(1000 * 32 * 4));
    await truncate(join(dir, 'text_encoder', 'model.onnx.data'), 1000);
    assert.match(errors(await preflightModel(dir))[0]!.problem, /has 1000 bytes, the model reads up to byte 128000/);
    await writeFile(join(dir, 'text_encoder', 'model.onnx.data'), Buffer.alloc(1000 * 32 * 4));
    const ok = await preflightModel(dir);
    assert.deepEqual(errors(ok), []);
    assert.deepEqual(ok.components.textEncoder?.externalFiles, ['model.onnx.data']);
  });

  it('every problem at once: missing tokenizers, a wrong input name and a broken VAE config in one report', async (t) => {
    const dir = await copyOf(t, TINY_MODEL_DIR);
    await rm(join(dir, 'tokenizer_2'), { recursive: true });
    await writeFile(join(dir, 'vae_decoder', 'config.json'), JSON.stringify({ scaling_factor: 0.3611 }));
    await writeFile(
      join(dir, 'text_encoder_2', 'model.onnx'),
      identityModel(
        [{ name: 'word_ids', type: 'int64', shape: ['b', 'l'] }],
        [{ name: 'last_hidden_state', type: 'float', shape: ['b', 'l', 32] }],
      ),
    );
    const problems = errors(await preflightModel(dir)).map((p) => `${p.file.split('/').slice(-2).join('/')}: ${p.problem}`);
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0]!, /text_encoder_2\/model\.onnx: no input for token ids .*the model has word_ids/);
    assert.match(problems[1]!, /tokenizer_2: T5 tokenizer files missing/);
    assert.match(problems[2]!, /vae_decoder\/config\.json: block_out_channels is missing/);
  });

  it('the memory estimate grows with batch and size', async () => {
    const small = (await preflightModel(TINY_MODEL_DIR, { provider: 'cuda', batch: 1, width: 64, height: 64 })).memory!;
    const big = (await preflightModel(TINY_MODEL_DIR, { provider: 'cuda', batch: 4, width: 128, height: 128 })).memory!;
    assert.ok(big.gpuBytes > small.gpuBytes);
    assert.ok(small.gpuBytes > 0);
    assert.equal((await preflightModel(TINY_MODEL_DIR, { provider: 'cpu' })).memory!.gpuBytes, 0);
  });
});

describe('t2i model check', () => {
  it('exit 0 and a report on a good model; exit 1 naming the file and fix on a bad one; --json', async (t) => {
    const good = await runCli(['model', 'check', TINY_MODEL_DIR]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /tokenizers CLIP: tokenizer\.json; T5: tokenizer\.json/);
    assert.match(good.stdout, /schedule {2}scheduler\/scheduler_config\.json: shift 3, dynamic/);
    assert.match(good.stdout, /ok \(checked in \d+ ms, no session opened\)/);
    const dir = await copyOf(t, TINY_MODEL_DIR);
    await rm(join(dir, 'transformer', 'model.onnx'));
    const bad = await runCli(['model', 'check', dir, '--json']);
    assert.equal(bad.code, 1);
    const report = JSON.parse(bad.stdout) as PreflightReport;
    assert.equal(report.ok, false);
    assert.match(report.issues[0]!.problem, /transformer\/model\.onnx is missing/);
    const usage = await runCli(['model', 'check', TINY_MODEL_DIR, '--provider', 'gpu']);
    assert.notEqual(usage.code, 0);
    assert.match(usage.stderr, /--provider "gpu": expected one of cpu, cuda, tensorrt/);
  });
});

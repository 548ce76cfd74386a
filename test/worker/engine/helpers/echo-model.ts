/**
 * A synthetic "echo" FLUX model built from ONNX bytes: the text encoders cast token ids to floats,
 * the transformer returns its input latents as the velocity, the VAE decoder is the identity (a
 * one-level VAE, so latents are images: 3 latent channels, in_channels 12). Its images are
 * computable in closed form, and its I/O layout is configurable (2-D/3-D float or integer ids,
 * fp16 I/O, aliased names, a fixed batch dimension), which is what the layout tests exercise.
 */
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { graphModel, ONNX_ELEMENT_TYPE } from './onnx-bytes.ts';
import type { OnnxElementTypeName, SyntheticValue } from './onnx-bytes.ts';
import { TINY_MODEL_DIR } from './reference.ts';

export interface EchoModelOptions {
  /** Element type of img_ids / txt_ids. Default 'int64'. */
  idsType?: OnnxElementTypeName;
  /** 2 = [N, 3], 3 = [B, N, 3]. Default 2. */
  idsRank?: 2 | 3;
  /** Element type of the transformer's and VAE's float I/O. Default 'float'. */
  floatType?: 'float' | 'float16';
  /** Element type of the text encoders' input_ids. Default 'int64'. */
  tokenIdsType?: 'int64' | 'int32';
  /** A fixed batch dimension on every batched input (exports traced without dynamic batch). */
  fixedBatch?: number;
  /** Use BFL/TensorRT-style names (latent, text_embeddings, pooled_embeddings, images, …). */
  aliasNames?: boolean;
  /** Include the guidance input. Default true. */
  guidance?: boolean;
}

export const ECHO_VAE = { scalingFactor: 0.5, shiftFactor: 0.25 };

export async function echoModelDir(t: TestContext, options: EchoModelOptions = {}): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 't2i-echo-model-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const batch = options.fixedBatch ?? 'batch';
  const float = options.floatType ?? 'float';
  const ids = options.idsType ?? 'int64';
  const tokenIds = options.tokenIdsType ?? 'int64';
  const alias = options.aliasNames ?? false;
  const n = (optimum: string, bfl: string): string => (alias ? bfl : optimum);

  const clip = graphModel(
    [{ name: 'input_ids', type: tokenIds, shape: [batch, 77] }],
    [{ name: n('pooler_output', 'pooled_embeddings'), type: 'float', shape: [batch, 77] }],
    [
      {
        op: 'Cast',
        inputs: ['input_ids'],
        outputs: [n('pooler_output', 'pooled_embeddings')],
        intAttributes: { to: ONNX_ELEMENT_TYPE.float },
      },
    ],
  );
  const t5 = graphModel(
    [{ name: 'input_ids', type: tokenIds, shape: [batch, 'sequence'] }],
    [{ name: n('last_hidden_state', 'text_embeddings'), type: 'float', shape: [batch, 'sequence', 1] }],
    [
      { op: 'Cast', inputs: ['input_ids'], outputs: ['ids_float'], intAttributes: { to: ONNX_ELEMENT_TYPE.float } },
      { op: 'Unsqueeze', inputs: ['ids_float', 'axes'], outputs: [n('last_hidden_state', 'text_embeddings')] },
    ],
    [{ name: 'axes', dims: [1], int64Values: [2] }],
  );
  const idsShape = (rows: string): Array<number | string> => (options.idsRank === 3 ? [batch, rows, 3] : [rows, 3]);
  const hidden = n('hidden_states', 'latent');
  const transformerInputs: SyntheticValue[] = [
    { name: hidden, type: float, shape: [batch, 'tokens', 12] },
    { name: n('encoder_hidden_states', 'text_embeddings'), type: float, shape: [batch, 'sequence', 1] },
    { name: n('pooled_projections', 'pooled_embeddings'), type: float, shape: [batch, 77] },
    { name: n('timestep', 'timesteps'), type: float, shape: [batch] },
    { name: 'img_ids', type: ids, shape: idsShape('tokens') },
    { name: 'txt_ids', type: ids, shape: idsShape('sequence') },
    ...(options.guidance === false ? [] : [{ name: 'guidance', type: float, shape: [batch] } as SyntheticValue]),
  ];
  const velocity = n('out_hidden_states', 'noise_pred');
  const transformer = graphModel(
    transformerInputs,
    [{ name: velocity, type: float, shape: [batch, 'tokens', 12] }],
    [{ op: 'Identity', inputs: [hidden], outputs: [velocity] }],
  );
  const latent = n('latent_sample', 'latent');
  const image = n('sample', 'images');
  const vae = graphModel(
    [{ name: latent, type: float, shape: [batch, 3, 'height', 'width'] }],
    [{ name: image, type: float, shape: [batch, 3, 'height', 'width'] }],
    [{ op: 'Identity', inputs: [latent], outputs: [image] }],
  );

  for (const [folder, bytes] of [
    ['text_encoder', clip],
    ['text_encoder_2', t5],
    ['transformer', transformer],
    ['vae_decoder', vae],
  ] as const) {
    await mkdir(join(root, folder));
    await writeFile(join(root, folder, 'model.onnx'), bytes);
  }
  await writeFile(
    join(root, 'transformer', 'config.json'),
    JSON.stringify({ in_channels: 12, guidance_embeds: options.guidance !== false }),
  );
  await writeFile(
    join(root, 'vae_decoder', 'config.json'),
    JSON.stringify({ scaling_factor: ECHO_VAE.scalingFactor, shift_factor: ECHO_VAE.shiftFactor, block_out_channels: [8] }),
  );
  await writeFile(
    join(root, 't2i.json'),
    JSON.stringify({ name: 'echo', width: 8, height: 6, steps: 3, guidance: 2, max_sequence_length: 16 }),
  );
  for (const folder of ['tokenizer', 'tokenizer_2', 'scheduler'])
    await cp(join(TINY_MODEL_DIR, folder), join(root, folder), { recursive: true });
  return root;
}

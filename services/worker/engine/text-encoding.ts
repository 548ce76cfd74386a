/** Prompts to text conditioning: both tokenizers, then the CLIP and T5 encoders in passes. */
import type { TextEncoderBinding } from './components.ts';
import { EngineError } from './errors.ts';
import { assertFinite } from './finite.ts';
import { t5TokenizerOf, type LoadedModel } from './model-loader.ts';
import { integerValuedTensor, readFloatTensor } from './onnx-session.ts';
import { chunk, concat, padRows, type StageTimer } from './passes.ts';

/** A prompt cut to a tokenizer's length: how many tokens it had, and how many fit. */
export interface TokenTruncation {
  tokens: number;
  limit: number;
}

/** Which encoders cut a prompt short (absent: nothing was cut). */
export interface PromptTruncation {
  clip?: TokenTruncation;
  t5?: TokenTruncation;
}

/** Text conditioning for a batch of prompts, row i belonging to prompt i. */
export interface PromptEncoding {
  batchSize: number;
  clipIds: number[][];
  t5Ids: number[][];
  /** CLIP pooler_output, [batchSize, pooledSize]. */
  pooled: Float32Array;
  pooledSize: number;
  /** T5 last_hidden_state, [batchSize, textLength, textHiddenSize]. */
  textHidden: Float32Array;
  textLength: number;
  textHiddenSize: number;
  /** Per prompt: undefined, or what was truncated. */
  truncation: (PromptTruncation | undefined)[];
}

export interface EncodePromptsOptions {
  /** T5 length in tokens. Default: the model's default (t2i.json max_sequence_length, else 512). */
  maxSequenceLength?: number;
}

async function runTextEncoder(
  model: LoadedModel,
  binding: TextEncoderBinding,
  stage: 'clip' | 't5',
  ids: number[][],
  timed: StageTimer,
): Promise<Float32Array> {
  const batch = ids.length;
  const length = ids[0]!.length;
  const target = binding.fixedBatch ?? batch;
  const flat = new Float32Array(batch * length);
  ids.forEach((row, i) => flat.set(row, i * length));
  const input = integerValuedTensor(binding.inputIds, padRows(flat, batch, target), [target, length]);
  const name = stage === 'clip' ? 'CLIP text encoder' : 'T5 text encoder';
  const outputs = await timed(stage, batch, () => binding.session.run({ [binding.inputIds.name]: input }, [binding.output.name], name));
  const data = readFloatTensor(outputs[binding.output.name]!, binding.session.file);
  const mine = data.subarray(0, (data.length / target) * batch);
  assertFinite(mine, name, binding.session.file, stage === 'clip' ? model.float16.clip : model.float16.t5);
  return mine;
}

export async function encodePrompts(
  model: LoadedModel,
  prompts: readonly string[],
  options: EncodePromptsOptions,
  timed: StageTimer,
): Promise<PromptEncoding> {
  let textLength = options.maxSequenceLength ?? model.info.defaults.maxSequenceLength;
  if (model.t5.fixedLength !== undefined && textLength !== model.t5.fixedLength) {
    throw new EngineError(
      'BAD_REQUEST',
      `${model.t5.session.file} has a fixed sequence length of ${model.t5.fixedLength}; cannot encode ${textLength} tokens`,
    );
  }
  // diffusers' FluxPipeline.check_inputs rejects > 512 too: FLUX was trained with at most 512 T5 tokens.
  if (!Number.isInteger(textLength) || textLength < 2 || textLength > 512) {
    throw new EngineError('BAD_REQUEST', `maxSequenceLength must be an integer in 2..512, got ${textLength}`);
  }
  const t5Tokenizer = await t5TokenizerOf(model, textLength);
  const [clipIds, t5Ids, clipCounts, t5Counts] = await timed('tokenize', prompts.length, () =>
    Promise.all([
      model.clipTokenizer.encode(prompts),
      t5Tokenizer.encode(prompts),
      model.clipTokenizer.countTokens(prompts),
      t5Tokenizer.countTokens(prompts),
    ]),
  );
  textLength = t5Tokenizer.maxLength;
  const truncation = prompts.map((_, i): PromptTruncation | undefined => {
    const cut: PromptTruncation = {};
    if (clipCounts[i]! > model.clipTokenizer.maxLength) cut.clip = { tokens: clipCounts[i]!, limit: model.clipTokenizer.maxLength };
    if (t5Counts[i]! > textLength) cut.t5 = { tokens: t5Counts[i]!, limit: textLength };
    return cut.clip || cut.t5 ? cut : undefined;
  });

  const pooledParts: Float32Array[] = [];
  const hiddenParts: Float32Array[] = [];
  let pooledSize = 0;
  let textHiddenSize = 0;
  const rows = prompts.map((_, i) => i);
  for (const pass of chunk(rows, model.info.maxBatchSize)) {
    const pooled = await runTextEncoder(
      model,
      model.clip,
      'clip',
      pass.map((i) => clipIds[i]!),
      timed,
    );
    const hidden = await runTextEncoder(
      model,
      model.t5,
      't5',
      pass.map((i) => t5Ids[i]!),
      timed,
    );
    pooledSize = pooled.length / pass.length;
    textHiddenSize = hidden.length / (pass.length * textLength);
    pooledParts.push(pooled);
    hiddenParts.push(hidden);
  }
  return {
    batchSize: prompts.length,
    clipIds,
    t5Ids,
    pooled: concat(pooledParts),
    pooledSize,
    textHidden: concat(hiddenParts),
    textLength,
    textHiddenSize,
    truncation,
  };
}

/** The rows `rows` of an encoding, in that order. */
export function selectRows(encoding: PromptEncoding, rows: readonly number[]): PromptEncoding {
  const pooled = new Float32Array(rows.length * encoding.pooledSize);
  const textRow = encoding.textLength * encoding.textHiddenSize;
  const textHidden = new Float32Array(rows.length * textRow);
  rows.forEach((row, i) => {
    pooled.set(encoding.pooled.subarray(row * encoding.pooledSize, (row + 1) * encoding.pooledSize), i * encoding.pooledSize);
    textHidden.set(encoding.textHidden.subarray(row * textRow, (row + 1) * textRow), i * textRow);
  });
  return {
    batchSize: rows.length,
    clipIds: rows.map((row) => encoding.clipIds[row]!),
    t5Ids: rows.map((row) => encoding.t5Ids[row]!),
    pooled,
    pooledSize: encoding.pooledSize,
    textHidden,
    textLength: encoding.textLength,
    textHiddenSize: encoding.textHiddenSize,
    truncation: rows.map((row) => encoding.truncation[row]),
  };
}

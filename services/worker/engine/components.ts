/**
 * Binds each ONNX model's real input/output names to the roles the pipeline needs, from
 * session.inputMetadata / outputMetadata rather than one hard-coded export: optimum names
 * (hidden_states, latent_sample, …) and a few known aliases are accepted, types and ranks are
 * checked, and anything unusable fails at load with the file and the problem in the message.
 */
import { EngineError } from './errors.ts';
import { FLOAT_TYPES, INTEGER_VALUED_TYPES } from './onnx-session.ts';
import type { ModelSession, TensorSpec } from './onnx-session.ts';

/**
 * What binding needs of a model: its file and its input/output specs. An open session has them, and
 * so has an ONNX header read without a session (the preflight binds the same way before loading).
 */
export type ModelSignature = Pick<ModelSession, 'file' | 'inputs' | 'outputs'>;

interface RoleRule {
  role: string;
  aliases: readonly string[];
  types: ReadonlySet<string>;
  ranks: readonly number[];
}

const TOKEN_ID_TYPES: ReadonlySet<string> = new Set(['int64', 'int32']);

function typeList(types: ReadonlySet<string>): string {
  return [...types].join(' or ');
}

function checkSpec(file: string, kind: string, spec: TensorSpec, rule: RoleRule): TensorSpec {
  if (spec.type === 'bfloat16') {
    throw new EngineError(
      'MODEL_UNSUPPORTED',
      `${file}: ${kind} ${spec.name} is bfloat16, which onnxruntime-node cannot feed or read; export with float32 or float16 I/O`,
    );
  }
  if (!rule.types.has(spec.type)) {
    throw new EngineError(
      'MODEL_UNSUPPORTED',
      `${file}: ${kind} ${spec.name} (${rule.role}) has type ${spec.type}; expected ${typeList(rule.types)}`,
    );
  }
  // An empty shape means the model does not declare a rank: trust it and let the run report problems.
  if (spec.shape.length > 0 && !rule.ranks.includes(spec.shape.length)) {
    throw new EngineError(
      'MODEL_UNSUPPORTED',
      `${file}: ${kind} ${spec.name} (${rule.role}) has rank ${spec.shape.length}; expected rank ${rule.ranks.join(' or ')}`,
    );
  }
  return spec;
}

function findInput(session: ModelSignature, rule: RoleRule): TensorSpec | undefined {
  for (const alias of rule.aliases) {
    const spec = session.inputs.get(alias);
    if (spec) return checkSpec(session.file, 'input', spec, rule);
  }
  return undefined;
}

function requireInput(session: ModelSignature, rule: RoleRule): TensorSpec {
  const spec = findInput(session, rule);
  if (spec) return spec;
  throw new EngineError(
    'MODEL_UNSUPPORTED',
    `${session.file}: no input for ${rule.role} (looked for ${rule.aliases.join(', ')}; the model has ${[...session.inputs.keys()].join(', ')})`,
  );
}

/** The output named by an alias, else the only float output of the wanted rank. */
function requireOutput(session: ModelSignature, rule: RoleRule): TensorSpec {
  for (const alias of rule.aliases) {
    const spec = session.outputs.get(alias);
    if (spec) return checkSpec(session.file, 'output', spec, rule);
  }
  const byRank = [...session.outputs.values()].filter((spec) => FLOAT_TYPES.has(spec.type) && rule.ranks.includes(spec.shape.length));
  if (byRank.length === 1) return byRank[0]!;
  if (session.outputs.size === 1) return checkSpec(session.file, 'output', [...session.outputs.values()][0]!, rule);
  throw new EngineError(
    'MODEL_UNSUPPORTED',
    `${session.file}: no output for ${rule.role} (looked for ${rule.aliases.join(', ')}; the model has ${[...session.outputs.keys()].join(', ')})`,
  );
}

function fixedDim(spec: TensorSpec, index: number): number | undefined {
  const dim = spec.shape[index];
  return typeof dim === 'number' && dim > 0 ? dim : undefined;
}

/** Smallest fixed batch dimension among the batched specs, or undefined when all are dynamic. */
function fixedBatch(specs: readonly TensorSpec[]): number | undefined {
  const fixed = specs.map((spec) => fixedDim(spec, 0)).filter((dim): dim is number => dim !== undefined);
  return fixed.length > 0 ? Math.min(...fixed) : undefined;
}

const INPUT_IDS: RoleRule = {
  role: 'token ids',
  aliases: ['input_ids', 'input', 'tokens', 'text_input_ids'],
  types: TOKEN_ID_TYPES,
  ranks: [2],
};

export interface TextEncoderBinding<S extends ModelSignature = ModelSession> {
  session: S;
  inputIds: TensorSpec;
  output: TensorSpec;
  /** Batch dimension fixed by the export, if any. */
  fixedBatch: number | undefined;
  /** Sequence length fixed by the export, if any. */
  fixedLength: number | undefined;
}

/** CLIP: input_ids -> pooler_output [B, 768] (used as pooled_projections). */
export function bindClipEncoder<S extends ModelSignature>(session: S): TextEncoderBinding<S> {
  const inputIds = requireInput(session, INPUT_IDS);
  const output = requireOutput(session, {
    role: 'pooled text embedding',
    aliases: ['pooler_output', 'pooled_output', 'pooled_embeddings', 'text_embeds', 'pooled_projections'],
    types: FLOAT_TYPES,
    ranks: [2],
  });
  return { session, inputIds, output, fixedBatch: fixedBatch([inputIds]), fixedLength: fixedDim(inputIds, 1) };
}

/** T5: input_ids -> last_hidden_state [B, T, D] (used as encoder_hidden_states). */
export function bindT5Encoder<S extends ModelSignature>(session: S): TextEncoderBinding<S> {
  const inputIds = requireInput(session, INPUT_IDS);
  const output = requireOutput(session, {
    role: 'T5 hidden states',
    aliases: ['last_hidden_state', 'text_embeddings', 'encoder_hidden_states', 'hidden_states'],
    types: FLOAT_TYPES,
    ranks: [3],
  });
  return { session, inputIds, output, fixedBatch: fixedBatch([inputIds]), fixedLength: fixedDim(inputIds, 1) };
}

export interface TransformerBinding<S extends ModelSignature = ModelSession> {
  session: S;
  hiddenStates: TensorSpec;
  encoderHiddenStates: TensorSpec;
  pooledProjections: TensorSpec;
  timestep: TensorSpec;
  imgIds: TensorSpec;
  txtIds: TensorSpec;
  /** Present for guidance-distilled models (FLUX dev), absent for schnell. */
  guidance: TensorSpec | undefined;
  output: TensorSpec;
  fixedBatch: number | undefined;
  /** Packed channels per image token (4 * latent channels), when the export fixes it. */
  packedChannels: number | undefined;
}

const IDS_RULE = { types: INTEGER_VALUED_TYPES, ranks: [2, 3] };

export function bindTransformer<S extends ModelSignature>(session: S): TransformerBinding<S> {
  const hiddenStates = requireInput(session, {
    role: 'packed latents',
    aliases: ['hidden_states', 'latent', 'img', 'x'],
    types: FLOAT_TYPES,
    ranks: [3],
  });
  const encoderHiddenStates = requireInput(session, {
    role: 'T5 embeddings',
    aliases: ['encoder_hidden_states', 'text_embeddings', 'txt', 'prompt_embeds'],
    types: FLOAT_TYPES,
    ranks: [3],
  });
  const pooledProjections = requireInput(session, {
    role: 'pooled CLIP embedding',
    aliases: ['pooled_projections', 'pooled_embeddings', 'pooled_prompt_embeds', 'y'],
    types: FLOAT_TYPES,
    ranks: [2],
  });
  const timestep = requireInput(session, { role: 'timestep', aliases: ['timestep', 'timesteps', 't'], types: FLOAT_TYPES, ranks: [1] });
  const imgIds = requireInput(session, { role: 'image position ids', aliases: ['img_ids', 'image_ids', 'latent_image_ids'], ...IDS_RULE });
  const txtIds = requireInput(session, { role: 'text position ids', aliases: ['txt_ids', 'text_ids'], ...IDS_RULE });
  const guidance = findInput(session, { role: 'guidance', aliases: ['guidance', 'guidance_scale'], types: FLOAT_TYPES, ranks: [1] });
  const output = requireOutput(session, {
    role: 'velocity',
    aliases: ['out_hidden_states', 'sample', 'output', 'latent'],
    types: FLOAT_TYPES,
    ranks: [3],
  });
  const known = new Set(
    [hiddenStates, encoderHiddenStates, pooledProjections, timestep, imgIds, txtIds, guidance].filter(Boolean).map((spec) => spec!.name),
  );
  const unknown = [...session.inputs.keys()].filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new EngineError(
      'MODEL_UNSUPPORTED',
      `${session.file}: transformer has inputs this engine does not know how to fill: ${unknown.join(', ')}`,
    );
  }
  const batched = [hiddenStates, encoderHiddenStates, pooledProjections, timestep, ...(guidance ? [guidance] : [])];
  for (const ids of [imgIds, txtIds]) if (ids.shape.length === 3) batched.push(ids);
  return {
    session,
    hiddenStates,
    encoderHiddenStates,
    pooledProjections,
    timestep,
    imgIds,
    txtIds,
    guidance,
    output,
    fixedBatch: fixedBatch(batched),
    packedChannels: fixedDim(hiddenStates, 2),
  };
}

export interface VaeDecoderBinding<S extends ModelSignature = ModelSession> {
  session: S;
  latent: TensorSpec;
  output: TensorSpec;
  fixedBatch: number | undefined;
  /** Latent channels, when the export fixes them. */
  channels: number | undefined;
}

export function bindVaeDecoder<S extends ModelSignature>(session: S): VaeDecoderBinding<S> {
  const latent = requireInput(session, {
    role: 'latents',
    aliases: ['latent_sample', 'latent', 'latents', 'z'],
    types: FLOAT_TYPES,
    ranks: [4],
  });
  const output = requireOutput(session, { role: 'image', aliases: ['sample', 'images', 'image'], types: FLOAT_TYPES, ranks: [4] });
  return { session, latent, output, fixedBatch: fixedBatch([latent]), channels: fixedDim(latent, 1) };
}

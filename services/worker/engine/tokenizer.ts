/**
 * Prompt tokenization from a model's tokenizer.json, through the official HuggingFace `tokenizers`
 * Rust binding (npm `tokenizers`, prebuilt .node files inside the package, no install script), so ids
 * are byte-exact with Python's fast tokenizers: the same normalizer (incl. T5's precompiled
 * charsmap), pre-tokenizer, model and post-processor code runs on both sides.
 *
 * Padding and truncation follow what transformers does for FluxPipeline's
 * `padding="max_length", truncation=True`: fixed length, right side, truncation leaves room for the
 * post-processor's special tokens, so CLIP keeps BOS…EOS and T5 keeps the final </s>.
 *
 * Text normalization: only what tokenizer.json declares is applied (CLIP: NFC + whitespace collapse +
 * lowercase; T5: the precompiled NMT-NFKC charsmap). The slow Python CLIPTokenizer, which FLUX
 * model_index.json files name, additionally runs ftfy + NFKC when ftfy is installed (turning a
 * fullwidth "，" into ","); we deliberately follow tokenizer.json, i.e. CLIPTokenizerFast.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import { EngineError } from './errors.ts';
import { tokenizerJsonText, type TokenizerSource } from './tokenizer-files.ts';

export interface PromptTokenizer {
  /** Every encoded prompt has exactly this many ids. */
  readonly maxLength: number;
  readonly padId: number;
  /** Which file set the tokenizer was built from. */
  readonly source: TokenizerSource;
  /** Token ids per prompt, each of length maxLength. */
  encode(prompts: readonly string[]): Promise<number[][]>;
  /** Tokens per prompt before truncation (special tokens included): more than maxLength means truncated. */
  countTokens(prompts: readonly string[]): Promise<number[]>;
}

export interface PromptTokenizerOptions {
  /** Folder holding tokenizer.json (and optionally tokenizer_config.json). */
  directory: string;
  /** Fixed sequence length. Default: tokenizer_config.json model_max_length, else 77. */
  maxLength?: number;
}

interface TokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerText: string;
  source: TokenizerSource;
  config: Record<string, unknown>;
}

async function readTokenizerFiles(directory: string): Promise<TokenizerFiles> {
  const file = join(directory, 'tokenizer.json');
  const { text: tokenizerText, source } = await tokenizerJsonText(directory);
  let tokenizerJson: Record<string, unknown>;
  try {
    tokenizerJson = JSON.parse(tokenizerText) as Record<string, unknown>;
  } catch (error) {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: not valid JSON`, { cause: error });
  }
  let config: Record<string, unknown> = {};
  try {
    config = JSON.parse(await readFile(join(directory, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    // tokenizer_config.json is optional: defaults below come from tokenizer.json itself.
  }
  return { tokenizerJson, tokenizerText, source, config };
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/** The EOS id a post-processor appends: RobertaProcessing `sep` (CLIP) or the last special token of a template (T5). */
function postProcessorEosId(tokenizerJson: Record<string, unknown>): number | undefined {
  const post = tokenizerJson['post_processor'] as Record<string, unknown> | null | undefined;
  if (!post) return undefined;
  if (post['type'] === 'RobertaProcessing' || post['type'] === 'BertProcessing') {
    const sep = post['sep'];
    return Array.isArray(sep) && typeof sep[1] === 'number' ? sep[1] : undefined;
  }
  if (post['type'] === 'TemplateProcessing') {
    const single = post['single'] as Array<Record<string, { id: string }>> | undefined;
    const last = single?.at(-1)?.['SpecialToken']?.id;
    const specials = post['special_tokens'] as Record<string, { ids: number[] }> | undefined;
    return last !== undefined ? specials?.[last]?.ids.at(-1) : undefined;
  }
  return undefined;
}

/**
 * Pad id: tokenizer_config.json pad_token if present; else "<pad>" when the vocabulary has one (T5);
 * else the EOS the post-processor appends (CLIP pads with EOS).
 */
function resolvePadId(tokenizer: Tokenizer, files: TokenizerFiles, file: string): number {
  const configured = tokenContent(files.config['pad_token']);
  if (configured !== undefined) {
    const id = tokenizer.tokenToId(configured);
    if (id !== null) return id;
  }
  const pad = tokenizer.tokenToId('<pad>');
  if (pad !== null) return pad;
  const eos = postProcessorEosId(files.tokenizerJson);
  if (eos !== undefined) return eos;
  throw new EngineError('MODEL_UNSUPPORTED', `${file}: cannot determine the padding token (no pad_token, <pad> or post-processor EOS)`);
}

export async function loadPromptTokenizer(options: PromptTokenizerOptions): Promise<PromptTokenizer> {
  const file = join(options.directory, 'tokenizer.json');
  const files = await readTokenizerFiles(options.directory);
  let tokenizer: Tokenizer;
  try {
    tokenizer = Tokenizer.fromString(files.tokenizerText);
  } catch (error) {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: tokenizers cannot load it: ${(error as Error).message}`, { cause: error });
  }
  const configuredMax = files.config['model_max_length'];
  const maxLength =
    options.maxLength ??
    // transformers writes a huge sentinel (1e30) when no limit is known.
    (typeof configuredMax === 'number' && configuredMax > 0 && configuredMax < 1e6 ? configuredMax : 77);
  if (!Number.isInteger(maxLength) || maxLength < 2) {
    throw new EngineError('BAD_REQUEST', `${file}: sequence length must be an integer >= 2, got ${maxLength}`);
  }
  const padId = resolvePadId(tokenizer, files, file);
  const padToken = tokenizer.idToToken(padId) ?? undefined;
  tokenizer.setTruncation(maxLength);
  tokenizer.setPadding({ maxLength, padId, ...(padToken !== undefined ? { padToken } : {}) });
  // The same tokenizer without truncation or padding, to tell how long a prompt really is.
  const counter = Tokenizer.fromString(files.tokenizerText);

  return {
    maxLength,
    padId,
    source: files.source,
    async countTokens(prompts) {
      const encodings = await counter.encodeBatch([...prompts]);
      return encodings.map((encoding) => encoding.getLength());
    },
    async encode(prompts) {
      const encodings = await tokenizer.encodeBatch([...prompts]);
      return encodings.map((encoding, index) => {
        const ids = encoding.getIds();
        if (ids.length !== maxLength) {
          throw new EngineError('INFERENCE_FAILED', `${file}: prompt ${index} encoded to ${ids.length} ids, expected ${maxLength}`);
        }
        return ids;
      });
    },
  };
}

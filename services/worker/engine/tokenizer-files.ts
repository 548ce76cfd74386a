/**
 * The tokenizer file sets FLUX exports ship, turned into one tokenizer.json text for the `tokenizers`
 * binding (the same Rust code transformers' fast tokenizers run):
 *   - tokenizer.json as is (diffusers / transformers 5 saves, the bundled models);
 *   - CLIP `vocab.json` + `merges.txt` (what optimum-onnx writes: transformers < 4.58 saves the slow
 *     CLIPTokenizer), converted the way transformers' CLIPConverter does;
 *   - T5 `spiece.model` (a SentencePiece model), converted the way transformers' T5Converter does:
 *     Unigram pieces and scores, the model's own precompiled normalizer, Metaspace, `$A </s>`.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EngineError } from './errors.ts';
import { BufferSource, fields, float32Of, stringOf, type ByteSource } from './protobuf.ts';

export type TokenizerSource = 'tokenizer.json' | 'vocab.json + merges.txt' | 'spiece.model';

/** Which file set a tokenizer folder has, in order of preference; undefined when none. */
export function tokenizerSourceOf(directory: string): TokenizerSource | undefined {
  if (existsSync(join(directory, 'tokenizer.json'))) return 'tokenizer.json';
  if (existsSync(join(directory, 'vocab.json')) && existsSync(join(directory, 'merges.txt'))) return 'vocab.json + merges.txt';
  if (existsSync(join(directory, 'spiece.model'))) return 'spiece.model';
  return undefined;
}

async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/** Special tokens named by tokenizer_config.json / special_tokens_map.json (the latter wins, as in transformers). */
async function specialTokens(directory: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const file of ['tokenizer_config.json', 'special_tokens_map.json']) {
    const raw = await readJsonObject(join(directory, file));
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const content = tokenContent(raw[key]);
      if (content !== undefined) out[key] = content;
    }
  }
  return out;
}

const addedToken = (id: number, content: string) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
});

/** CLIP's vocab.json + merges.txt as transformers' CLIPConverter builds it. */
async function clipBpeJson(directory: string): Promise<string> {
  const vocabFile = join(directory, 'vocab.json');
  const vocab = await readJsonObject(vocabFile);
  const mergesText = await readFile(join(directory, 'merges.txt'), 'utf8');
  // CLIPTokenizer reads merges.txt as strip().split("\n")[1 : 49152 - 256 - 2 + 1]: the header line
  // is skipped and at most 48,894 merges are used.
  const merges = mergesText
    .trim()
    .split('\n')
    .slice(1, 49152 - 256 - 2 + 1)
    .map((line) => line.trimEnd());
  const special = await specialTokens(directory);
  const bos = special.bos_token ?? '<|startoftext|>';
  const eos = special.eos_token ?? '<|endoftext|>';
  const unk = special.unk_token ?? eos;
  const idOf = (token: string): number => {
    const id = vocab[token];
    if (typeof id !== 'number') throw new EngineError('MODEL_UNSUPPORTED', `${vocabFile}: special token ${token} is not in the vocabulary`);
    return id;
  };
  const added = [...new Set([bos, eos, unk, special.pad_token ?? eos])].map((t) => addedToken(idOf(t), t)).sort((a, b) => a.id - b.id);
  return JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [eos, idOf(eos)],
      cls: [bos, idOf(bos)],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  });
}

interface SentencePieceModel {
  pieces: { piece: string; score: number; type: number }[];
  modelType: number;
  unkId: number;
  byteFallback: boolean;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
}

/** sentencepiece_model.proto: ModelProto { pieces = 1; trainer_spec = 2; normalizer_spec = 3 }. */
export function parseSentencePiece(bytes: Uint8Array, file: string): SentencePieceModel {
  const source: ByteSource = new BufferSource(bytes);
  const model: SentencePieceModel = {
    pieces: [],
    modelType: 1,
    unkId: 0,
    byteFallback: false,
    precompiledCharsmap: new Uint8Array(),
    addDummyPrefix: true,
  };
  try {
    for (const f of fields(source)) {
      if (f.number === 1) {
        const piece = { piece: '', score: 0, type: 1 };
        for (const p of fields(source, f.start, f.end)) {
          if (p.number === 1) piece.piece = stringOf(source, p);
          if (p.number === 2) piece.score = float32Of(source, p);
          if (p.number === 3) piece.type = p.value;
        }
        model.pieces.push(piece);
      } else if (f.number === 2) {
        for (const t of fields(source, f.start, f.end)) {
          if (t.number === 3) model.modelType = t.value;
          if (t.number === 40) model.unkId = t.value;
          if (t.number === 35) model.byteFallback = t.value !== 0;
        }
      } else if (f.number === 3) {
        for (const n of fields(source, f.start, f.end)) {
          if (n.number === 2) model.precompiledCharsmap = source.bytes(n.start, n.end - n.start);
          if (n.number === 3) model.addDummyPrefix = n.value !== 0;
        }
      }
    }
  } catch (error) {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: not a SentencePiece model (${(error as Error).message})`, { cause: error });
  }
  if (model.pieces.length === 0) throw new EngineError('MODEL_UNSUPPORTED', `${file}: a SentencePiece model with no pieces`);
  return model;
}

/** T5's spiece.model as transformers' T5Converter builds it (with the tokenizer's extra ids). */
async function t5SentencePieceJson(directory: string): Promise<string> {
  const file = join(directory, 'spiece.model');
  const spm = parseSentencePiece(await readFile(file), file);
  if (spm.modelType !== 1) {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: SentencePiece model type ${spm.modelType} is not Unigram (T5 uses Unigram)`);
  }
  const config = await readJsonObject(join(directory, 'tokenizer_config.json'));
  const extraIds = typeof config.extra_ids === 'number' ? config.extra_ids : 100;
  const vocab: [string, number][] = spm.pieces.map((p) => [p.piece, p.score]);
  for (let i = extraIds - 1; i >= 0; i--) vocab.push([`<extra_id_${i}>`, 0]);
  const eosId = vocab.findIndex(([piece]) => piece === '</s>');
  if (eosId < 0) throw new EngineError('MODEL_UNSUPPORTED', `${file}: no </s> piece (not a T5 vocabulary)`);
  // Control and unknown pieces (<pad>, </s>, <unk>) and the extra ids are special tokens.
  const added = [
    ...spm.pieces.flatMap((p, id) => (p.type === 2 || p.type === 3 ? [addedToken(id, p.piece)] : [])),
    ...vocab.slice(spm.pieces.length).map(([piece], i) => addedToken(spm.pieces.length + i, piece)),
  ];
  const normalizers: unknown[] = [
    { type: 'Strip', strip_left: false, strip_right: true },
    { type: 'Replace', pattern: { Regex: ' {2,}' }, content: '▁' },
  ];
  if (spm.precompiledCharsmap.length > 0) {
    normalizers.unshift({ type: 'Precompiled', precompiled_charsmap: Buffer.from(spm.precompiledCharsmap).toString('base64') });
  }
  return JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'Sequence', normalizers },
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: spm.addDummyPrefix ? 'always' : 'never', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      special_tokens: { '</s>': { id: '</s>', ids: [eosId], tokens: ['</s>'] } },
    },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: spm.addDummyPrefix ? 'always' : 'never', split: true },
    model: { type: 'Unigram', unk_id: spm.unkId, vocab, byte_fallback: spm.byteFallback },
  });
}

/** The tokenizer.json text for a tokenizer folder, from whichever file set it has. */
export async function tokenizerJsonText(directory: string): Promise<{ text: string; source: TokenizerSource }> {
  const source = tokenizerSourceOf(directory);
  switch (source) {
    case 'tokenizer.json':
      return { text: await readFile(join(directory, 'tokenizer.json'), 'utf8'), source };
    case 'vocab.json + merges.txt':
      return { text: await clipBpeJson(directory), source };
    case 'spiece.model':
      return { text: await t5SentencePieceJson(directory), source };
    default:
      throw new EngineError(
        'MODEL_NOT_FOUND',
        `${directory}: no tokenizer files (need tokenizer.json, or vocab.json + merges.txt for CLIP, or spiece.model for T5); copy the tokenizer folder of the original checkpoint here`,
      );
  }
}

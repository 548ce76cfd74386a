import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadPromptTokenizer } from '../../../services/worker/engine/tokenizer.ts';
import { parseSentencePiece } from '../../../services/worker/engine/tokenizer-files.ts';
import { readFileSync } from 'node:fs';
import { PACKAGE_ROOT_FOR_TESTS } from './helpers/paths.ts';
import { TINY_MODEL_DIR, loadReferences, referencesAvailable } from './helpers/reference.ts';

const skip = referencesAvailable() ? false : 'test/fixtures/flux-reference missing';

describe('tokenizer file sets', { skip }, () => {
  it('CLIP from vocab.json + merges.txt alone gives HuggingFace’s ids on every reference case (unicode, long, punctuation)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 't2i-clip-bpe-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    for (const file of ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json']) {
      await cp(join(TINY_MODEL_DIR, 'tokenizer', file), join(dir, file));
    }
    const tokenizer = await loadPromptTokenizer({ directory: dir });
    assert.equal(tokenizer.source, 'vocab.json + merges.txt');
    const cases = loadReferences().tokenizer_cases;
    const ids = await tokenizer.encode(cases.map((c) => c.text));
    cases.forEach((c, i) => assert.deepEqual(ids[i], c.clip_input_ids, JSON.stringify(c.text)));
    const counts = await tokenizer.countTokens(cases.map((c) => c.text));
    assert.ok(
      counts.some((n) => n > 77),
      'a reference case is longer than 77 tokens (truncation is reported)',
    );
  });

  it('a SentencePiece model is read as written (pieces, scores, unk id, normalizer)', () => {
    const spm = parseSentencePiece(
      readFileSync(join(PACKAGE_ROOT_FOR_TESTS, 'test/fixtures/exporters/optimum-fp32/tokenizer_2/spiece.model')),
      'spiece.model',
    );
    assert.deepEqual(
      spm.pieces.slice(0, 3).map((p) => p.piece),
      ['<pad>', '</s>', '<unk>'],
    );
    assert.equal(spm.unkId, 2);
    assert.equal(spm.modelType, 1);
    assert.ok(spm.precompiledCharsmap.length > 1000, 'nmt_nfkc charsmap');
    assert.ok(spm.pieces.slice(3).every((p) => p.score < 0));
  });
});

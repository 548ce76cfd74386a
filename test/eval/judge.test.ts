import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ATTRIBUTES } from '../../services/eval/grammar.ts';
import { judgePixels, summarise } from '../../services/eval/judge.ts';
import { parsePrompt } from '../../services/eval/parse-prompt.ts';
import { loadRenderedScenes } from './helpers.ts';

const scenes = await loadRenderedScenes();

test('the judge reads every ground-truth render right: prompt parsed to its scene, image measured to its scene', () => {
  assert.ok(scenes.length >= 100);
  const judgements = scenes.map((s) => judgePixels(s.prompt, s.pixels, s.width, s.height, 3));
  for (const [i, s] of scenes.entries()) {
    const j = judgements[i]!;
    for (const attribute of ATTRIBUTES) {
      assert.equal(j.expected?.[attribute], s[attribute], `parse ${attribute} of ${JSON.stringify(s.prompt)}`);
      assert.equal(j.measured[attribute], s[attribute], `measure ${attribute} of scene ${i} (${s.prompt})`);
    }
    assert.ok(j.pass);
  }
  const summary = summarise(judgements);
  assert.equal(summary.judged, scenes.length);
  for (const attribute of ATTRIBUTES) assert.equal(summary.attributes[attribute]?.right, scenes.length);
});

test('an image judged against another scene’s prompt fails exactly on the attributes that differ', () => {
  let failed = 0;
  for (const [i, image] of scenes.entries()) {
    const other = scenes[(i + 1) % scenes.length]!;
    const j = judgePixels(other.prompt, image.pixels, image.width, image.height, 3);
    for (const attribute of ATTRIBUTES)
      assert.equal(j.scores[attribute], image[attribute] === other[attribute], `${attribute}: ${other.prompt}`);
    if (!j.pass) failed++;
  }
  assert.ok(failed > scenes.length * 0.95, `${failed} of ${scenes.length} swapped images failed`);
});

test('prompt parsing: the phrasings of the grammar, and free-form prompts left unscored', () => {
  assert.deepEqual(parsePrompt('small green triangle, top left, white backdrop'), {
    shape: 'triangle',
    colour: 'green',
    size: 'small',
    background: 'white',
    position: 'top left',
  });
  assert.deepEqual(parsePrompt('A Big Blue Ring in the CENTER against a black background.'), {
    shape: 'ring',
    colour: 'blue',
    size: 'large',
    background: 'black',
    position: 'centre',
  });
  const free = judgePixels('a photograph of a lighthouse at dusk', scenes[0]!.pixels, 64, 64, 3);
  assert.equal(free.expected, null);
  assert.deepEqual(free.scores, {});
  assert.equal(free.pass, false);
  assert.deepEqual(summarise([free]).judged, 0);
});

test('an empty image (background only) has no foreground: colour, shape, position and size are not met', () => {
  const flat = new Uint8Array(64 * 64 * 3).fill(128);
  const j = judgePixels('a red circle in the centre on a blue background', flat, 64, 64, 3);
  assert.equal(j.measured.colour, null);
  assert.deepEqual(j.scores, { colour: false, shape: false, position: false, size: false, background: false });
});

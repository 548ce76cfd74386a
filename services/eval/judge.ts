/**
 * The prompt-following judge: what the prompt asks for (parsePrompt) against what the image shows
 * (measureImage), attribute by attribute. An attribute the prompt does not name is not scored.
 */
import sharp from 'sharp';
import { ATTRIBUTES, loadGrammar, type Attribute, type Grammar, type SceneAttributes } from './grammar.ts';
import { measureImage, type Measurement } from './measure.ts';
import { parsePrompt } from './parse-prompt.ts';

export interface Judgement {
  /** null: the prompt is not in the grammar (free-form), nothing scored. */
  expected: SceneAttributes | null;
  measured: Measurement;
  /** true / false per attribute the prompt names. */
  scores: Partial<Record<Attribute, boolean>>;
  /** Every scored attribute right. */
  pass: boolean;
}

export function judgePixels(
  prompt: string,
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: number,
  grammar: Grammar = loadGrammar(),
): Judgement {
  const expected = parsePrompt(prompt, grammar);
  const measured = measureImage(pixels, width, height, channels, grammar);
  const scores: Partial<Record<Attribute, boolean>> = {};
  if (expected) {
    for (const attribute of ATTRIBUTES) {
      const want = expected[attribute];
      if (want !== undefined) scores[attribute] = measured[attribute] === want;
    }
  }
  return { expected, measured, scores, pass: expected !== null && Object.values(scores).every(Boolean) };
}

/** Decodes a PNG (or any image sharp reads) and judges it. */
export async function judgePng(prompt: string, png: Uint8Array, grammar: Grammar = loadGrammar()): Promise<Judgement> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return judgePixels(prompt, data, info.width, info.height, info.channels, grammar);
}

export interface JudgeSummary {
  /** Images whose prompt is in the grammar. */
  judged: number;
  /** Free-form prompts, not scored. */
  skipped: number;
  /** Share of judged images right on each attribute (0..1), with the counts. */
  attributes: Partial<Record<Attribute, { right: number; of: number; rate: number }>>;
  /** Share of judged images right on every attribute. */
  allRight: number;
}

export function summarise(judgements: Judgement[]): JudgeSummary {
  const attributes: JudgeSummary['attributes'] = {};
  let judged = 0;
  let allRight = 0;
  for (const j of judgements) {
    if (!j.expected) continue;
    judged++;
    if (j.pass) allRight++;
    for (const [attribute, ok] of Object.entries(j.scores) as [Attribute, boolean][]) {
      const a = (attributes[attribute] ??= { right: 0, of: 0, rate: 0 });
      a.of++;
      if (ok) a.right++;
    }
  }
  for (const a of Object.values(attributes)) a.rate = a.of === 0 ? 0 : a.right / a.of;
  return { judged, skipped: judgements.length - judged, attributes, allRight: judged === 0 ? 0 : allRight / judged };
}

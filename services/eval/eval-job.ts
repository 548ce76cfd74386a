/**
 * `t2i eval JOB`: judges every image of a completed job against the prompt of the row it is listed
 * under in output.jsonl (so an image on the wrong row fails), writes one line per image to
 * jobs/<job>/eval.jsonl and an `eval` summary into manifest.json.
 */
import readline from 'node:readline';
import { PassThrough } from 'node:stream';
import { T2iError } from '../common/errors.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { validateJobId } from '../query/layout.ts';
import { promptsOf } from '../query/rows.ts';
import { judgePng, summarise, type Judgement, type JudgeSummary } from './judge.ts';
import { loadGrammar } from './grammar.ts';
import { evalKey, imageKey, manifestKey, outputKey } from '../common/bucket-layout.ts';

/** One line of eval.jsonl. */
export interface ImageEval {
  row: number;
  k: number;
  prompt: string;
  uri: string;
  /** null: a free-form prompt, not scored. */
  expected: Judgement['expected'];
  measured: Omit<Judgement['measured'], 'centroid'> & { centroid: [number, number] | null };
  scores: Judgement['scores'];
  pass: boolean;
}

export interface EvalResult {
  jobId: string;
  summary: JudgeSummary;
  evalUri: string;
}

const IMAGE_NAME = /(\d{9})-(\d+)\.png$/;

/** Reads output.jsonl in order and judges its images, a few fetches at a time, keeping the order. */
export async function evaluateJob(
  store: ObjectStore,
  jobIdInput: string,
  options: { concurrency?: number; onProgress?: (done: number) => void } = {},
): Promise<EvalResult> {
  const jobId = validateJobId(jobIdInput);
  const manifestBytes = await store.get(manifestKey(jobId));
  if (!manifestBytes) {
    throw new T2iError(
      'INPUT_INVALID',
      `job ${jobId} has no manifest.json in s3://${store.bucket}: it does not exist or is not complete yet (t2i query jobs lists them)`,
    );
  }
  const output = await store.getStream(outputKey(jobId));
  if (!output) throw new T2iError('INPUT_INVALID', `job ${jobId} has no output.jsonl`);
  const grammar = loadGrammar();
  const body = new PassThrough();
  const upload = store.putStream(evalKey(jobId), body, 'application/x-ndjson');
  const judgements: Judgement[] = [];
  const concurrency = options.concurrency ?? 8;
  let pending: Promise<ImageEval>[] = [];
  const flush = async () => {
    for (const line of await Promise.all(pending)) {
      if (!body.write(`${JSON.stringify(line)}\n`)) await new Promise((r) => body.once('drain', r));
    }
    pending = [];
    options.onProgress?.(judgements.length);
  };
  try {
    for await (const text of readline.createInterface({ input: output, crlfDelay: Infinity })) {
      if (text.trim() === '') continue;
      const row = JSON.parse(text) as Record<string, unknown>;
      const prompts = promptsOf(row);
      const uris = Array.isArray(row.images) ? row.images.filter((u): u is string => typeof u === 'string') : [];
      for (const uri of uris) {
        const name = IMAGE_NAME.exec(uri);
        if (!name) throw new T2iError('INPUT_INVALID', `output.jsonl of ${jobId}: image URI ${uri} is not <row>-<k>.png`);
        const [rowNumber, k] = [Number(name[1]), Number(name[2])];
        const prompt = prompts[k] ?? '';
        pending.push(
          (async (): Promise<ImageEval> => {
            const png = await store.get(imageKey(jobId, rowNumber, k));
            if (!png) throw new T2iError('INPUT_INVALID', `image ${uri} of row ${rowNumber} is missing from the bucket`);
            const j = await judgePng(prompt, png, grammar);
            judgements.push(j);
            return { row: rowNumber, k, prompt, uri, expected: j.expected, measured: j.measured, scores: j.scores, pass: j.pass };
          })(),
        );
        if (pending.length >= concurrency) await flush();
      }
    }
    await flush();
    body.end();
    await upload;
  } catch (error) {
    body.destroy(error as Error);
    await upload.catch(() => {});
    throw error;
  }
  const summary = summarise(judgements);
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as Record<string, unknown>;
  manifest.eval = { ...summary, judge: 'services/eval (scene grammar)', file: 'eval.jsonl', at: new Date().toISOString() };
  await store.put(manifestKey(jobId), `${JSON.stringify(manifest, null, 2)}\n`, 'application/json');
  return { jobId, summary, evalUri: store.uri(evalKey(jobId)) };
}

/** The summary as a few human lines. */
export function formatSummary(result: EvalResult): string {
  const { summary } = result;
  const lines = [`job ${result.jobId}: ${summary.judged} images judged, ${summary.skipped} free-form prompts not scored`];
  for (const [attribute, a] of Object.entries(summary.attributes)) {
    lines.push(`  ${attribute.padEnd(10)} ${(a.rate * 100).toFixed(1).padStart(5)}%  (${a.right}/${a.of})`);
  }
  lines.push(`  all right  ${(summary.allRight * 100).toFixed(1).padStart(5)}%`, `eval      ${result.evalUri}`);
  return `${lines.join('\n')}\n`;
}

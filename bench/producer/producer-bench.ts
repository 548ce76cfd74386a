/**
 * Producer throughput and memory bench (see README.md beside this file).
 *
 *   node --import tsx bench/producer/producer-bench.ts [--rows 1000000] [--rounds 3] [--partitions 12]
 *        [--rss-gib 1] [--compare-rows 200000] [--keep-files]
 *
 * Needs the local stack (`t2i stack up`) and kcat (`apt-get install kcat`). Writes bench/results/producer.json
 * and prints a markdown table. Generated inputs go to .cache/bench/producer (git-ignored) and are deleted
 * at the end unless --keep-files.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig, topicNames } from '../../services/common/config.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { produceJob } from '../../services/producer/produce-job.ts';
import type { ProduceCompression, ProduceTuning } from '../../services/producer/options.ts';

const WORK_DIR = path.join(PACKAGE_ROOT, '.cache', 'bench', 'producer');
const RESULTS = path.join(PACKAGE_ROOT, 'bench', 'results', 'producer.json');

interface ChildResult {
  elapsedMs: number;
  rows: number;
  prompts: number;
  bytes: number;
  maxRssMiB: number;
  requests: number;
}

// Child mode: one produceJob in a fresh process, so its peak RSS is its own.
if (process.argv[2] === '--child') {
  const [file, prefix, tuningJson] = process.argv.slice(3);
  const config = loadConfig({ ...process.env, T2I_TOPIC_PREFIX: prefix });
  const started = performance.now();
  const summary = await produceJob({ config, input: file!, jobId: 'bench', tuning: JSON.parse(tuningJson ?? '{}') as ProduceTuning });
  const result: ChildResult = {
    elapsedMs: performance.now() - started,
    rows: summary.rows,
    prompts: summary.prompts,
    bytes: summary.bytesRead,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    requests: summary.requests,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}
const ROWS = flag('rows', 1_000_000);
const ROUNDS = flag('rounds', 3);
const PARTITIONS = flag('partitions', 12);
const RSS_GIB = flag('rss-gib', 1);
const COMPARE_ROWS = flag('compare-rows', 200_000);
const KEEP = process.argv.includes('--keep-files');
const BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';

const kafka = new Kafka({ brokers: BROKERS.split(','), logLevel: logLevel.NOTHING, clientId: 't2i-bench' });
const admin = kafka.admin();
await admin.connect();

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const ADJECTIVES = ['red', 'quiet', 'ancient', 'neon', 'misty', 'golden', 'tiny', 'vast'];
const SUBJECTS = ['fox in snow', 'lighthouse at dusk', 'robot gardener', 'mountain lake', 'city street in rain', 'desert caravan'];

/** The seed's format, one user message per row; `pad` characters of extra fields make rows bigger. */
function row(i: number, pad: number): string {
  const prompt = `a ${ADJECTIVES[i % ADJECTIVES.length]} ${SUBJECTS[i % SUBJECTS.length]}, photo ${i}, highly detailed, soft light`;
  const base: Record<string, unknown> = {
    conversations: [{ role: 'user', content: pad > 0 ? `${prompt}, ${'detail '.repeat(100)}` : prompt }],
    id: i,
  };
  if (pad > 0) base.notes = 'lorem ipsum '.repeat(Math.ceil(pad / 12)).slice(0, pad);
  return JSON.stringify(base);
}

async function writeLines(file: string, count: number, make: (i: number) => string): Promise<void> {
  const out = fs.createWriteStream(file);
  for (let i = 1; i <= count; i++) {
    if (!out.write(`${make(i)}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
}

async function freshTopic(name: string): Promise<void> {
  await admin.createTopics({ topics: [{ topic: name, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
}

async function dropTopics(names: string[]): Promise<void> {
  await admin.deleteTopics({ topics: names }).catch(() => {});
}

function runKcat(topic: string, tsv: string): number {
  const started = performance.now();
  // librdkafka's defaults: acks=all, no idempotence, no compression, linger 5 ms.
  const result = spawnSync('kcat', ['-P', '-b', BROKERS, '-t', topic, '-K', '\t', '-l', tsv], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (result.status !== 0) throw new Error(`kcat failed: ${result.stderr.toString()}`);
  return performance.now() - started;
}

function runProducer(file: string, prefix: string, tuning: ProduceTuning = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPathSelf(), '--child', file, prefix, JSON.stringify(tuning)], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, T2I_PROMPT_PARTITIONS: String(PARTITIONS) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out) as ChildResult) : reject(new Error(`producer child exited ${code}`)),
    );
  });
}

function fileURLToPathSelf(): string {
  return path.join(PACKAGE_ROOT, 'bench', 'producer', 'producer-bench.ts');
}

let serial = 0;
function prefix(): string {
  serial++;
  return `bench-${process.pid}-${serial}.`;
}

async function produceRun(file: string, tuning: ProduceTuning = {}): Promise<ChildResult> {
  const p = prefix();
  try {
    return await runProducer(file, p, tuning);
  } finally {
    await dropTopics(Object.values(topicNames(p)));
  }
}

fs.mkdirSync(WORK_DIR, { recursive: true });
const promptsFile = path.join(WORK_DIR, `prompts-${ROWS}.jsonl`);
const keyedFile = path.join(WORK_DIR, `keyed-${ROWS}.tsv`);
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

log(`generating ${ROWS} rows`);
await writeLines(promptsFile, ROWS, (i) => row(i, 0));
await writeLines(keyedFile, ROWS, (i) => `bench/${i}\t${row(i, 0)}`);
const inputBytes = fs.statSync(promptsFile).size;

// 1. Throughput: kcat and t2i produce, alternately, fresh topics with the same partition count.
const kcatRates: number[] = [];
const produceRates: number[] = [];
const produceRss: number[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  const topic = `bench-kcat-${process.pid}-${round}`;
  await freshTopic(topic);
  const kcatMs = runKcat(topic, keyedFile);
  await dropTopics([topic]);
  kcatRates.push(ROWS / (kcatMs / 1000));
  const produced = await produceRun(promptsFile);
  if (produced.rows !== ROWS) throw new Error(`produced ${produced.rows} rows, expected ${ROWS}`);
  produceRates.push(ROWS / (produced.elapsedMs / 1000));
  produceRss.push(produced.maxRssMiB);
  log(
    `round ${round}: kcat ${Math.round(kcatRates.at(-1)!)} rows/s, t2i produce ${Math.round(produceRates.at(-1)!)} rows/s (${produced.requests} requests, RSS ${produced.maxRssMiB.toFixed(0)} MiB)`,
  );
}

// 2. Compression and batching variants on a slice (same broker, same run).
const sliceFile = path.join(WORK_DIR, `prompts-${COMPARE_ROWS}.jsonl`);
await writeLines(sliceFile, COMPARE_ROWS, (i) => row(i, 0));
const variants: { name: string; tuning: ProduceTuning }[] = [
  { name: 'defaults: no compression, ≤5000 msgs or 1 MiB per request, 1 in flight', tuning: {} },
  { name: 'gzip', tuning: { compression: 'gzip' as ProduceCompression } },
  { name: '2 in flight', tuning: { maxInFlight: 2 } },
  { name: '≤2000 msgs per request', tuning: { maxBatchMessages: 2000 } },
  {
    name: '≤20000 msgs or 4 MiB per request, 2 in flight',
    tuning: { maxBatchMessages: 20_000, maxBatchBytes: 4 * 1024 * 1024, maxInFlight: 2 },
  },
];
const variantResults: { name: string; rowsPerSec: number }[] = [];
for (const variant of variants) {
  const rates: number[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await produceRun(sliceFile, variant.tuning);
    rates.push(COMPARE_ROWS / (r.elapsedMs / 1000));
  }
  variantResults.push({ name: variant.name, rowsPerSec: Math.round(median(rates)) });
  log(`variant ${variant.name}: ${Math.round(median(rates))} rows/s`);
}

// 3. Peak RSS while producing a ~1 GiB file of big rows.
let rss: { fileBytes: number; rows: number; maxRssMiB: number; rowsPerSec: number; mibPerSec: number } | undefined;
if (RSS_GIB > 0) {
  const bigFile = path.join(WORK_DIR, `big-${RSS_GIB}gib.jsonl`);
  const target = RSS_GIB * 1024 ** 3;
  const bigRowBytes = Buffer.byteLength(row(1, 3000)) + 1;
  const bigRows = Math.ceil(target / bigRowBytes);
  log(`generating ${bigRows} rows of ~${bigRowBytes} bytes (${RSS_GIB} GiB)`);
  await writeLines(bigFile, bigRows, (i) => row(i, 3000));
  const fileBytes = fs.statSync(bigFile).size;
  const r = await produceRun(bigFile);
  rss = {
    fileBytes,
    rows: r.rows,
    maxRssMiB: Math.round(r.maxRssMiB),
    rowsPerSec: Math.round(r.rows / (r.elapsedMs / 1000)),
    mibPerSec: Math.round(fileBytes / 1024 ** 2 / (r.elapsedMs / 1000)),
  };
  log(`1 GiB: ${r.rows} rows, peak RSS ${r.maxRssMiB.toFixed(0)} MiB, ${rss.mibPerSec} MiB/s`);
  if (!KEEP) fs.rmSync(bigFile, { force: true });
}

if (!KEEP) {
  for (const f of [promptsFile, keyedFile, sliceFile]) fs.rmSync(f, { force: true });
}
await admin.disconnect();

const cpu = (await import('node:os')).cpus();
const results = {
  date: new Date().toISOString(),
  machine: { cpus: cpu.length, model: cpu[0]?.model ?? 'unknown', node: process.version },
  rows: ROWS,
  inputBytes,
  partitions: PARTITIONS,
  rounds: ROUNDS,
  kcat: { rowsPerSec: kcatRates.map(Math.round), median: Math.round(median(kcatRates)) },
  produce: { rowsPerSec: produceRates.map(Math.round), median: Math.round(median(produceRates)), maxRssMiB: produceRss.map(Math.round) },
  ratio: Number((median(produceRates) / median(kcatRates)).toFixed(3)),
  variants: variantResults,
  rss1GiB: rss,
};
fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
fs.writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);

const table = [
  '| measure | value |',
  '|---|---|',
  `| kcat, ${ROWS} rows, ${PARTITIONS} partitions (median of ${ROUNDS}) | ${results.kcat.median.toLocaleString('en-US')} rows/s |`,
  `| t2i produce, same rows (median of ${ROUNDS}) | ${results.produce.median.toLocaleString('en-US')} rows/s |`,
  `| ratio t2i/kcat | ${results.ratio} |`,
  ...variantResults.map((v) => `| t2i produce ${COMPARE_ROWS} rows, ${v.name} | ${v.rowsPerSec.toLocaleString('en-US')} rows/s |`),
  ...(rss
    ? [
        `| peak RSS producing ${(rss.fileBytes / 1024 ** 3).toFixed(2)} GiB (${rss.rows.toLocaleString('en-US')} rows) | ${rss.maxRssMiB} MiB (${rss.mibPerSec} MiB/s) |`,
      ]
    : []),
];
process.stdout.write(`${table.join('\n')}\n`);

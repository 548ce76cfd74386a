import type { Command } from 'commander';
import { T2iError } from '../common/errors.ts';
import { DEFAULT_MODEL_DIR } from '../common/paths.ts';

interface CheckFlags {
  provider?: string;
  batch?: string;
  width?: string;
  height?: string;
  json?: boolean;
}

const PROVIDERS = ['cpu', 'cuda', 'tensorrt'] as const;

function positive(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new T2iError('CONFIG_INVALID', `--${name} ${JSON.stringify(value)}: expected a whole number >= 1`);
  return n;
}

const gib = (bytes: number) => (bytes < 1024 ** 3 ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${(bytes / 1024 ** 3).toFixed(1)} GiB`);
const shape = (dims: (number | string)[]) => `[${dims.join(', ')}]`;

interface TuneFlags {
  provider?: string;
  batch?: string;
  threads?: string;
  spinning?: string;
  passes?: string;
  json?: boolean;
}

/** --threads "1,2,default" → candidate thread counts (undefined: onnxruntime's choice). */
export function parseThreadList(value: string): (number | undefined)[] {
  return value.split(',').map((part) => {
    const t = part.trim();
    if (t === 'default') return undefined;
    const n = Number(t);
    if (!Number.isInteger(n) || n < 1 || n > 1024)
      throw new T2iError('CONFIG_INVALID', `--threads: ${JSON.stringify(t)} is not a thread count (whole numbers from 1, or "default")`);
    return n;
  });
}

/** --spinning "off,on" → booleans. */
export function parseSpinningList(value: string): boolean[] {
  return value.split(',').map((part) => {
    const t = part.trim();
    if (t === 'on' || t === 'off') return t === 'on';
    throw new T2iError('CONFIG_INVALID', `--spinning: ${JSON.stringify(t)} is not on or off`);
  });
}

/** `t2i model check DIR`: the engine's preflight, as a report (no onnxruntime session is created). */
export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('inspect and tune model directories');
  model
    .command('check')
    .description(
      'check a FLUX.1 ONNX model directory without loading it: layout, components, dtypes, tokenizers, schedule, memory estimate; exit 1 on a problem',
    )
    .argument('[dir]', 'model directory (default: T2I_MODEL, else the bundled model)')
    .option('--provider <name>', 'cpu | cuda | tensorrt: the provider it will run on (GPU memory estimate, CPU-only operators)')
    .option('--batch <n>', 'images per pass, for the memory estimate (default 1)')
    .option('--width <px>', 'image width for the memory estimate (default: the model’s)')
    .option('--height <px>', 'image height for the memory estimate (default: the model’s)')
    .option('--json', 'print the whole report as JSON')
    .action(async (dir: string | undefined, flags: CheckFlags) => {
      const provider = flags.provider ?? process.env.T2I_EXECUTION_PROVIDER ?? 'cpu';
      if (!(PROVIDERS as readonly string[]).includes(provider)) {
        throw new T2iError('CONFIG_INVALID', `--provider ${JSON.stringify(provider)}: expected one of ${PROVIDERS.join(', ')}`);
      }
      const batch = positive('batch', flags.batch);
      const width = positive('width', flags.width);
      const height = positive('height', flags.height);
      // Loaded here: the preflight reads files only, but lives with the engine.
      const { preflightModel } = await import('../worker/engine/preflight.ts');
      const report = await preflightModel(dir ?? process.env.T2I_MODEL ?? DEFAULT_MODEL_DIR, {
        provider: provider as (typeof PROVIDERS)[number],
        ...(batch !== undefined ? { batch } : {}),
        ...(width !== undefined ? { width } : {}),
        ...(height !== undefined ? { height } : {}),
      });
      process.exitCode = report.ok ? 0 : 1;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const out: string[] = [`model     ${report.directory}`, `layout    ${report.layout}`];
      for (const [name, c] of Object.entries(report.components)) {
        const io = [
          ...c.inputs.map((i) => `${i.name} ${i.type}${shape(i.shape)}`),
          '->',
          ...c.outputs.map((o) => `${o.name} ${o.type}${shape(o.shape)}`),
        ];
        const weights = Object.entries(c.weights)
          .map(([t, b]) => `${t} ${gib(b)}`)
          .join(', ');
        out.push(
          `${name.padEnd(13)} ${io.join(' ')}`,
          `${''.padEnd(13)} weights ${gib(c.weightBytes)} (${weights || 'none'})${c.externalFiles.length ? `, external: ${c.externalFiles.join(', ')}` : ''}`,
        );
      }
      out.push(`tokenizers CLIP: ${report.tokenizers.clip ?? 'missing'}; T5: ${report.tokenizers.t5 ?? 'missing'}`);
      if (report.usesGuidance !== null)
        out.push(`guidance  ${report.usesGuidance ? 'yes (FLUX.1-dev style, distilled guidance input)' : 'no (FLUX.1-schnell style)'}`);
      if (report.schedule) {
        const s = report.schedule.config;
        out.push(
          `schedule  ${report.schedule.source}: shift ${s.shift}${s.useDynamicShifting ? `, dynamic (base ${s.baseShift}, max ${s.maxShift})` : ', static'}`,
        );
      }
      if (report.defaults) {
        const d = report.defaults;
        out.push(
          `defaults  ${d.width}x${d.height}, ${d.steps} steps, guidance ${d.guidance}, ${d.trueCfgScale > 1 ? `true CFG ${d.trueCfgScale} (2 transformer passes a step), ` : ''}T5 length ${d.maxSequenceLength}`,
        );
      }
      out.push(`weights   ${gib(report.weightBytes)} on disk`);
      if (report.memory) {
        const m = report.memory;
        const gpu = provider === 'cpu' ? '' : `GPU ~${gib(m.gpuBytes)}, `;
        out.push(
          `memory    at batch ${m.batch}, ${m.width}x${m.height} on ${provider}: ${gpu}host ~${gib(m.hostBytes)} (estimate: ${m.basis})`,
        );
      }
      for (const issue of report.issues)
        out.push(`${issue.severity.padEnd(9)} ${issue.file}: ${issue.problem}`, `${''.padEnd(9)} fix: ${issue.fix}`);
      out.push(
        report.ok
          ? `ok (checked in ${Math.round(report.elapsedMs)} ms, no session opened)`
          : `NOT USABLE: ${report.issues.filter((i) => i.severity === 'error').length} problem(s) above`,
      );
      process.stdout.write(`${out.join('\n')}\n`);
    });

  model
    .command('tune')
    .description(
      'measure images/s of a model on this machine for each onnxruntime thread setting and print the fastest as the environment to set',
    )
    .argument('[dir]', 'model directory (default: T2I_MODEL, else the bundled model)')
    .option('--provider <name>', 'cpu | cuda | tensorrt (default T2I_EXECUTION_PROVIDER, else cpu)')
    .option('--batch <n>', 'images per pass, as the worker will run them (default T2I_MAX_BATCH, else 4)')
    .option(
      '--threads <list>',
      'intra-op thread counts to try, comma-separated; "default" is onnxruntime’s choice (default: 1, 2, 4 … up to the cores, and default)',
    )
    .option('--spinning <list>', 'idle-thread spinning to try: off, on or off,on (default off,on)')
    .option('--passes <n>', 'timed passes per setting, after one warm-up pass (default 5)')
    .option('--json', 'print the results as JSON')
    .action(async (dir: string | undefined, flags: TuneFlags) => {
      const provider = flags.provider ?? process.env.T2I_EXECUTION_PROVIDER ?? 'cpu';
      if (!(PROVIDERS as readonly string[]).includes(provider)) {
        throw new T2iError('CONFIG_INVALID', `--provider ${JSON.stringify(provider)}: expected one of ${PROVIDERS.join(', ')}`);
      }
      const { availableParallelism } = await import('node:os');
      const cores = availableParallelism();
      const defaultThreads = [1, 2, 4, 8, 16, 32, 64].filter((n) => n <= cores);
      const threads = flags.threads ? parseThreadList(flags.threads) : [...defaultThreads, undefined];
      const spinning = parseSpinningList(flags.spinning ?? 'off,on');
      const batch = positive('batch', flags.batch ?? process.env.T2I_MAX_BATCH) ?? 4;
      const passes = positive('passes', flags.passes) ?? 5;
      const candidates = threads.flatMap((t) => spinning.map((s) => ({ threads: t, spinning: s })));
      const directory = dir ?? process.env.T2I_MODEL ?? DEFAULT_MODEL_DIR;
      const label = (t: number | undefined, s: boolean) => `threads ${t ?? 'default'}, spinning ${s ? 'on' : 'off'}`;
      process.stderr.write(`tuning ${directory} on ${provider}: ${candidates.length} settings, batch ${batch}, ${passes} passes each\n`);
      const { tuneThreads } = await import('../worker/engine/tune.ts');
      const { results, best } = await tuneThreads({
        modelDirectory: directory,
        provider: provider as (typeof PROVIDERS)[number],
        batch,
        passes,
        candidates,
        onResult: (r, i, n) =>
          process.stderr.write(`  [${i + 1}/${n}] ${label(r.threads, r.spinning)}: ${r.imagesPerSecond.toFixed(1)} images/s\n`),
      });
      const env = `T2I_INTRA_OP_THREADS=${best.threads ?? 0} T2I_INTRA_OP_SPINNING=${best.spinning}`;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ directory, provider, batch, passes, cores, results, best, env }, null, 2)}\n`);
        return;
      }
      const out = ['| threads | spinning | images/s | ms per batch |', '|---|---|---|---|'];
      for (const r of results)
        out.push(
          `| ${r.threads ?? 'default'} | ${r.spinning ? 'on' : 'off'} | ${r.imagesPerSecond.toFixed(1)} | ${r.msPerBatch.toFixed(1)} |`,
        );
      out.push('', `fastest: ${label(best.threads, best.spinning)}. Set: ${env}`);
      out.push(
        '(measured with nothing else running: a worker that shares the machine with Kafka, S3 or other workers may want fewer threads)',
      );
      process.stdout.write(`${out.join('\n')}\n`);
    });
}

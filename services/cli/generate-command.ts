import type { Command } from 'commander';
import { loadConfig } from '../common/config.ts';
import { T2iError } from '../common/errors.ts';

interface GenerateFlags {
  output: string;
  seed?: string;
  steps?: string;
  width?: string;
  height?: string;
  guidance?: string;
  model?: string;
  provider?: string;
  json?: boolean;
}

function numberFlag(name: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || (integer && !Number.isInteger(parsed))) {
    throw new T2iError('CONFIG_INVALID', `--${name} ${JSON.stringify(value)}: expected ${integer ? 'a whole number' : 'a number'}`);
  }
  return parsed;
}

export function registerGenerateCommands(program: Command): void {
  program
    .command('generate')
    .description('the engine alone: one prompt → one PNG (same seed → byte-identical file)')
    .argument('<prompt>', 'the prompt')
    .requiredOption('-o, --output <file>', 'PNG to write')
    .option('--seed <n>', 'noise seed (default 0)')
    .option('--steps <n>', 'Euler steps (default: the model’s)')
    .option('--width <px>', 'width, a multiple of 16 (default: the model’s)')
    .option('--height <px>', 'height, a multiple of 16 (default: the model’s)')
    .option('--guidance <g>', 'guidance scale (default: the model’s)')
    .option('--model <dir>', 'model directory (T2I_MODEL; default the bundled tiny model)')
    .option('--provider <name>', 'cpu | cuda | tensorrt (T2I_EXECUTION_PROVIDER)')
    .option('--json', 'print the result (file, size, seed, steps, model, provider, truncation, time) as JSON')
    .action(async (prompt: string, flags: GenerateFlags) => {
      const config = loadConfig(process.env, { env: { T2I_MODEL: flags.model, T2I_EXECUTION_PROVIDER: flags.provider } });
      const seed = numberFlag('seed', flags.seed, true);
      const steps = numberFlag('steps', flags.steps, true);
      const width = numberFlag('width', flags.width, true);
      const height = numberFlag('height', flags.height, true);
      const guidance = numberFlag('guidance', flags.guidance, false);
      // Loaded here, not at start-up: onnxruntime, tokenizers and sharp are for this command alone.
      const { generateFile } = await import('../worker/engine/generate-file.ts');
      const result = await generateFile({
        prompt,
        output: flags.output,
        modelDirectory: config.model.dir,
        provider: config.model.executionProvider,
        allowCpuFallback: config.model.allowCpuFallback,
        ...(seed !== undefined ? { seed } : {}),
        ...(steps !== undefined ? { steps } : {}),
        ...(width !== undefined ? { width } : {}),
        ...(height !== undefined ? { height } : {}),
        ...(guidance !== undefined ? { guidance } : {}),
        logger: { warn: (details, message) => process.stderr.write(`warning: ${message} ${JSON.stringify(details)}\n`) },
      });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      const cut = result.truncation
        ? `\nwarning: the prompt was truncated (${Object.entries(result.truncation)
            .map(([encoder, t]) => `${encoder.toUpperCase()}: ${t.tokens} tokens, ${t.limit} kept`)
            .join('; ')})`
        : '';
      process.stdout.write(
        `${result.output}  ${result.width}x${result.height} seed ${result.seed} steps ${result.steps} guidance ${result.guidance} model ${result.model} (${result.provider}, ${Math.round(result.durationMs)} ms)${cut}\n`,
      );
    });
}

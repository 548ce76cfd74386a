import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { PACKAGE_ROOT } from '../common/paths.ts';
import { T2iError, describeError } from '../common/errors.ts';
import { registerEvalCommands } from './eval-command.ts';
import { registerGenerateCommands } from './generate-command.ts';
import { registerModelCommands } from './model-command.ts';
import { registerProduceCommands } from './produce-command.ts';
import { registerQueryCommands } from './query-command.ts';
import { registerRunCommands } from './run-command.ts';
import { registerSinkCommands } from './sink-command.ts';
import { registerStackCommands } from './stack-command.ts';
import { registerWorkerCommands } from './worker-command.ts';

const { version } = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };

const program = new Command();
program
  .name('t2i')
  .version(version, '-V, --version', 'print the t2i-stream version')
  .description('t2i-stream: prompt files (JSONL) → Kafka → FLUX.1 workers → images and output JSONL in S3')
  .showHelpAfterError()
  .exitOverride();

registerRunCommands(program);
registerProduceCommands(program);
registerWorkerCommands(program);
registerSinkCommands(program);
registerQueryCommands(program);
registerGenerateCommands(program);
registerEvalCommands(program);
registerModelCommands(program);
registerStackCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Exit codes: 0 ok (and --help, --version), 1 the work failed, 2 a usage or configuration error.
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else {
    const prefix = error instanceof T2iError ? `t2i: ${error.code}: ` : 't2i: ';
    process.stderr.write(`${prefix}${describeError(error)}\n`);
    process.exitCode = error instanceof T2iError && error.code === 'CONFIG_INVALID' ? 2 : 1;
  }
}

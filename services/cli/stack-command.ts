import type { Command } from 'commander';
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp } from '../../deploy/local/stack.ts';

export function registerStackCommands(program: Command): void {
  const stack = program.command('stack').description('the local Kafka + S3 stack (no Docker): up | down | status');
  const say = (line: string) => process.stderr.write(`${line}\n`);
  stack
    .command('up')
    .description('fetch (first run), start and wait for Kafka and s3proxy on loopback; create topics and bucket')
    .action(async () => {
      await stackUp(stackOptionsFromEnv(), say);
    });
  stack
    .command('down')
    .description('stop what `stack up` started')
    .action(async () => {
      await stackDown(stackOptionsFromEnv(), say);
    });
  stack
    .command('status')
    .description('what runs where')
    .option('--json', 'machine-readable')
    .action(async (opts: { json?: boolean }) => {
      const status = await stackStatus(stackOptionsFromEnv());
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
        return;
      }
      for (const s of status) {
        const state = s.running ? (s.answering ? 'running' : 'starting (not answering yet)') : s.answering ? 'answering (not started by t2i)' : 'stopped';
        process.stdout.write(`${s.part.padEnd(8)} ${state.padEnd(32)} ${s.address}${s.pid ? `  pid ${s.pid}` : ''}  log ${s.log}\n`);
      }
      if (!status.every((s) => s.answering)) process.exitCode = 3;
    });
}

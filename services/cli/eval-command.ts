import type { Command } from 'commander';
import { ObjectStore } from '../common/object-store.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';

interface EvalFlags extends ConnectionFlags {
  json?: boolean;
}

/** `t2i eval JOB`: the prompt-following judge over a completed job. */
export function registerEvalCommands(program: Command): void {
  addConnectionOptions(
    program
      .command('eval')
      .description(
        "judge how well a completed job's images follow their prompts (scene-grammar prompts); writes eval.jsonl and a summary into manifest.json",
      )
      .argument('<job>', 'job id')
      .option('--json', 'print the summary as JSON'),
  ).action(async (job: string, flags: EvalFlags) => {
    const store = new ObjectStore(configFromFlags(flags).s3);
    try {
      // Loaded here: the judge brings sharp, which the other commands do not need.
      const { evaluateJob, formatSummary } = await import('../eval/eval-job.ts');
      const tty = process.stderr.isTTY;
      const result = await evaluateJob(store, job, {
        onProgress: (done) => {
          if (tty) process.stderr.write(`\rjudged ${done} images`);
        },
      });
      if (tty) process.stderr.write('\n');
      process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : formatSummary(result));
    } finally {
      store.close();
    }
  });
}

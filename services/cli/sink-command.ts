import type { Command } from 'commander';
import { T2iError } from '../common/errors.ts';

// Placeholder until the sink service lands (tracked in its issue).
export function registerSinkCommands(program: Command): void {
  program
    .command('sink')
    .description('sink (not implemented yet)')
    .allowUnknownOption()
    .action(() => {
      throw new T2iError('CONFIG_INVALID', '`t2i sink` is not implemented yet');
    });
}

import type { Command } from 'commander';
import { T2iError } from '../common/errors.ts';

// Placeholder until the query service lands (tracked in its issue).
export function registerQueryCommands(program: Command): void {
  program
    .command('query')
    .description('query (not implemented yet)')
    .allowUnknownOption()
    .action(() => {
      throw new T2iError('CONFIG_INVALID', '`t2i query` is not implemented yet');
    });
}

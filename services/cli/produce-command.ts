import type { Command } from 'commander';
import { T2iError } from '../common/errors.ts';

// Placeholder until the produce service lands (tracked in its issue).
export function registerProduceCommands(program: Command): void {
  program
    .command('produce')
    .description('produce (not implemented yet)')
    .allowUnknownOption()
    .action(() => {
      throw new T2iError('CONFIG_INVALID', '`t2i produce` is not implemented yet');
    });
}

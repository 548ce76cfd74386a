import type { Command } from 'commander';
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp } from '../stack/stack.ts';
import { schemaRegistryDown, schemaRegistryOptionsFromEnv, schemaRegistryUp } from '../stack/schema-registry.ts';
import { createKafka, ensureTopics, kafkaUnavailable, topicLayout } from '../common/kafka.ts';
import { createLogger } from '../common/logger.ts';
import { ObjectStore } from '../common/object-store.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';

export function registerStackCommands(program: Command): void {
  const stack = program.command('stack').description('the local Kafka + S3 stack (no Docker): up | down | status');
  const say = (line: string) => process.stderr.write(`${line}\n`);
  stack
    .command('up')
    .description('fetch (first run), start and wait for Kafka and s3proxy on loopback; create topics and bucket')
    .option('--schema-registry', 'also a schema registry (Apicurio, Confluent-compatible API) for T2I_WIRE_FORMAT=confluent')
    .action(async (opts: { schemaRegistry?: boolean }) => {
      await stackUp(stackOptionsFromEnv(), say);
      if (opts.schemaRegistry) await schemaRegistryUp(schemaRegistryOptionsFromEnv(stackOptionsFromEnv()), say);
    });
  stack
    .command('down')
    .description('stop what `stack up` started')
    .action(async () => {
      await schemaRegistryDown(schemaRegistryOptionsFromEnv(stackOptionsFromEnv()), say);
      await stackDown(stackOptionsFromEnv(), say);
    });
  addConnectionOptions(
    stack
      .command('init')
      .description('create the topics and the bucket on the configured Kafka and S3 (starts nothing; for Docker and Kubernetes)'),
  ).action(async (flags: ConnectionFlags) => {
    const config = configFromFlags(flags);
    const admin = createKafka(config.kafka, createLogger('stack-init', config.logLevel)).admin();
    try {
      await admin.connect();
    } catch (error) {
      throw kafkaUnavailable(config.kafka, error);
    }
    try {
      const topics = await ensureTopics(admin, config.kafka.topicPrefix, topicLayout(config.kafka));
      say(`topics ready: ${Object.values(topics).join(', ')}`);
    } finally {
      await admin.disconnect().catch(() => {});
    }
    const store = new ObjectStore(config.s3);
    await store.ensureBucket();
    store.close();
    say(`bucket ready: ${config.s3.bucket}`);
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
        const state = s.running
          ? s.answering
            ? 'running'
            : 'starting (not answering yet)'
          : s.answering
            ? 'answering (not started by t2i)'
            : 'stopped';
        process.stdout.write(`${s.part.padEnd(8)} ${state.padEnd(32)} ${s.address}${s.pid ? `  pid ${s.pid}` : ''}  log ${s.log}\n`);
      }
      if (!status.every((s) => s.answering)) process.exitCode = 3;
    });
}

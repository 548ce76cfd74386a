import { Option, type Command } from 'commander';
import { openCodec } from '../common/avro.ts';
import { createKafka } from '../common/kafka.ts';
import { ObjectStore } from '../common/object-store.ts';
import { runService } from '../common/service-runtime.ts';
import { createSink } from '../sink/sink.ts';
import { addConnectionOptions, configFromFlags, intArg, type ConnectionFlags } from './common-options.ts';

interface SinkFlags extends ConnectionFlags {
  group?: string;
  flushIntervalMs?: number;
  maxBufferedMessages?: number;
  sessionTimeoutMs?: number;
  orphanJobMs?: number;
}

const positiveInt = intArg(1);

/** `t2i sink`: the long-running sink service behind the service runtime (health, metrics, SIGTERM drain). */
export function registerSinkCommands(program: Command): void {
  addConnectionOptions(
    program
      .command('sink')
      .description('assemble output.jsonl, errors.jsonl and manifest.json of each job from its results, dead letters and job events'),
  )
    .option('--http-port <port>', 'health/metrics port (T2I_HTTP_PORT; 0 picks a free one)')
    .addOption(new Option('--group <id>', 'consumer group of the results/errors consumer').env('T2I_SINK_GROUP').default('t2i-sink'))
    .addOption(
      new Option('--flush-interval-ms <ms>', 'spill buffered results to the bucket (and commit) at least this often')
        .env('T2I_SINK_FLUSH_INTERVAL_MS')
        .argParser(positiveInt),
    )
    .option('--max-buffered-messages <n>', 'spill when this many results/errors are buffered', positiveInt)
    .option('--session-timeout-ms <ms>', 'Kafka session timeout of the sink consumers', positiveInt)
    .addOption(
      new Option('--orphan-job-ms <ms>', 'fail a job whose results arrive without any started/produced event for this long')
        .env('T2I_SINK_ORPHAN_JOB_MS')
        .argParser(positiveInt),
    )
    .action(async (flags: SinkFlags) => {
      const config = configFromFlags(flags);
      await runService('sink', config, async ({ logger, registry }) => {
        const kafka = createKafka(config.kafka, logger, `${config.kafka.clientId}-sink`);
        const store = new ObjectStore(config.s3);
        const sink = createSink({
          config,
          logger,
          kafka,
          store,
          codec: await openCodec(config),
          registry,
          ...(flags.group !== undefined ? { groupId: flags.group } : {}),
          ...(flags.flushIntervalMs !== undefined ? { flushIntervalMs: flags.flushIntervalMs } : {}),
          ...(flags.maxBufferedMessages !== undefined ? { maxBufferedMessages: flags.maxBufferedMessages } : {}),
          ...(flags.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: flags.sessionTimeoutMs } : {}),
          ...(flags.orphanJobMs !== undefined ? { orphanJobMs: flags.orphanJobMs } : {}),
        });
        await sink.start();
        logger.info({ topics: sink.topics, bucket: store.bucket }, 'sink: running');
        return {
          readiness: [{ name: 'sink consumers', check: () => sink.isReady() }],
          drain: async () => {
            await sink.close();
            store.close();
          },
          done: sink.done,
        };
      });
    });
}

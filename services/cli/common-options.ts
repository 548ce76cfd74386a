import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig, type Config } from '../common/config.ts';

/** Flags shared by the commands that talk to Kafka and S3; each overrides its environment variable. */
export function addConnectionOptions(command: Command): Command {
  return command
    .option('--brokers <list>', 'Kafka brokers host:port,… (KAFKA_BROKERS)')
    .option('--topic-prefix <prefix>', 'topic name prefix (T2I_TOPIC_PREFIX)')
    .option('--bucket <name>', 'output bucket (S3_BUCKET)')
    .option('--s3-endpoint <url>', 'S3 endpoint (S3_ENDPOINT)');
}

export interface ConnectionFlags {
  brokers?: string;
  topicPrefix?: string;
  bucket?: string;
  s3Endpoint?: string;
  model?: string;
  provider?: string;
  httpPort?: string;
}

/** Config from the environment with the command's flags on top (validated once, frozen). */
export function configFromFlags(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Config {
  return loadConfig(env, {
    env: {
      KAFKA_BROKERS: flags.brokers,
      T2I_TOPIC_PREFIX: flags.topicPrefix,
      S3_BUCKET: flags.bucket,
      S3_ENDPOINT: flags.s3Endpoint,
      T2I_MODEL: flags.model,
      T2I_EXECUTION_PROVIDER: flags.provider,
      T2I_HTTP_PORT: flags.httpPort,
    },
  });
}

/** A commander argument parser for a whole number in `min..max` (a bad value is a usage error, exit 2). */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected a whole number in ${min}..${max}`);
    return n;
  };
}

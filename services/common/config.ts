import path from 'node:path';
import { EnvReader } from './env-reader.ts';
import { DEFAULT_MODEL_DIR } from './paths.ts';

/** Kafka connection settings. */
export interface KafkaConfig {
  /** Bootstrap brokers, host:port. Default 127.0.0.1:9092 (`KAFKA_BROKERS`). */
  readonly brokers: readonly string[];
  readonly clientId: string;
  /** SASL mechanism and credentials, when `KAFKA_SASL_MECHANISM` is set. */
  readonly sasl?: { readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password: string };
  /** TLS to the brokers (`KAFKA_SSL`). Default false. */
  readonly ssl: boolean;
  /** Prefix of every topic name (`T2I_TOPIC_PREFIX`), default `t2i.`; tests use their own to isolate. */
  readonly topicPrefix: string;
  /** Partitions of the prompts topic when this project creates it (`T2I_PROMPT_PARTITIONS`), default 12. */
  readonly promptPartitions: number;
  /** Replication factor of the topics this project creates (`T2I_REPLICATION_FACTOR`), default 1 (local stack). */
  readonly replicationFactor: number;
}

/** S3-compatible object store settings. */
export interface S3Config {
  /** Endpoint URL (`S3_ENDPOINT`); default the local stack http://127.0.0.1:9000; `aws` (stored as absent) means AWS itself. */
  readonly endpoint?: string;
  readonly region: string;
  readonly bucket: string;
  /** Static credentials; absent on AWS (`S3_ENDPOINT=aws` without keys): the SDK's default credential chain. */
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  /** Path-style addressing (`S3_FORCE_PATH_STYLE`): default true with a custom endpoint. */
  readonly forcePathStyle: boolean;
  /** When set (`S3_PUBLIC_BASE_URL`), image URIs are `<base>/<key>` instead of `s3://bucket/key`. */
  readonly publicBaseUrl?: string;
}

export type ExecutionProvider = 'cpu' | 'cuda' | 'tensorrt';

export interface ModelConfig {
  /** Model directory (`T2I_MODEL`), default the bundled tiny model under models/tiny-flux. */
  readonly dir: string;
  readonly executionProvider: ExecutionProvider;
  /** Fall back to CPU when the GPU provider cannot start (`T2I_ALLOW_CPU_FALLBACK`). Default false. */
  readonly allowCpuFallback: boolean;
  /** onnxruntime intra-op threads (`T2I_INTRA_OP_THREADS`); 0 lets onnxruntime choose. */
  readonly intraOpThreads: number;
  /** Idle onnxruntime threads spin (`T2I_INTRA_OP_SPINNING`). Default false (measured faster; see the engine options). */
  readonly intraOpSpinning: boolean;
  /** GPU ordinal for cuda/tensorrt (`T2I_DEVICE_ID`). Default 0. */
  readonly deviceId: number;
  /** TensorRT: build fp16 engines (`T2I_TENSORRT_FP16`). Default true. */
  readonly tensorrtFp16: boolean;
  /** TensorRT: cache built engines in this folder (`T2I_TENSORRT_CACHE_DIR`); building takes minutes. */
  readonly tensorrtCacheDir: string | undefined;
}

/** A Confluent-compatible schema registry (`T2I_SCHEMA_REGISTRY_URL`), e.g. Apicurio's http://host:8080/apis/ccompat/v7. */
export interface SchemaRegistryConfig {
  readonly url: string;
  /** HTTP basic auth (`T2I_SCHEMA_REGISTRY_USER`, `T2I_SCHEMA_REGISTRY_PASSWORD`). */
  readonly username?: string;
  readonly password?: string;
}

export interface Config {
  readonly kafka: KafkaConfig;
  /** How values are framed (`T2I_WIRE_FORMAT`): `header` (default, the t2i-schema header) or `confluent` (magic byte + registry id). */
  readonly wireFormat: 'header' | 'confluent';
  /** Set with `T2I_SCHEMA_REGISTRY_URL`: readers fetch unknown writer ids there; required by `T2I_WIRE_FORMAT=confluent`. */
  readonly schemaRegistry?: SchemaRegistryConfig;
  readonly s3: S3Config;
  readonly model: ModelConfig;
  /** Port of the health/metrics server (`T2I_HTTP_PORT`); 0 picks a free port. Default 0 for CLI tools. */
  readonly httpPort: number;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Set by `t2i run` for the services it starts (`T2I_PARENT_PID`): they stop when that process is gone. */
  readonly parentPid?: number;
  /** Bearer token the query API (`t2i serve`) requires when set (`T2I_QUERY_TOKEN`). Default: none. */
  readonly queryToken?: string;
}

/** Defaults of the local stack (`t2i stack up`); also the credentials the README gives. */
export const LOCAL_S3_ACCESS_KEY = 't2i-local';
export const LOCAL_S3_SECRET_KEY = 't2i-local-secret';

export type Env = Readonly<Record<string, string | undefined>>;

/** Every environment variable loadConfig reads (documented in the README's configuration table). */
export const CONFIG_VARIABLES = [
  'KAFKA_BROKERS',
  'KAFKA_CLIENT_ID',
  'KAFKA_SASL_MECHANISM',
  'KAFKA_SASL_USERNAME',
  'KAFKA_SASL_PASSWORD',
  'KAFKA_SSL',
  'T2I_TOPIC_PREFIX',
  'T2I_PROMPT_PARTITIONS',
  'T2I_REPLICATION_FACTOR',
  'T2I_WIRE_FORMAT',
  'T2I_SCHEMA_REGISTRY_URL',
  'T2I_SCHEMA_REGISTRY_USER',
  'T2I_SCHEMA_REGISTRY_PASSWORD',
  'S3_ENDPOINT',
  'S3_REGION',
  'S3_BUCKET',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'S3_FORCE_PATH_STYLE',
  'S3_PUBLIC_BASE_URL',
  'T2I_MODEL',
  'T2I_EXECUTION_PROVIDER',
  'T2I_ALLOW_CPU_FALLBACK',
  'T2I_INTRA_OP_THREADS',
  'T2I_INTRA_OP_SPINNING',
  'T2I_DEVICE_ID',
  'T2I_TENSORRT_FP16',
  'T2I_TENSORRT_CACHE_DIR',
  'T2I_HTTP_PORT',
  'T2I_LOG_LEVEL',
  'T2I_QUERY_TOKEN',
  'T2I_PARENT_PID',
] as const;

const optionalPath = (value: string | undefined): string | undefined =>
  value === undefined || value === '' ? undefined : path.resolve(value);

/**
 * Parses the environment once into a frozen, typed Config. Every problem is reported at once, each
 * naming the variable and what it expects; nothing else in the code reads process.env.
 */
export function loadConfig(env: Env = process.env, overrides: ConfigOverrides = {}): Config {
  const read = new EnvReader({ ...env, ...definedOnly(overrides.env ?? {}) });

  const mechanism = read.raw('KAFKA_SASL_MECHANISM');
  let sasl: KafkaConfig['sasl'];
  if (mechanism !== undefined) {
    const m = read.oneOf('KAFKA_SASL_MECHANISM', ['plain', 'scram-sha-256', 'scram-sha-512'] as const, 'plain');
    const username = read.raw('KAFKA_SASL_USERNAME');
    const password = read.raw('KAFKA_SASL_PASSWORD');
    if (username === undefined) read.problems.push('KAFKA_SASL_USERNAME: required when KAFKA_SASL_MECHANISM is set');
    if (password === undefined) read.problems.push('KAFKA_SASL_PASSWORD: required when KAFKA_SASL_MECHANISM is set');
    sasl = { mechanism: m, username: username ?? '', password: password ?? '' };
  }

  const kafka: KafkaConfig = {
    brokers: read.hostPorts('KAFKA_BROKERS', '127.0.0.1:9092'),
    clientId: read.string('KAFKA_CLIENT_ID', 't2i'),
    ...(sasl ? { sasl } : {}),
    ssl: read.bool('KAFKA_SSL', false),
    topicPrefix: read.matches('T2I_TOPIC_PREFIX', /^[A-Za-z0-9._-]{0,200}$/, 't2i.', 'letters, digits, ".", "_" or "-"'),
    promptPartitions: read.int('T2I_PROMPT_PARTITIONS', 12, { min: 1, max: 10000 }),
    replicationFactor: read.int('T2I_REPLICATION_FACTOR', 1, { min: 1, max: 100 }),
  };

  const wireFormat = read.oneOf('T2I_WIRE_FORMAT', ['header', 'confluent'] as const, 'header');
  const registryUrl = read.url('T2I_SCHEMA_REGISTRY_URL');
  const registryUser = read.raw('T2I_SCHEMA_REGISTRY_USER');
  const registryPassword = read.raw('T2I_SCHEMA_REGISTRY_PASSWORD');
  if (wireFormat === 'confluent' && read.raw('T2I_SCHEMA_REGISTRY_URL') === undefined) {
    read.problems.push('T2I_WIRE_FORMAT=confluent: also set T2I_SCHEMA_REGISTRY_URL (the registry base URL, e.g. http://127.0.0.1:8081)');
  }
  if ((registryUser !== undefined || registryPassword !== undefined) && read.raw('T2I_SCHEMA_REGISTRY_URL') === undefined) {
    read.problems.push('T2I_SCHEMA_REGISTRY_USER / T2I_SCHEMA_REGISTRY_PASSWORD: set only with T2I_SCHEMA_REGISTRY_URL');
  }
  if ((registryUser === undefined) !== (registryPassword === undefined)) {
    read.problems.push('T2I_SCHEMA_REGISTRY_USER / T2I_SCHEMA_REGISTRY_PASSWORD: set both, or neither');
  }
  const schemaRegistry: SchemaRegistryConfig | undefined =
    registryUrl === undefined
      ? undefined
      : {
          url: registryUrl,
          ...(registryUser !== undefined && registryPassword !== undefined ? { username: registryUser, password: registryPassword } : {}),
        };

  // `S3_ENDPOINT=aws` means AWS itself (the SDK's regional endpoints); unset means the local stack.
  const awsEndpoint = read.raw('S3_ENDPOINT')?.toLowerCase() === 'aws';
  const endpoint = awsEndpoint ? undefined : read.url('S3_ENDPOINT', 'http://127.0.0.1:9000');
  // Static keys, or (on AWS without keys) the SDK's default credential chain: IRSA, EKS Pod Identity, instance roles.
  const accessKeyId = read.raw('AWS_ACCESS_KEY_ID') ?? (awsEndpoint ? undefined : LOCAL_S3_ACCESS_KEY);
  const secretAccessKey = read.raw('AWS_SECRET_ACCESS_KEY') ?? (awsEndpoint ? undefined : LOCAL_S3_SECRET_KEY);
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    read.problems.push('AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: set both, or neither (to use the default AWS credential chain)');
  }
  const publicBaseUrl = read.url('S3_PUBLIC_BASE_URL');
  const s3: S3Config = {
    ...(endpoint !== undefined ? { endpoint } : {}),
    region: read.string('S3_REGION', 'us-east-1'),
    bucket: read.matches(
      'S3_BUCKET',
      /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
      't2i',
      'a bucket name: 3-63 lowercase letters, digits, "." or "-"',
    ),
    ...(accessKeyId !== undefined && secretAccessKey !== undefined ? { accessKeyId, secretAccessKey } : {}),
    forcePathStyle: read.bool('S3_FORCE_PATH_STYLE', endpoint !== undefined),
    ...(publicBaseUrl !== undefined ? { publicBaseUrl } : {}),
  };

  const model: ModelConfig = {
    dir: path.resolve(read.string('T2I_MODEL', DEFAULT_MODEL_DIR)),
    executionProvider: read.oneOf('T2I_EXECUTION_PROVIDER', ['cpu', 'cuda', 'tensorrt'] as const, 'cpu'),
    allowCpuFallback: read.bool('T2I_ALLOW_CPU_FALLBACK', false),
    intraOpThreads: read.int('T2I_INTRA_OP_THREADS', 0, { min: 0, max: 1024 }),
    intraOpSpinning: read.bool('T2I_INTRA_OP_SPINNING', false),
    deviceId: read.int('T2I_DEVICE_ID', 0, { min: 0, max: 64 }),
    tensorrtFp16: read.bool('T2I_TENSORRT_FP16', true),
    tensorrtCacheDir: optionalPath(read.raw('T2I_TENSORRT_CACHE_DIR')),
  };

  const queryToken = read.raw('T2I_QUERY_TOKEN');
  const config: Config = {
    kafka,
    wireFormat,
    ...(schemaRegistry !== undefined ? { schemaRegistry } : {}),
    s3,
    model,
    httpPort: read.int('T2I_HTTP_PORT', 0, { min: 0, max: 65535 }),
    logLevel: read.oneOf('T2I_LOG_LEVEL', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, 'info'),
    ...(queryToken !== undefined ? { queryToken } : {}),
  };
  const parentPid = read.int('T2I_PARENT_PID', 0, { min: 0, max: 2 ** 31 });
  if (parentPid > 0) (config as { parentPid?: number }).parentPid = parentPid;
  read.assertValid('t2i');
  return deepFreeze(config);
}

export interface ConfigOverrides {
  /** Values from command-line flags, by environment variable name; they win over the environment. */
  env?: Record<string, string | number | boolean | undefined>;
}

function definedOnly(values: Record<string, string | number | boolean | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) if (value !== undefined) out[key] = String(value);
  return out;
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/** Topic names under a prefix. */
export interface TopicNames {
  readonly prompts: string;
  readonly results: string;
  readonly errors: string;
  readonly jobs: string;
}

export function topicNames(prefix: string): TopicNames {
  return Object.freeze({
    prompts: `${prefix}prompts`,
    results: `${prefix}results`,
    errors: `${prefix}errors`,
    jobs: `${prefix}jobs`,
  });
}

/** The config with secrets masked, for logs and `--print-config`. */
export function redactConfig(config: Config): unknown {
  return {
    ...config,
    kafka: { ...config.kafka, ...(config.kafka.sasl ? { sasl: { ...config.kafka.sasl, password: '***' } } : {}) },
    s3: { ...config.s3, ...(config.s3.secretAccessKey !== undefined ? { secretAccessKey: '***' } : {}) },
    ...(config.queryToken !== undefined ? { queryToken: '***' } : {}),
    ...(config.schemaRegistry?.password !== undefined ? { schemaRegistry: { ...config.schemaRegistry, password: '***' } } : {}),
  };
}

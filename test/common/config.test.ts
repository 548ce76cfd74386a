import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig, redactConfig, topicNames } from '../../services/common/config.ts';
import { T2iError } from '../../services/common/errors.ts';
import { DEFAULT_MODEL_DIR } from '../../services/common/paths.ts';

test('defaults match the design (local stack addresses, bundled model)', () => {
  const config = loadConfig({});
  assert.deepEqual(config.kafka.brokers, ['127.0.0.1:9092']);
  assert.equal(config.kafka.topicPrefix, 't2i.');
  assert.equal(config.s3.endpoint, 'http://127.0.0.1:9000');
  assert.equal(config.s3.bucket, 't2i');
  assert.equal(config.s3.forcePathStyle, true);
  assert.equal(config.model.dir, DEFAULT_MODEL_DIR);
  assert.equal(config.model.executionProvider, 'cpu');
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.kafka) && Object.isFrozen(config.kafka.brokers));
});

test('environment and flag overrides are applied, flags winning', () => {
  const config = loadConfig(
    { KAFKA_BROKERS: 'a:1,b:2', S3_BUCKET: 'images', T2I_EXECUTION_PROVIDER: 'CUDA', T2I_MODEL: 'rel/model' },
    { env: { S3_BUCKET: 'from-flag', T2I_TOPIC_PREFIX: undefined } },
  );
  assert.deepEqual(config.kafka.brokers, ['a:1', 'b:2']);
  assert.equal(config.s3.bucket, 'from-flag');
  assert.equal(config.model.executionProvider, 'cuda');
  assert.equal(config.model.dir, path.resolve('rel/model'));
});

test('every bad variable is reported at once, naming the variable and what it expects', () => {
  assert.throws(
    () =>
      loadConfig({
        KAFKA_BROKERS: 'no-port',
        S3_ENDPOINT: 'ftp://x',
        T2I_EXECUTION_PROVIDER: 'tpu',
        KAFKA_SSL: 'maybe',
        T2I_HTTP_PORT: '70000',
      }),
    (error: unknown) => {
      assert.ok(error instanceof T2iError);
      assert.equal(error.code, 'CONFIG_INVALID');
      for (const name of ['KAFKA_BROKERS', 'S3_ENDPOINT', 'T2I_EXECUTION_PROVIDER', 'KAFKA_SSL', 'T2I_HTTP_PORT'])
        assert.match(error.message, new RegExp(name));
      assert.match(error.message, /expected one of cpu, cuda, tensorrt/);
      return true;
    },
  );
});

test('SASL needs username and password; secrets are redacted', () => {
  assert.throws(() => loadConfig({ KAFKA_SASL_MECHANISM: 'plain' }), /KAFKA_SASL_USERNAME: required/);
  const config = loadConfig({
    KAFKA_SASL_MECHANISM: 'scram-sha-512',
    KAFKA_SASL_USERNAME: 'u',
    KAFKA_SASL_PASSWORD: 'hunter2',
    AWS_SECRET_ACCESS_KEY: 's3cret',
  });
  const text = JSON.stringify(redactConfig(config));
  assert.doesNotMatch(text, /hunter2|s3cret/);
  assert.equal(config.kafka.sasl?.mechanism, 'scram-sha-512');
});

test('topic names follow the prefix', () => {
  assert.deepEqual(topicNames('x.'), { prompts: 'x.prompts', results: 'x.results', errors: 'x.errors', jobs: 'x.jobs' });
});

test('S3_ENDPOINT=aws uses AWS endpoints and, without keys, the default credential chain', () => {
  const config = loadConfig({ S3_ENDPOINT: 'aws', S3_REGION: 'eu-west-1' });
  assert.equal(config.s3.endpoint, undefined);
  assert.equal(config.s3.accessKeyId, undefined);
  assert.equal(config.s3.forcePathStyle, false);
  assert.throws(() => loadConfig({ S3_ENDPOINT: 'aws', AWS_ACCESS_KEY_ID: 'only-one' }), /set both, or neither/);
  assert.equal(loadConfig({ T2I_REPLICATION_FACTOR: '3' }).kafka.replicationFactor, 3);
});

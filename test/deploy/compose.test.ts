import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { CONFIG_VARIABLES, LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY, loadConfig } from '../../services/common/config.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
}

const compose = parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'deploy', 'compose', 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
};
const services = compose.services;
const t2iServices = Object.entries(services).filter(([, s]) => s.build !== undefined);

test('compose has Kafka, MinIO and every t2i service', () => {
  assert.deepEqual(Object.keys(services).sort(), ['init', 'kafka', 'minio', 'producer', 'query', 'sink', 'worker']);
  assert.match(services.kafka?.image ?? '', /^apache\/kafka:4\./);
  assert.match(services.minio?.image ?? '', /^minio\/minio/);
  assert.ok(services.kafka?.ports?.includes('9092:9092'));
  assert.ok(services.minio?.ports?.includes('9000:9000'));
});

test('t2i services only set variables the code reads, and they validate', () => {
  for (const [name, service] of t2iServices) {
    const env = service.environment ?? {};
    for (const key of Object.keys(env))
      assert.ok((CONFIG_VARIABLES as readonly string[]).includes(key), `${name}: ${key} is not read by loadConfig`);
    const config = loadConfig(env);
    assert.deepEqual(config.kafka.brokers, ['kafka:9092'], name);
    assert.equal(config.s3.endpoint, 'http://minio:9000', name);
  }
});

test('addresses and credentials agree with the Kafka and MinIO services', () => {
  const kafkaEnv = services.kafka?.environment ?? {};
  assert.match(kafkaEnv.KAFKA_ADVERTISED_LISTENERS ?? '', /PLAINTEXT:\/\/kafka:9092/);
  const minioEnv = services.minio?.environment ?? {};
  for (const [name, service] of t2iServices) {
    assert.equal(service.environment?.AWS_ACCESS_KEY_ID, minioEnv.MINIO_ROOT_USER, name);
    assert.equal(service.environment?.AWS_SECRET_ACCESS_KEY, minioEnv.MINIO_ROOT_PASSWORD, name);
  }
  // the same defaults as the local stack, so the README's credentials work for both
  assert.equal(minioEnv.MINIO_ROOT_USER, LOCAL_S3_ACCESS_KEY);
  assert.equal(minioEnv.MINIO_ROOT_PASSWORD, LOCAL_S3_SECRET_KEY);
});

test('every compose command is a real t2i command', () => {
  const help = execFileSync(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), '--help'], { encoding: 'utf8' });
  for (const [name, service] of t2iServices) {
    const command = service.command?.[0];
    if (command === undefined) continue;
    assert.match(help, new RegExp(`^\\s+${command}\\b`, 'm'), `${name}: t2i has no command ${command}`);
  }
});

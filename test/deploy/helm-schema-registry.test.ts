/**
 * The chart's schema registry settings (kafka.wireFormat, kafka.schemaRegistry): every t2i container gets
 * the variables loadConfig reads, the credentials only from a Secret, and `confluent` without a URL does
 * not render. Uses the tools of `bash deploy/tools/install.sh`, like test/deploy/helm.test.ts (skipped
 * without them).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../services/common/config.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

const HELM = path.join(PACKAGE_ROOT, '.cache', 'tools', 'bin', 'helm');
const CHART = path.join(PACKAGE_ROOT, 'deploy', 'helm', 't2i');
const skip = fs.existsSync(HELM) ? false : 'helm missing: run `bash deploy/tools/install.sh`';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Container {
  image: string;
  env?: EnvVar[];
}

function template(set: string[]): { status: number | null; stdout: string; stderr: string } {
  const args = ['template', 't2i', CHART, '--kube-version', '1.34.2', '-f', path.join(CHART, 'ci', 'self-contained-values.yaml')];
  for (const s of set) args.push('--set', s);
  return spawnSync(HELM, args, { encoding: 'utf8' });
}

function t2iContainers(yaml: string): Container[] {
  const out: Container[] = [];
  for (const doc of parseAllDocuments(yaml)) {
    const m = doc.toJS() as { spec?: { template?: { spec?: { containers?: Container[] } }; jobTemplate?: unknown } } | null;
    for (const c of m?.spec?.template?.spec?.containers ?? []) if (/^t2i-stream/.test(c.image)) out.push(c);
  }
  return out;
}

test('kafka.wireFormat=confluent with a registry: every t2i container with Kafka reads it, the basic auth from a Secret', { skip }, () => {
  const result = template([
    'kafka.wireFormat=confluent',
    'kafka.schemaRegistry.url=http://registry:8080/apis/ccompat/v7',
    'kafka.schemaRegistry.existingSecret=registry-auth',
  ]);
  assert.equal(result.status, 0, result.stderr);
  // Those that talk to Kafka (the query service reads only the bucket).
  const containers = t2iContainers(result.stdout).filter((c) => c.env?.some((v) => v.name === 'KAFKA_BROKERS'));
  assert.ok(containers.length >= 3, `${containers.length} t2i containers with Kafka`);
  for (const c of containers) {
    const env = new Map((c.env ?? []).map((v) => [v.name, v]));
    assert.equal(env.get('T2I_WIRE_FORMAT')?.value, 'confluent');
    assert.deepEqual(env.get('T2I_SCHEMA_REGISTRY_PASSWORD')?.valueFrom?.secretKeyRef, { name: 'registry-auth', key: 'password' });
    assert.deepEqual(env.get('T2I_SCHEMA_REGISTRY_USER')?.valueFrom?.secretKeyRef, { name: 'registry-auth', key: 'username' });
    const plain = Object.fromEntries([...env.values()].filter((v) => v.value !== undefined).map((v) => [v.name, v.value]));
    const config = loadConfig({ ...plain, T2I_SCHEMA_REGISTRY_USER: 'u', T2I_SCHEMA_REGISTRY_PASSWORD: 'p' });
    assert.equal(config.wireFormat, 'confluent');
    assert.equal(config.schemaRegistry?.url, 'http://registry:8080/apis/ccompat/v7');
  }
});

test('the default renders no registry variable; confluent without a URL, or another format, is refused', { skip }, () => {
  const plain = template([]);
  assert.equal(plain.status, 0, plain.stderr);
  assert.doesNotMatch(plain.stdout, /T2I_WIRE_FORMAT|T2I_SCHEMA_REGISTRY/);
  const noUrl = template(['kafka.wireFormat=confluent']);
  assert.notEqual(noUrl.status, 0);
  assert.match(noUrl.stderr, /kafka.schemaRegistry.url is required with kafka.wireFormat=confluent/);
  const other = template(['kafka.wireFormat=avro']);
  assert.notEqual(other.status, 0);
  assert.match(other.stderr, /wireFormat/);
});

import assert from 'node:assert/strict';
import http from 'node:http';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { test } from 'node:test';
import { T2iError } from '../../services/common/errors.ts';
import { ObjectStore, s3ClientConfig } from '../../services/common/object-store.ts';
import { LeanPut, encodeKey } from '../../services/common/s3-put.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';

/** An ObjectStore on the SDK path: an injected client turns the lean PUT off. */
function sdkStore(store: ObjectStore, config: ConstructorParameters<typeof ObjectStore>[0]): ObjectStore {
  return new ObjectStore(config, store.client);
}

test('the lean PUT stores exactly what the SDK stores: bytes, content type, metadata, awkward keys', async () => {
  const { store, config } = await createTestEnv();
  const sdk = sdkStore(store, config.s3);
  const body = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 31) & 255));
  // (s3proxy takes ~1 s to delete each odd key in the test's cleanup: one key holds every awkward character.)
  const keys = ['plain/a.png', "odd/a b+c!(x)*'~=&?#%ü-雪-😀.png"];
  for (const key of keys) {
    await store.put(`lean/${key}`, body, 'image/png', { source: 't2i', row: '7' });
    await sdk.put(`sdk/${key}`, body, 'image/png', { source: 't2i', row: '7' });
    const lean = await store.client.send(new HeadObjectCommand({ Bucket: config.s3.bucket, Key: `lean/${key}` }));
    const viaSdk = await store.client.send(new HeadObjectCommand({ Bucket: config.s3.bucket, Key: `sdk/${key}` }));
    assert.equal(lean.ContentType, viaSdk.ContentType, key);
    assert.equal(lean.ContentLength, body.length, key);
    assert.equal(lean.ETag, viaSdk.ETag, key);
    assert.deepEqual(lean.Metadata, viaSdk.Metadata, key);
    assert.ok((await store.get(`lean/${key}`))?.equals(body), key);
  }
  // A string body (the sink's parts) too.
  await store.put('lean/text.jsonl', '{"a":1}\n', 'application/x-ndjson');
  assert.equal((await sdk.get('lean/text.jsonl'))?.toString(), '{"a":1}\n');
  // Nothing stored under a different key than the SDK would use: both listings hold the same keys.
  const listed = async (prefix: string) =>
    (await store.listPage(prefix, { limit: 100 })).objects
      .map((o) => o.key.slice(prefix.length))
      .filter((k) => k !== 'text.jsonl')
      .sort();
  assert.deepEqual(await listed('lean/'), await listed('sdk/'));
  assert.ok((await listed('lean/')).includes(keys[1]!));
});

test('lean PUT errors are classified as the SDK path classifies them', async () => {
  const { config } = await createTestEnv();
  const attempt = async (store: ObjectStore) => {
    try {
      await store.put('x.png', Buffer.from('x'), 'image/png');
    } catch (error) {
      return error as T2iError;
    } finally {
      store.close();
    }
    assert.fail('the put should have failed');
  };
  const missingBucket = { ...config.s3, bucket: randomName('missing-') };
  const badSecret = { ...config.s3, secretAccessKey: 'not-the-secret' };
  const closed = { ...config.s3, endpoint: 'http://127.0.0.1:1' };
  for (const [what, s3] of [
    ['a bucket that does not exist', missingBucket],
    ['a wrong secret', badSecret],
    ['nothing listening', closed],
  ] as const) {
    const lean = await attempt(new ObjectStore(s3));
    const sdk = await attempt(new ObjectStore(s3, new S3Client({ ...s3ClientConfig(s3), maxAttempts: 1 })));
    assert.ok(lean instanceof T2iError && sdk instanceof T2iError, what);
    assert.equal(lean.retriable, sdk.retriable, `${what}: ${lean.message} vs ${sdk.message}`);
    const status = (e: T2iError) => (e.cause as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    assert.equal(status(lean), status(sdk), what);
    // An S3 error response names its code the same way on both paths (NoSuchBucket, SignatureDoesNotMatch …).
    if (status(sdk) !== undefined) assert.equal((lean.cause as Error).name, (sdk.cause as Error).name, what);
  }
});

test('keys are encoded per segment, slashes kept, as S3 signs them', () => {
  assert.equal(encodeKey('a/b c/d+e'), 'a/b%20c/d%2Be');
  assert.equal(encodeKey("x!'()*y"), 'x%21%27%28%29%2Ay');
  assert.equal(encodeKey('ü'), '%C3%BC');
});

test('a keep-alive connection the server dropped while idle is replaced once, not reported as a failure', async () => {
  // A server that answers the first request on each connection and resets the connection on the second.
  const perSocket = new WeakMap<object, number>();
  let requests = 0;
  const server = http.createServer((request, response) => {
    requests++;
    const seen = (perSocket.get(request.socket) ?? 0) + 1;
    perSocket.set(request.socket, seen);
    if (seen > 1) {
      request.socket.destroy();
      return;
    }
    request.resume();
    request.on('end', () => response.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const put = new LeanPut({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    bucket: 'b',
    forcePathStyle: true,
    credentials: { accessKeyId: 'k', secretAccessKey: 's' },
    sha256: new S3Client({ region: 'us-east-1' }).config.sha256,
  });
  try {
    await put.put('a.png', Buffer.from('a'), 'image/png');
    await put.put('b.png', Buffer.from('b'), 'image/png'); // reuses the connection: reset, then sent again
    assert.equal(requests, 3);
  } finally {
    put.close();
    await new Promise((resolve) => server.close(resolve));
  }
});

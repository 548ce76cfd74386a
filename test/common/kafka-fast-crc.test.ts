import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { crc32c } from '../../services/common/kafka-fast-crc.ts';

test('CRC-32C of the standard check vectors (RFC 3720 B.4 and the "123456789" check value)', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
  assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
  assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c);
  assert.equal(crc32c(Buffer.alloc(0)), 0);
});

test('CRC-32C equals kafkajs`s own over every length and offset around the 8-byte steps', () => {
  const require = createRequire(import.meta.url);
  const kafkajsCrc = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
  let s = 7;
  const bytes = Buffer.from(Array.from({ length: 300 }, () => (s = (s * 1103515245 + 12345) & 0x7fffffff) & 0xff));
  for (let start = 0; start < 9; start++)
    for (let end = start; end <= bytes.length; end += 1 + (end % 5))
      assert.equal(crc32c(bytes, start, end), kafkajsCrc(bytes.subarray(start, end)), `bytes [${start}, ${end})`);
});

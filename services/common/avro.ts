import fs from 'node:fs';
import path from 'node:path';
import avro from 'avsc';
import { T2iError } from './errors.ts';
import { SCHEMAS_DIR } from './paths.ts';
import type { DeadLetter, ImageResult, JobEvent, PromptRequest } from './messages.ts';

/** Header that names the writer schema of a message: `<Name>@<sha256 fingerprint of the canonical form, 16 hex>`. */
export const SCHEMA_HEADER = 't2i-schema';

export interface MessageTypes {
  PromptRequest: PromptRequest;
  ImageResult: ImageResult;
  DeadLetter: DeadLetter;
  JobEvent: JobEvent;
}
export type MessageName = keyof MessageTypes;

interface SchemaVersion {
  name: MessageName;
  version: number;
  file: string;
  type: avro.Type;
  fingerprint: string;
}

/**
 * Encodes with the newest version of each schema in schemas/ (`<Name>.v<N>.avsc`) and decodes a message
 * written with ANY version kept there: the header names the writer's fingerprint, and avsc resolves the
 * writer's schema against the newest (reader) one, so fields can be added with defaults over time.
 */
export class AvroCodec {
  private readonly byFingerprint = new Map<string, SchemaVersion>();
  private readonly latest = new Map<MessageName, SchemaVersion>();
  private readonly resolvers = new Map<string, avro.Resolver>();

  constructor(schemaDir: string = SCHEMAS_DIR) {
    const files = fs.readdirSync(schemaDir).filter((f) => f.endsWith('.avsc'));
    for (const file of files) {
      const match = /^([A-Za-z]+)\.v(\d+)\.avsc$/.exec(file);
      if (!match) throw new T2iError('SCHEMA_UNKNOWN', `schema file ${file}: expected a name like PromptRequest.v1.avsc`);
      const name = match[1] as MessageName;
      const version = Number(match[2]);
      const type = avro.Type.forSchema(JSON.parse(fs.readFileSync(path.join(schemaDir, file), 'utf8')) as avro.Schema);
      const fingerprint = `${name}@${type.fingerprint('sha256').toString('hex').slice(0, 16)}`;
      const entry: SchemaVersion = { name, version, file, type, fingerprint };
      this.byFingerprint.set(fingerprint, entry);
      const current = this.latest.get(name);
      if (!current || current.version < version) this.latest.set(name, entry);
    }
    for (const name of ['PromptRequest', 'ImageResult', 'DeadLetter', 'JobEvent'] as const) {
      if (!this.latest.has(name)) throw new T2iError('SCHEMA_UNKNOWN', `no schema for ${name} in ${schemaDir}`);
    }
  }

  /** The fingerprint that encode() writes for `name`. */
  fingerprint(name: MessageName): string {
    return this.writer(name).fingerprint;
  }

  encode<N extends MessageName>(name: N, value: MessageTypes[N]): { value: Buffer; headers: Record<string, string> } {
    const writer = this.writer(name);
    try {
      return { value: writer.type.toBuffer(value), headers: { [SCHEMA_HEADER]: writer.fingerprint } };
    } catch (error) {
      throw new T2iError('INPUT_INVALID', `cannot encode ${name}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Decodes with the writer schema named by the header; refuses a message of another type. */
  decode<N extends MessageName>(name: N, value: Buffer | null, headers: Record<string, unknown> | undefined): MessageTypes[N] {
    if (!value) throw new T2iError('INPUT_INVALID', `empty ${name} message`);
    const raw = headers?.[SCHEMA_HEADER];
    const fingerprint = raw === undefined ? undefined : Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw);
    if (fingerprint === undefined) throw new T2iError('SCHEMA_UNKNOWN', `${name} message without a ${SCHEMA_HEADER} header`);
    const writer = this.byFingerprint.get(fingerprint);
    if (!writer) {
      throw new T2iError(
        'SCHEMA_UNKNOWN',
        `unknown writer schema ${fingerprint}: this reader knows ${[...this.byFingerprint.keys()].join(', ')}; upgrade the reader`,
      );
    }
    if (writer.name !== name) throw new T2iError('SCHEMA_UNKNOWN', `expected a ${name} message, got ${writer.name}`);
    const reader = this.writer(name);
    if (writer === reader) return reader.type.fromBuffer(value) as MessageTypes[N];
    let resolver = this.resolvers.get(fingerprint);
    if (!resolver) {
      resolver = reader.type.createResolver(writer.type);
      this.resolvers.set(fingerprint, resolver);
    }
    return reader.type.fromBuffer(value, resolver) as MessageTypes[N];
  }

  private writer(name: MessageName): SchemaVersion {
    const entry = this.latest.get(name);
    if (!entry) throw new T2iError('SCHEMA_UNKNOWN', `no schema for ${name}`);
    return entry;
  }
}

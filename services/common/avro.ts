import fs from 'node:fs';
import path from 'node:path';
import avro from 'avsc';
import { topicNames, type Config } from './config.ts';
import { T2iError, describeError } from './errors.ts';
import { SCHEMAS_DIR } from './paths.ts';
import type { DeadLetter, ImageResult, JobEvent, PromptRequest } from './messages.ts';
import { HttpSchemaRegistry, frameConfluent, unframeConfluent, valueSubject, type SchemaRegistry } from './schema-registry.ts';

/** Header that names the writer schema of a message: `<Name>@<sha256 fingerprint of the canonical form, 16 hex>`. */
export const SCHEMA_HEADER = 't2i-schema';

/**
 * How encode() frames a value (`T2I_WIRE_FORMAT`): `header` (default) names the writer schema in the
 * t2i-schema header; `confluent` writes the Confluent Schema Registry wire format (magic byte 0, 4-byte
 * schema id, Avro). decode() reads both, whatever this is.
 */
export type WireFormat = 'header' | 'confluent';

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
  /** The schema as written in the file (docs and logical types included): what the registry is given. */
  text: string;
  type: avro.Type;
  fingerprint: string;
}

/** A writer schema fetched from the registry by id. */
interface RegistrySchema {
  name: MessageName | string;
  type: avro.Type;
  /** sha256 fingerprint of the canonical form, 16 hex (the same as a SchemaVersion's). */
  fingerprint: string;
}

export interface AvroCodecOptions {
  /** Where decode() finds the writer schemas of values in the Confluent wire format (loadWriterSchemas()). */
  registry?: SchemaRegistry;
}

type Headers = Record<string, unknown> | undefined;

/**
 * Encodes with the newest version of each schema in schemas/ (`<Name>.v<N>.avsc`) and decodes a message
 * written with ANY version kept there: the header names the writer's fingerprint, and avsc resolves the
 * writer's schema against the newest (reader) one, so fields can be added with defaults over time.
 *
 * Values in the Confluent wire format (no t2i-schema header, magic byte 0 + schema id) are read too, with
 * the writer schema the registry has under that id, resolved the same way. decode() stays synchronous:
 * a consumer awaits loadWriterSchemas(batch) first, which fetches the ids not cached yet (once each).
 */
export class AvroCodec {
  private readonly byFingerprint = new Map<string, SchemaVersion>();
  private readonly latest = new Map<MessageName, SchemaVersion>();
  private readonly resolvers = new Map<string, avro.Resolver>();
  private readonly registry: SchemaRegistry | undefined;
  /** Registry schema id -> writer schema; our own registered ids are seeded by useConfluentFormat(). */
  private readonly byId = new Map<number, RegistrySchema>();
  /** Why an id could not be fetched (decode() says it; the next loadWriterSchemas() tries again). */
  private readonly idFailures = new Map<number, string>();
  private readonly idFetches = new Map<number, Promise<void>>();
  /** Set by useConfluentFormat(): the registry id encode() writes for each message type. */
  private confluentIds: Map<MessageName, number> | undefined;

  constructor(schemaDir: string = SCHEMAS_DIR, options: AvroCodecOptions = {}) {
    this.registry = options.registry;
    const files = fs.readdirSync(schemaDir).filter((f) => f.endsWith('.avsc'));
    for (const file of files) {
      const match = /^([A-Za-z]+)\.v(\d+)\.avsc$/.exec(file);
      if (!match) throw new T2iError('SCHEMA_UNKNOWN', `schema file ${file}: expected a name like PromptRequest.v1.avsc`);
      const name = match[1] as MessageName;
      const version = Number(match[2]);
      const json = JSON.parse(fs.readFileSync(path.join(schemaDir, file), 'utf8')) as avro.Schema;
      const type = avro.Type.forSchema(json);
      const fingerprint = `${name}@${shortFingerprint(type)}`;
      const entry: SchemaVersion = { name, version, file, text: JSON.stringify(json), type, fingerprint };
      this.byFingerprint.set(fingerprint, entry);
      const current = this.latest.get(name);
      if (!current || current.version < version) this.latest.set(name, entry);
    }
    for (const name of ['PromptRequest', 'ImageResult', 'DeadLetter', 'JobEvent'] as const) {
      if (!this.latest.has(name)) throw new T2iError('SCHEMA_UNKNOWN', `no schema for ${name} in ${schemaDir}`);
    }
  }

  /** The fingerprint of the schema encode() writes for `name`. */
  fingerprint(name: MessageName): string {
    return this.writer(name).fingerprint;
  }

  get wireFormat(): WireFormat {
    return this.confluentIds ? 'confluent' : 'header';
  }

  /**
   * Registers the newest schema of each message type under its subject (`<topic>-value`) and from then on
   * encodes in the Confluent wire format, with no further network calls. Fails, naming the registry and
   * the subject, when the registry cannot be reached or refuses a schema: call it at start.
   */
  async useConfluentFormat(subjects: Readonly<Record<MessageName, string>>): Promise<void> {
    const registry = this.registry;
    if (!registry) throw new T2iError('CONFIG_INVALID', 'T2I_WIRE_FORMAT=confluent needs a schema registry: set T2I_SCHEMA_REGISTRY_URL');
    const ids = new Map<MessageName, number>();
    for (const [name, writer] of this.latest) {
      const subject = subjects[name];
      let id: number;
      try {
        id = await registry.register(subject, writer.text);
      } catch (error) {
        throw new T2iError(
          'SCHEMA_UNKNOWN',
          `T2I_WIRE_FORMAT=confluent: cannot register ${writer.file} under subject ${subject} at ${registry.url}: ${describeError(error)}. ` +
            'Start the schema registry or fix T2I_SCHEMA_REGISTRY_URL (or unset T2I_WIRE_FORMAT for the default t2i-schema header)',
        );
      }
      ids.set(name, id);
      this.byId.set(id, { name, type: writer.type, fingerprint: shortFingerprint(writer.type) });
    }
    this.confluentIds = ids;
  }

  /** The headers that name the writer schema of `name` (none in the Confluent wire format: the value carries its id). */
  schemaHeaders(name: MessageName): Record<string, string> {
    return this.confluentIds ? {} : { [SCHEMA_HEADER]: this.writer(name).fingerprint };
  }

  encode<N extends MessageName>(name: N, value: MessageTypes[N]): { value: Buffer; headers: Record<string, string> } {
    const writer = this.writer(name);
    let payload: Buffer;
    try {
      payload = writer.type.toBuffer(value);
    } catch (error) {
      throw new T2iError('INPUT_INVALID', `cannot encode ${name}: ${(error as Error).message}`, { cause: error });
    }
    const id = this.confluentIds?.get(name);
    if (id !== undefined) return { value: frameConfluent(id, payload), headers: {} };
    return { value: payload, headers: { [SCHEMA_HEADER]: writer.fingerprint } };
  }

  /**
   * Fetches from the registry the writer schemas of the Confluent-framed values among `messages` whose ids
   * are not cached yet. Never throws: an id it could not fetch makes decode() throw SCHEMA_UNKNOWN with
   * the reason, and is tried again by the next call. Without a registry, or with only t2i-schema headers,
   * it does nothing.
   */
  async loadWriterSchemas(messages: Iterable<{ value: Buffer | null; headers?: Headers }>): Promise<void> {
    const registry = this.registry;
    if (!registry) return;
    const wanted = new Set<number>();
    for (const message of messages) {
      if (!message.value || message.headers?.[SCHEMA_HEADER] !== undefined) continue;
      const framed = unframeConfluent(message.value);
      if (framed && !this.byId.has(framed.schemaId)) wanted.add(framed.schemaId);
    }
    if (wanted.size === 0) return;
    await Promise.all([...wanted].map((id) => this.fetchSchema(registry, id)));
  }

  /**
   * Decodes with the writer schema named by the t2i-schema header or, without one, by the registry id of
   * the Confluent wire format (loaded by loadWriterSchemas()); refuses a message of another type.
   */
  decode<N extends MessageName>(name: N, value: Buffer | null, headers: Headers): MessageTypes[N] {
    if (!value) throw new T2iError('INPUT_INVALID', `empty ${name} message`);
    const raw = headers?.[SCHEMA_HEADER];
    if (raw === undefined) return this.decodeConfluent(name, value);
    const fingerprint = Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw);
    const writer = this.byFingerprint.get(fingerprint);
    if (!writer) {
      throw new T2iError(
        'SCHEMA_UNKNOWN',
        `unknown writer schema ${fingerprint}: this reader knows ${[...this.byFingerprint.keys()].join(', ')}; upgrade the reader`,
      );
    }
    if (writer.name !== name) throw new T2iError('SCHEMA_UNKNOWN', `expected a ${name} message, got ${writer.name}`);
    return this.read(name, writer.type, fingerprint, value);
  }

  private decodeConfluent<N extends MessageName>(name: N, value: Buffer): MessageTypes[N] {
    const framed = unframeConfluent(value);
    if (!framed) {
      throw new T2iError(
        'SCHEMA_UNKNOWN',
        `${name} message without a ${SCHEMA_HEADER} header and not in the Confluent wire format (first byte ${value[0] ?? 'none'}, not 0)`,
      );
    }
    const { schemaId, payload } = framed;
    const writer = this.byId.get(schemaId);
    if (!writer) {
      const why = !this.registry
        ? 'no schema registry is configured (set T2I_SCHEMA_REGISTRY_URL)'
        : (this.idFailures.get(schemaId) ?? `not loaded from ${this.registry.url} (loadWriterSchemas() was not awaited for this message)`);
      throw new T2iError('SCHEMA_UNKNOWN', `${name} message in the Confluent wire format with schema id ${schemaId}: ${why}`);
    }
    if (writer.name !== name) throw new T2iError('SCHEMA_UNKNOWN', `expected a ${name} message, schema id ${schemaId} is a ${writer.name}`);
    return this.read(name, writer.type, `id:${schemaId}`, payload);
  }

  /** Reads `value` written with `writerType` as the newest schema of `name` (resolvers cached under `key`). */
  private read<N extends MessageName>(name: N, writerType: avro.Type, key: string, value: Buffer): MessageTypes[N] {
    const reader = this.writer(name);
    if (writerType === reader.type) return reader.type.fromBuffer(value) as MessageTypes[N];
    let resolver = this.resolvers.get(key);
    if (!resolver) {
      try {
        resolver = reader.type.createResolver(writerType);
      } catch (error) {
        throw new T2iError('SCHEMA_UNKNOWN', `writer schema ${key} cannot be read as ${reader.file}: ${(error as Error).message}`, {
          cause: error,
        });
      }
      this.resolvers.set(key, resolver);
    }
    return reader.type.fromBuffer(value, resolver) as MessageTypes[N];
  }

  private fetchSchema(registry: SchemaRegistry, id: number): Promise<void> {
    let pending = this.idFetches.get(id);
    if (!pending) {
      pending = (async () => {
        try {
          const type = avro.Type.forSchema(JSON.parse(await registry.schemaById(id)) as avro.Schema);
          const fingerprint = shortFingerprint(type);
          const name =
            String(type.name ?? type.typeName)
              .split('.')
              .pop() ?? '';
          // A writer identical to one of our schema files reads without a resolver.
          const known = [...this.latest.values()].find((v) => v.name === name && shortFingerprint(v.type) === fingerprint);
          this.byId.set(id, { name, type: known?.type ?? type, fingerprint });
          this.idFailures.delete(id);
        } catch (error) {
          this.idFailures.set(id, `schema registry ${registry.url}: ${describeError(error)}`);
        } finally {
          this.idFetches.delete(id);
        }
      })();
      this.idFetches.set(id, pending);
    }
    return pending;
  }

  private writer(name: MessageName): SchemaVersion {
    const entry = this.latest.get(name);
    if (!entry) throw new T2iError('SCHEMA_UNKNOWN', `no schema for ${name}`);
    return entry;
  }
}

function shortFingerprint(type: avro.Type): string {
  return type.fingerprint('sha256').toString('hex').slice(0, 16);
}

/** The codec of a service, as configured: with the registry when one is set, registered and in the Confluent wire format when asked. */
export async function openCodec(config: Pick<Config, 'kafka' | 'schemaRegistry' | 'wireFormat'>): Promise<AvroCodec> {
  const registry = config.schemaRegistry ? new HttpSchemaRegistry(config.schemaRegistry) : undefined;
  const codec = new AvroCodec(SCHEMAS_DIR, registry ? { registry } : {});
  if (config.wireFormat === 'confluent') await codec.useConfluentFormat(confluentSubjects(config.kafka.topicPrefix));
  return codec;
}

/** The TopicNameStrategy subject of each message type's topic. */
export function confluentSubjects(topicPrefix: string): Record<MessageName, string> {
  const topics = topicNames(topicPrefix);
  return {
    PromptRequest: valueSubject(topics.prompts),
    ImageResult: valueSubject(topics.results),
    DeadLetter: valueSubject(topics.errors),
    JobEvent: valueSubject(topics.jobs),
  };
}

/**
 * The Confluent Schema Registry wire format and a client of the registry's REST API, so that Kafka
 * Connect, ksqlDB, `kcat -s avro -r` and every Confluent-compatible deserializer can read our topics:
 * a value is magic byte 0, the schema's registry id as a 4-byte big-endian integer, then the Avro binary.
 * Schemas are registered under the TopicNameStrategy subject `<topic>-value`.
 * Works with Confluent's registry and with compatible ones (Apicurio Registry under /apis/ccompat/v7).
 */
import { T2iError, describeError } from './errors.ts';

/** First byte of a value in the Confluent wire format. */
export const CONFLUENT_MAGIC_BYTE = 0;
/** Magic byte + 4-byte schema id. */
export const CONFLUENT_HEADER_BYTES = 5;

/** `<magic 0><id, 4 bytes big-endian><payload>`. */
export function frameConfluent(schemaId: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(CONFLUENT_HEADER_BYTES + payload.length);
  out.writeUInt8(CONFLUENT_MAGIC_BYTE, 0);
  out.writeUInt32BE(schemaId, 1);
  payload.copy(out, CONFLUENT_HEADER_BYTES);
  return out;
}

/** The schema id and Avro payload of a value in the Confluent wire format; undefined when it is not one. */
export function unframeConfluent(value: Buffer): { schemaId: number; payload: Buffer } | undefined {
  if (value.length < CONFLUENT_HEADER_BYTES || value[0] !== CONFLUENT_MAGIC_BYTE) return undefined;
  return { schemaId: value.readUInt32BE(1), payload: value.subarray(CONFLUENT_HEADER_BYTES) };
}

/** The TopicNameStrategy subject of a topic's values. */
export const valueSubject = (topic: string): string => `${topic}-value`;

/** What the codec needs from a schema registry (a seam: tests hand in their own). */
export interface SchemaRegistry {
  /** Where it is, for messages. */
  readonly url: string;
  /** Registers an Avro schema under `subject` (an identical schema keeps its id) and returns its global id. */
  register(subject: string, schema: string): Promise<number>;
  /** The Avro schema text of a global id; throws a T2iError SCHEMA_UNKNOWN when the registry does not know it. */
  schemaById(id: number): Promise<string>;
}

export interface HttpSchemaRegistryOptions {
  /** Base URL, e.g. http://127.0.0.1:8081 or an Apicurio Registry's http://host:8080/apis/ccompat/v7. */
  url: string;
  /** HTTP basic auth (`T2I_SCHEMA_REGISTRY_USER` / `T2I_SCHEMA_REGISTRY_PASSWORD`). */
  username?: string;
  password?: string;
  /** Per-request timeout. Default 10 000 ms. */
  timeoutMs?: number;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

/** The registry's REST API over fetch: POST /subjects/<s>/versions and GET /schemas/ids/<id>. */
export class HttpSchemaRegistry implements SchemaRegistry {
  readonly url: string;
  private readonly authorization: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: HttpSchemaRegistryOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.authorization =
      options.username !== undefined
        ? `Basic ${Buffer.from(`${options.username}:${options.password ?? ''}`).toString('base64')}`
        : undefined;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  async register(subject: string, schema: string): Promise<number> {
    const body = await this.request('POST', `/subjects/${encodeURIComponent(subject)}/versions`, { schemaType: 'AVRO', schema });
    const id = (body as { id?: unknown }).id;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new T2iError(
        'SCHEMA_UNKNOWN',
        `schema registry ${this.url}: registering ${subject} answered no schema id: ${JSON.stringify(body)}`,
      );
    }
    return id;
  }

  async schemaById(id: number): Promise<string> {
    const body = (await this.request('GET', `/schemas/ids/${id}`)) as { schema?: unknown; schemaType?: unknown };
    if (body.schemaType !== undefined && body.schemaType !== 'AVRO') {
      throw new T2iError('SCHEMA_UNKNOWN', `schema registry ${this.url}: schema id ${id} is ${String(body.schemaType)}, not Avro`);
    }
    if (typeof body.schema !== 'string') {
      throw new T2iError('SCHEMA_UNKNOWN', `schema registry ${this.url}: schema id ${id} answered no schema: ${JSON.stringify(body)}`);
    }
    return body.schema;
  }

  private async request(method: 'GET' | 'POST', route: string, payload?: unknown): Promise<unknown> {
    const target = `${this.url}${route}`;
    let response: Response;
    try {
      response = await fetch(target, {
        method,
        headers: {
          accept: CONTENT_TYPE,
          ...(payload !== undefined ? { 'content-type': CONTENT_TYPE } : {}),
          ...(this.authorization !== undefined ? { authorization: this.authorization } : {}),
        },
        ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      // The reason is in the message (fetch's own is "fetch failed", the cause says why), not repeated as a cause.
      throw new T2iError('SCHEMA_UNKNOWN', `schema registry unreachable: ${method} ${target}: ${describeError(error)}`, {
        retriable: true,
      });
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!response.ok) {
      const detail = (body as { message?: unknown } | undefined)?.message ?? text.slice(0, 300);
      const hint =
        response.status === 401 || response.status === 403
          ? ' (check T2I_SCHEMA_REGISTRY_USER / T2I_SCHEMA_REGISTRY_PASSWORD)'
          : response.status === 409
            ? ' (the schema is incompatible with the versions already registered under this subject)'
            : '';
      throw new T2iError('SCHEMA_UNKNOWN', `schema registry ${method} ${target}: HTTP ${response.status}: ${String(detail)}${hint}`, {
        retriable: response.status >= 500 || response.status === 429,
      });
    }
    if (body === undefined) throw new T2iError('SCHEMA_UNKNOWN', `schema registry ${method} ${target}: not JSON: ${text.slice(0, 300)}`);
    return body;
  }
}

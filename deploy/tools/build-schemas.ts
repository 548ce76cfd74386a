/**
 * Builds kubeconform's JSON schemas offline, from sources the project's install script fetched through
 * package registries (deploy/tools/install.sh):
 *   - the Kubernetes OpenAPI v3 documents (api/openapi-spec/v3/*.json of the k8s.io/kubernetes Go module);
 *   - CustomResourceDefinition YAML files (KEDA's from its Go module, Strimzi's generated from its Maven jars).
 *
 * Output layout (kubeconform -schema-location '<out>/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json'):
 *   <out>/<group or "v1" for the core group>/<version>/<kind, lower case>.json
 *
 * Every schema is strict: objects that declare properties reject unknown ones (what kubeconform's "-strict"
 * schemas do), except where Kubernetes itself keeps unknown fields (x-kubernetes-preserve-unknown-fields).
 * Each file is standalone: the definitions it references are copied into its own `definitions`.
 *
 * Usage: node --import tsx deploy/tools/build-schemas.ts --out DIR [--openapi DIR] [--crd FILE]...
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Where kubeconform looks for a kind: core-group kinds (apiVersion "v1") live under v1/v1/. */
export function schemaFile(out: string, gvk: GroupVersionKind): string {
  const group = gvk.group === '' ? gvk.version : gvk.group;
  return path.join(out, group, gvk.version, `${gvk.kind.toLowerCase()}.json`);
}

/**
 * Makes a schema strict, in place and recursively: `additionalProperties: false` on every object schema that
 * lists properties and says nothing about extra ones, unless unknown fields are preserved there.
 */
export function makeStrict(schema: Json, combinatorBranch = false): void {
  if (Array.isArray(schema)) {
    for (const item of schema) makeStrict(item, combinatorBranch);
    return;
  }
  if (!isObject(schema)) return;
  for (const [key, value] of Object.entries(schema)) {
    if ((key === 'properties' || key === 'definitions' || key === 'patternProperties') && isObject(value)) {
      // maps of names to schemas
      for (const inner of Object.values(value)) makeStrict(inner);
    } else if (key === 'allOf' || key === 'anyOf' || key === 'oneOf' || key === 'not') {
      // A branch only adds constraints to its parent's fields: closing it would reject the parent's other fields.
      makeStrict(value, true);
    } else if (key !== 'enum' && key !== 'default' && key !== 'example' && key !== 'x-kubernetes-group-version-kind') {
      makeStrict(value);
    }
  }
  if (
    !combinatorBranch &&
    isObject(schema.properties) &&
    schema.additionalProperties === undefined &&
    schema['x-kubernetes-preserve-unknown-fields'] !== true
  ) {
    schema.additionalProperties = false;
  }
}

/** Deep copy with every `$ref` rewritten by `rewrite`. */
function rewriteRefs(schema: Json, rewrite: (ref: string) => string): Json {
  if (Array.isArray(schema)) return schema.map((item) => rewriteRefs(item, rewrite));
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema))
    out[key] = key === '$ref' && typeof value === 'string' ? rewrite(value) : rewriteRefs(value, rewrite);
  return out;
}

function collectRefs(schema: Json, found: Set<string>): void {
  if (Array.isArray(schema)) for (const item of schema) collectRefs(item, found);
  else if (isObject(schema))
    for (const [key, value] of Object.entries(schema)) {
      if (key === '$ref' && typeof value === 'string') found.add(value);
      else collectRefs(value, found);
    }
}

const COMPONENT_PREFIX = '#/components/schemas/';

/** Standalone draft-4 schemas for every kind an OpenAPI v3 document defines. */
export function schemasFromOpenApi(document: JsonObject): Map<string, { gvk: GroupVersionKind; schema: JsonObject }> {
  const components = isObject(document.components) && isObject(document.components.schemas) ? document.components.schemas : {};
  const result = new Map<string, { gvk: GroupVersionKind; schema: JsonObject }>();
  for (const [name, definition] of Object.entries(components)) {
    if (!isObject(definition) || !Array.isArray(definition['x-kubernetes-group-version-kind'])) continue;
    // The closure of referenced definitions, copied into this file.
    const needed = new Set<string>();
    const queue = [name];
    while (queue.length > 0) {
      const current = queue.pop() as string;
      if (needed.has(current)) continue;
      needed.add(current);
      const refs = new Set<string>();
      collectRefs(components[current] ?? null, refs);
      for (const ref of refs) if (ref.startsWith(COMPONENT_PREFIX)) queue.push(ref.slice(COMPONENT_PREFIX.length));
    }
    const toLocal = (ref: string) => (ref.startsWith(COMPONENT_PREFIX) ? `#/definitions/${ref.slice(COMPONENT_PREFIX.length)}` : ref);
    const definitions: JsonObject = {};
    for (const n of needed) definitions[n] = rewriteRefs(components[n] ?? {}, toLocal);
    for (const entry of definition['x-kubernetes-group-version-kind']) {
      if (!isObject(entry)) continue;
      const gvk = { group: String(entry.group ?? ''), version: String(entry.version), kind: String(entry.kind) };
      const schema: JsonObject = {
        $schema: 'http://json-schema.org/draft-04/schema#',
        ...(rewriteRefs(definition, toLocal) as JsonObject),
        definitions: structuredClone(definitions),
      };
      pinKind(schema, gvk);
      makeStrict(schema);
      result.set(`${gvk.group}/${gvk.version}/${gvk.kind}`, { gvk, schema });
    }
  }
  return result;
}

/** apiVersion and kind must be exactly this kind's (the OpenAPI only says "a string"). */
function pinKind(schema: JsonObject, gvk: GroupVersionKind): void {
  if (!isObject(schema.properties)) return;
  const apiVersion = gvk.group === '' ? gvk.version : `${gvk.group}/${gvk.version}`;
  schema.properties.apiVersion = { type: 'string', enum: [apiVersion] };
  schema.properties.kind = { type: 'string', enum: [gvk.kind] };
}

/** One schema per served version of each CustomResourceDefinition in a YAML text. */
export function schemasFromCrdYaml(text: string): { gvk: GroupVersionKind; schema: JsonObject }[] {
  const result: { gvk: GroupVersionKind; schema: JsonObject }[] = [];
  for (const doc of parseAllDocuments(text)) {
    const crd = doc.toJS() as Json;
    if (!isObject(crd) || crd.kind !== 'CustomResourceDefinition' || !isObject(crd.spec)) continue;
    const group = String(crd.spec.group);
    const kind = isObject(crd.spec.names) ? String(crd.spec.names.kind) : '';
    for (const version of Array.isArray(crd.spec.versions) ? crd.spec.versions : []) {
      if (!isObject(version) || version.served === false) continue;
      const openApi = isObject(version.schema) ? version.schema.openAPIV3Schema : undefined;
      if (!isObject(openApi)) continue;
      const gvk = { group, version: String(version.name), kind };
      const schema = { $schema: 'http://json-schema.org/draft-04/schema#', ...structuredClone(openApi) } as JsonObject;
      schema.properties = { ...(isObject(schema.properties) ? schema.properties : {}) };
      pinKind(schema, gvk);
      makeStrict(schema);
      result.push({ gvk, schema });
    }
  }
  return result;
}

function main(argv: string[]): void {
  let out: string | undefined;
  const openApiDirs: string[] = [];
  const crds: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if ((arg === '--out' || arg === '--openapi' || arg === '--crd') && value === undefined) throw new Error(`${arg}: needs a value`);
    if (arg === '--out') out = value;
    else if (arg === '--openapi') openApiDirs.push(value as string);
    else if (arg === '--crd') crds.push(value as string);
    else throw new Error(`unknown argument ${String(arg)}`);
    i++;
  }
  if (out === undefined) throw new Error('--out DIR is required');
  let written = 0;
  const write = (gvk: GroupVersionKind, schema: JsonObject) => {
    const file = schemaFile(out as string, gvk);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(schema));
    written++;
  };
  for (const dir of openApiDirs) {
    for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('_openapi.json'))) {
      const document = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as JsonObject;
      for (const { gvk, schema } of schemasFromOpenApi(document).values()) write(gvk, schema);
    }
  }
  for (const file of crds) for (const { gvk, schema } of schemasFromCrdYaml(fs.readFileSync(file, 'utf8'))) write(gvk, schema);
  process.stderr.write(`build-schemas: ${written} schemas in ${out}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) main(process.argv.slice(2));

import { hash } from 'node:crypto';

/**
 * The seed of a prompt whose row gives none: the first 4 bytes (big-endian) of
 * sha256(`<namespace>/<row>/<promptIndex>`), where the namespace is `job:<jobId>` — so re-running the same
 * job reproduces the same images — or `seed:<base>` when the job sets a seed base (`--seed`), so the
 * same file gives the same images under any job id.
 */
export function deriveSeed(namespace: string, row: number, promptIndex: number): number {
  return hash('sha256', `${namespace}/${row}/${promptIndex}`, 'buffer').readUInt32BE(0);
}

/** The namespace of derived seeds for a job: its seed base when set, else its id. */
export function seedNamespace(jobId: string, seedBase: number | undefined): string {
  return seedBase === undefined ? `job:${jobId}` : `seed:${seedBase}`;
}

/**
 * The seed of prompt `promptIndex` of a row. A row's own `seed` is the seed of its first prompt; the
 * k-th prompt of a multi-prompt row gets `seed + k`, so each image of the row differs and stays reproducible.
 */
export function promptSeed(rowSeed: number | undefined, namespace: string, row: number, promptIndex: number): number {
  return rowSeed === undefined ? deriveSeed(namespace, row, promptIndex) : rowSeed + promptIndex;
}

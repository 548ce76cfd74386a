import type { Readable } from 'node:stream';
import { T2iError } from '../common/errors.ts';
import { compareEntries, parseEntry, sameKey, type PartEntry } from './part-format.ts';

/** Lines of a UTF-8 stream, read chunk by chunk (the stream's own backpressure bounds memory). */
export async function* readLines(stream: Readable | AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  let carry = '';
  const decoder = new TextDecoder('utf-8');
  for await (const chunk of stream) {
    const text = carry + (typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
    const lines = text.split('\n');
    carry = lines.pop() ?? '';
    for (const line of lines) if (line.length > 0) yield line;
  }
  carry += decoder.decode();
  if (carry.length > 0) yield carry;
}

/** Entries of one sorted part; refuses a part that is not sorted (the merge relies on it). */
async function* readEntries(lines: AsyncIterable<string>, name: string): AsyncGenerator<PartEntry> {
  let previous: PartEntry | undefined;
  for await (const line of lines) {
    const entry = parseEntry(line);
    if (!entry) throw new T2iError('INPUT_INVALID', `sink part ${name}: unreadable line ${JSON.stringify(line.slice(0, 80))}`);
    if (previous && compareEntries(previous, entry) > 0)
      throw new T2iError('INPUT_INVALID', `sink part ${name} is not sorted at row ${entry.row}`);
    previous = entry;
    yield entry;
  }
}

interface HeapItem {
  entry: PartEntry;
  source: AsyncIterator<PartEntry>;
}

/** A binary min-heap of the sources' current heads. */
class HeadHeap {
  private readonly items: HeapItem[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: HeapItem): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (compareEntries((items[parent] as HeapItem).entry, item.entry) <= 0) break;
      items[i] = items[parent] as HeapItem;
      i = parent;
    }
    items[i] = item;
  }

  pop(): HeapItem | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child =
        right < items.length && compareEntries((items[right] as HeapItem).entry, (items[left] as HeapItem).entry) < 0 ? right : left;
      if (compareEntries((items[child] as HeapItem).entry, last.entry) >= 0) break;
      items[i] = items[child] as HeapItem;
      i = child;
    }
    items[i] = last;
    return top;
  }
}

export interface MergeCounters {
  /** Lines read from all sources, duplicates included. */
  read: number;
  /** Distinct (row, promptIndex) keys yielded. */
  distinct: number;
}

/**
 * K-way merge of sorted sources, keeping the first entry of each (row, promptIndex): duplicates from
 * at-least-once delivery collapse, and an image beats a dead letter of the same prompt (it sorts first).
 * Memory: one head entry per source. `counters` is updated as the merge goes.
 */
export async function* mergeSortedParts(
  sources: { name: string; lines: AsyncIterable<string> }[],
  counters?: MergeCounters,
): AsyncGenerator<PartEntry> {
  const heap = new HeadHeap();
  const iterators: AsyncIterator<PartEntry>[] = [];
  try {
    for (const source of sources) {
      const iterator = readEntries(source.lines, source.name)[Symbol.asyncIterator]();
      iterators.push(iterator);
      const first = await iterator.next();
      if (!first.done) heap.push({ entry: first.value, source: iterator });
    }
    let last: PartEntry | undefined;
    while (heap.size > 0) {
      const item = heap.pop() as HeapItem;
      const entry = item.entry;
      const next = await item.source.next();
      if (!next.done) heap.push({ entry: next.value, source: item.source });
      if (counters) counters.read++;
      if (last && sameKey(last, entry)) continue;
      last = entry;
      if (counters) counters.distinct++;
      yield entry;
    }
  } finally {
    // Stops the remaining sources (closes their S3 streams) when the consumer of the merge gives up early.
    await Promise.all(iterators.map((it) => it.return?.(undefined).catch(() => undefined)));
  }
}

/** Sorts entries in memory (a buffer being spilled) and drops exact-key duplicates the same way the merge does. */
export function sortAndDedupe(lines: string[]): string[] {
  const entries = lines.map((line) => {
    const entry = parseEntry(line);
    if (!entry) throw new T2iError('INPUT_INVALID', `not a sink entry line: ${JSON.stringify(line.slice(0, 80))}`);
    return entry;
  });
  entries.sort(compareEntries);
  const out: string[] = [];
  let last: PartEntry | undefined;
  for (const entry of entries) {
    if (last && sameKey(last, entry)) continue;
    last = entry;
    out.push(entry.line);
  }
  return out;
}

/** An HTTP request of the query API as the handlers see it, and the checks of its query parameters. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { badRequest } from './query-error.ts';

const MAX_LIMIT = 1000;

export interface Request {
  segments: string[];
  query: URLSearchParams;
  req: IncomingMessage;
  res: ServerResponse;
}

/**
 * The path as decoded segments. The raw path is split on "/" before decoding, so "%2F" stays inside one
 * segment and "%2e%2e" is seen as ".."; the handlers refuse such segments (no normalization that could
 * walk out of a job's prefix).
 */
export function parseRequest(req: IncomingMessage, res: ServerResponse): Request {
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  const pathPart = q === -1 ? raw : raw.slice(0, q);
  if (!pathPart.startsWith('/')) throw badRequest('invalid request path');
  const segments = pathPart.slice(1).split('/');
  if (segments[segments.length - 1] === '') segments.pop();
  const decoded = segments.map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch {
      throw badRequest('invalid percent-encoding in the path');
    }
  });
  return { segments: decoded, query: new URLSearchParams(q === -1 ? '' : raw.slice(q + 1)), req, res };
}

export function parseLimit(query: URLSearchParams, fallback: number): number {
  const text = query.get('limit');
  if (text === null || text === '') return fallback;
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1 || Number(text) > MAX_LIMIT)
    throw badRequest(`invalid limit ${JSON.stringify(text.slice(0, 20))}: expected 1-${MAX_LIMIT}`);
  return Number(text);
}

export function optionalLimit(query: URLSearchParams): number | undefined {
  const text = query.get('limit');
  if (text === null || text === '') return undefined;
  if (!/^\d{1,12}$/.test(text) || Number(text) < 1)
    throw badRequest(`invalid limit ${JSON.stringify(text.slice(0, 20))}: expected a whole number from 1`);
  return Number(text);
}

export function cursorParam(query: URLSearchParams): { cursor?: string } {
  const cursor = query.get('cursor');
  if (cursor === null || cursor === '') return {};
  if (cursor.length > 1024) throw badRequest('invalid cursor: too long');
  return { cursor };
}

export function parseExpires(text: string | undefined, max: number): number {
  if (text === undefined || text === '') return 3600;
  if (!/^\d{1,7}$/.test(text) || Number(text) < 1 || Number(text) > max)
    throw badRequest(`invalid expires ${JSON.stringify(text.slice(0, 20))}: expected 1-${max} seconds`);
  return Number(text);
}

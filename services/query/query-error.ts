/**
 * The answers a query can give besides a result: a bad argument (400), a missing token (401) or a
 * missing job/row/image (404). Storage failures stay T2iError (S3_UNAVAILABLE) and become 500/503.
 */
export type QueryErrorKind = 'bad_request' | 'unauthorized' | 'not_found' | 'method_not_allowed';

const STATUS: Record<QueryErrorKind, number> = { bad_request: 400, unauthorized: 401, not_found: 404, method_not_allowed: 405 };

export class QueryError extends Error {
  readonly kind: QueryErrorKind;
  readonly status: number;

  constructor(kind: QueryErrorKind, message: string) {
    super(message);
    this.name = 'QueryError';
    this.kind = kind;
    this.status = STATUS[kind];
  }
}

export const badRequest = (message: string): QueryError => new QueryError('bad_request', message);
export const notFound = (message: string): QueryError => new QueryError('not_found', message);

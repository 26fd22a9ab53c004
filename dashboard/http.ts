/**
 * The dashboard's HTTP vocabulary, free of express: handlers take a `DashRequest` and return a
 * `DashResponse` (`{ status, body }`, or an event stream); one thin adapter wires them.
 */

export interface DashRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  body: unknown;
}

/** One Server-Sent Event; `data` is written line by line. */
export interface SseEvent {
  event?: string;
  id?: string;
  data: string;
}

export interface SseSink {
  send(ev: SseEvent): void;
  /** Ends the stream (the client reconnects after its `retry`). */
  end(): void;
}

export type BodyType = 'json' | 'html' | 'text' | 'css' | 'js' | 'prometheus';

export type DashResponse =
  | {
      status: number;
      body: unknown;
      type?: BodyType;
      headers?: Record<string, string>;
    }
  /** An event stream: `open` starts it and returns the function that stops it. */
  | {
      status: 200;
      stream: { retryMs: number; open: (sink: SseSink) => () => void };
    };

export type Handler = (
  req: DashRequest,
) => DashResponse | Promise<DashResponse>;

/**
 * How a route is guarded: `page` and `api` need authentication, `write` also the CSRF token
 * and a writable dashboard, `login` only a same-origin check.
 */
export type RouteKind = 'page' | 'api' | 'write' | 'login';

export interface Route {
  method: 'GET' | 'POST';
  /** express-style path (`/api/agents/:id/logs`). */
  path: string;
  kind: RouteKind;
  handler: Handler;
}

export const json = (
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): DashResponse => ({
  status,
  body,
  type: 'json',
  ...(headers ? { headers } : {}),
});

export const errorBody = (
  status: number,
  message: string,
  extra: { code?: string; hint?: string } = {},
): DashResponse =>
  json(status, {
    error: message,
    ...(extra.code ? { code: extra.code } : {}),
    ...(extra.hint ? { hint: extra.hint } : {}),
  });

/** Formats one event in the text/event-stream format (a `data:` line per line of data). */
export function formatSse(ev: SseEvent): string {
  let out = '';
  if (ev.event) out += `event: ${ev.event.replace(/[\r\n]/g, '')}\n`;
  if (ev.id !== undefined) out += `id: ${ev.id.replace(/[\r\n\0]/g, '')}\n`;
  for (const line of ev.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

const STATUS_BY_CODE: Record<string, number> = {
  ERR_SUP_USAGE: 400,
  ERR_SUP_SCALE_LIMIT: 400,
  ERR_SUP_INVALID_ISSUE: 400,
  ERR_SUP_ISSUE_NOT_FOUND: 404,
  ERR_SUP_NOT_RUNNING: 409,
  ERR_SUP_ISSUE_STATE: 409,
  ERR_SUP_LAND_BUSY: 409,
  ERR_SUP_LAND_REFUSED: 409,
};

/** The one error handler: known errors become 4xx with their hint; stacks only in development. */
export function errorResponse(err: unknown): DashResponse {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  const hint = (e as { hint?: unknown }).hint;
  if (e.name === 'SupervisorError' && typeof code === 'string') {
    return errorBody(STATUS_BY_CODE[code] ?? 500, e.message, {
      code,
      ...(typeof hint === 'string' ? { hint } : {}),
    });
  }
  const status = (e as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500)
    return errorBody(status, e.message);
  return json(500, {
    error: 'internal error',
    ...(process.env.NODE_ENV === 'development'
      ? { message: e.message, stack: e.stack }
      : {}),
  });
}

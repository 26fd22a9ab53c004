import express, {
  type NextFunction,
  type Request,
  type Response,
  type Router,
} from 'express';
import type { DashboardDeps } from './deps.js';
import {
  errorBody,
  errorResponse,
  formatSse,
  type DashRequest,
  type DashResponse,
  type Route,
} from './http.js';
import { gate } from './routes.js';

const CONTENT_TYPES = {
  json: 'application/json; charset=utf-8',
  html: 'text/html; charset=utf-8',
  text: 'text/plain; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  prometheus: 'text/plain; version=0.0.4; charset=utf-8',
} as const;

const KEEPALIVE_MS = 15_000;

function toDashRequest(req: Request): DashRequest {
  const headers: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(req.headers))
    headers[k] = Array.isArray(v) ? v.join(', ') : v;
  const query: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(req.query ?? {}))
    if (typeof v === 'string') query[k] = v;
  return {
    method: req.method === 'HEAD' ? 'GET' : req.method,
    path: req.path,
    params: { ...(req.params as Record<string, string>) },
    query,
    headers,
    body: req.body,
  };
}

/**
 * The one place that knows express: turns requests into `DashRequest`s, runs the guard and the
 * handlers, writes their `{ status, body }` (or event stream), and mounts Bull Board.
 */
export class ExpressDashboard {
  readonly app = express();
  private readonly streams = new Set<() => void>();

  constructor(
    private readonly d: DashboardDeps,
    routes: Route[],
    bullBoard: { basePath: string; router: Router } | undefined,
  ) {
    const app = this.app;
    app.disable('x-powered-by');
    app.set('etag', false);
    app.use((_req, res, next) => {
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('X-Frame-Options', 'DENY');
      // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on our own form posts.
      res.setHeader('Referrer-Policy', 'same-origin');
      res.setHeader('Cache-Control', 'no-store');
      next();
    });
    const byPath = new Map<string, Route[]>();
    for (const r of routes)
      byPath.set(r.path, [...(byPath.get(r.path) ?? []), r]);
    const json = express.json({ limit: '16kb' });
    const form = express.urlencoded({ extended: false, limit: '4kb' });
    for (const [path, list] of byPath) {
      app.all(path, (req, res, next) => {
        const method = req.method === 'HEAD' ? 'GET' : req.method;
        const route = list.find((r) => r.method === method);
        if (!route) {
          // The guard first: an unauthenticated caller learns nothing about the route.
          const refused = gate(
            d,
            { ...toDashRequest(req), method: 'GET' },
            list[0]!.kind === 'login' ? 'login' : 'api',
          );
          if (refused) return this.send(req, res, refused);
          res.setHeader(
            'Allow',
            [...new Set(list.map((r) => r.method))].join(', '),
          );
          return this.send(
            req,
            res,
            errorBody(
              405,
              `${req.method} is not allowed here; use ${list.map((r) => r.method).join(' or ')}`,
            ),
          );
        }
        const refused = gate(d, toDashRequest(req), route.kind);
        if (refused) return this.send(req, res, refused);
        const parse =
          route.method === 'POST'
            ? route.kind === 'login'
              ? form
              : json
            : (_q: Request, _s: Response, n: NextFunction) => n();
        parse(req, res, (err?: unknown) => {
          if (err) return next(err);
          Promise.resolve()
            .then(() => route.handler(toDashRequest(req)))
            .then((r) => this.send(req, res, r), next);
        });
      });
    }
    if (bullBoard) {
      app.use(
        bullBoard.basePath,
        (req, res, next) => {
          const refused = gate(
            d,
            {
              method: req.method,
              path: req.path,
              headers: toDashRequest(req).headers,
            },
            'queues',
          );
          if (refused) return this.send(req, res, refused);
          next();
        },
        bullBoard.router,
      );
    }
    app.use((req, res) => {
      const refused = gate(d, toDashRequest(req), 'api');
      this.send(
        req,
        res,
        refused ?? errorBody(404, `no such page: ${req.path}`),
      );
    });
    app.use(
      (err: unknown, req: Request, res: Response, _next: NextFunction) => {
        const r = errorResponse(err);
        if (r.status >= 500)
          d.log('dashboard: request failed', {
            path: req.path,
            error: err instanceof Error ? err.message : String(err),
          });
        this.send(req, res, r);
      },
    );
  }

  private send(req: Request, res: Response, r: DashResponse): void {
    if (res.headersSent) return;
    if ('stream' in r) return this.openStream(req, res, r.stream);
    for (const [k, v] of Object.entries(r.headers ?? {})) res.setHeader(k, v);
    const type = r.type ?? 'json';
    if (!res.getHeader('Content-Type'))
      res.setHeader('Content-Type', CONTENT_TYPES[type]);
    res
      .status(r.status)
      .send(type === 'json' ? JSON.stringify(r.body) : String(r.body ?? ''));
  }

  private openStream(
    req: Request,
    res: Response,
    stream: {
      retryMs: number;
      open: (sink: {
        send: (ev: { event?: string; id?: string; data: string }) => void;
        end: () => void;
      }) => () => void;
    },
  ): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.write(`retry: ${stream.retryMs}\n\n`);
    let closed = false;
    const keepalive = setInterval(
      () => res.write(': keep-alive\n\n'),
      KEEPALIVE_MS,
    );
    let stop: () => void = () => undefined;
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(keepalive);
      this.streams.delete(close);
      stop();
      res.end();
    };
    this.streams.add(close);
    req.on('close', close);
    try {
      stop = stream.open({
        send: (ev) => void (closed || res.write(formatSse(ev))),
        end: close,
      });
    } catch (err) {
      res.write(
        formatSse({ event: 'error', data: JSON.stringify(errorResponse(err)) }),
      );
      close();
    }
  }

  /** Ends every open event stream (on shutdown; clients reconnect to the next server). */
  closeStreams(): void {
    for (const close of [...this.streams]) close();
  }
}

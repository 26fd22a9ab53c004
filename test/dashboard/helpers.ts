import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { openContext, type Context } from '../../supervisor/context.js';
import {
  startDashboard,
  type RunningDashboard,
} from '../../dashboard/server.js';
import { stateSource, type DashboardSource } from '../../dashboard/source.js';
import { tempRepo } from '../helpers/repo.js';

export interface TestDashboard {
  ctx: Context;
  source: DashboardSource;
  dash: RunningDashboard;
  url: string;
  prefix: string;
  /** Pretends a supervisor runs for the repository (its pid file names this live node process). */
  fakeRunning(): void;
  close(): Promise<void>;
}

/** A dashboard on a fresh repository and Redis prefix, in this process (`supervisor dashboard`'s code path). */
export async function startTestDashboard(
  o: { token?: string; readOnly?: boolean; host?: string; port?: number } = {},
): Promise<TestDashboard> {
  const repo = tempRepo();
  const prefix = `t${randomBytes(5).toString('hex')}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SUPERVISOR_PREFIX: prefix,
    SUPERVISOR_MAX_AGENTS: '10',
    SUPERVISOR_HEARTBEAT: '300',
  };
  const ctx = await openContext({ repo: repo.dir, init: true, env });
  const source = await stateSource(ctx);
  let dash: RunningDashboard;
  try {
    dash = await startDashboard(source, {
      host: o.host ?? '127.0.0.1',
      port: o.port ?? 0,
      token: o.token,
      readOnly: o.readOnly ?? false,
      log: () => undefined,
    });
  } catch (err) {
    await source.close();
    ctx.close();
    repo.cleanup();
    throw err;
  }
  const url = `http://127.0.0.1:${dash.port}`;
  return {
    ctx,
    source,
    dash,
    url,
    prefix,
    fakeRunning: () =>
      writeFileSync(
        ctx.paths.pidFile,
        JSON.stringify({
          pid: process.pid,
          startedAt: Date.now(),
          ready: true,
        }),
      ),
    close: async () => {
      await dash.close();
      const keys = await source.redis.keys(`${prefix}:*`);
      if (keys.length) await source.redis.del(...keys);
      await source.close();
      ctx.close();
      repo.cleanup();
    },
  };
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json<T = any>(): T;
}

/** A plain HTTP request (node:http, so that Host and Origin can be set freely). */
export function http(
  method: string,
  url: string,
  o: { headers?: Record<string, string>; body?: string | object } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const body =
      o.body === undefined
        ? undefined
        : typeof o.body === 'string'
          ? o.body
          : JSON.stringify(o.body);
    const headers: Record<string, string> = {
      ...(typeof o.body === 'object'
        ? { 'content-type': 'application/json' }
        : {}),
      ...o.headers,
    };
    const req = request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          json: () => JSON.parse(text),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface SseEventRead {
  event: string;
  id: string | undefined;
  data: string;
}

/** Opens an event stream and collects events until `until` says enough (or the timeout). */
export function readSse(
  url: string,
  o: {
    headers?: Record<string, string>;
    until: (events: SseEventRead[], raw: string) => boolean;
    timeoutMs?: number;
    onOpen?: (status: number) => void;
  },
): Promise<{ status: number; events: SseEventRead[]; raw: string }> {
  return new Promise((resolve, reject) => {
    const events: SseEventRead[] = [];
    let raw = '';
    let status = 0;
    const req = request(
      url,
      { headers: { accept: 'text/event-stream', ...o.headers } },
      (res) => {
        status = res.statusCode ?? 0;
        o.onOpen?.(status);
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (chunk: string) => {
          raw += chunk;
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const ev: SseEventRead = {
              event: 'message',
              id: undefined,
              data: '',
            };
            const data: string[] = [];
            let any = false;
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) {
                ev.event = line.slice(7);
                any = true;
              } else if (line.startsWith('id: ')) ev.id = line.slice(4);
              else if (line.startsWith('data: ')) {
                data.push(line.slice(6));
                any = true;
              }
            }
            if (!any) continue;
            ev.data = data.join('\n');
            events.push(ev);
          }
          if (o.until(events, raw)) finish();
        });
        res.on('end', finish);
        if (status !== 200) res.resume();
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      reject(
        new Error(
          `no matching events within ${o.timeoutMs ?? 10_000} ms; got ${events.length}: ${raw.slice(0, 500)}`,
        ),
      );
    }, o.timeoutMs ?? 10_000);
    function finish() {
      clearTimeout(timer);
      req.destroy();
      resolve({ status, events, raw });
    }
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') return;
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}

/** The dashboard URL a running supervisor recorded in its pid file. */
export function dashboardUrlOf(dir: string): string | undefined {
  try {
    return (
      JSON.parse(
        readFileSync(join(dir, '.supervisor', 'supervisor.pid'), 'utf8'),
      ) as { dashboardUrl?: string }
    ).dashboardUrl;
  } catch {
    return undefined;
  }
}

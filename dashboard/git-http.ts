import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { RESULT_REF_PREFIX, parseResultRef } from '../contract/job.js';
import { SERVED_REPO_PATH } from '../supervisor/remote.js';

/**
 * The repository over git's smart HTTP, for runners on other hosts: a minimal bridge to
 * `git http-backend` (CGI) with exactly four routes under `/git/repo.git`:
 *
 *   GET  info/refs?service=git-upload-pack    fetch: this repository, read-only
 *   POST git-upload-pack
 *   GET  info/refs?service=git-receive-pack   push: the results repository (.supervisor/results.git)
 *   POST git-receive-pack                     only *new* refs refs/supervisor/results/<issue>/<attempt>
 *
 * Pushes never reach the user's repository: they land in a bare repository the supervisor owns
 * (borrowing this repository's objects, so a push carries only new objects), and the recorder
 * copies a result across only after checking it. A push is accepted only from the runner that
 * holds the attempt its ref names (`checkPush`: the claim's fencing token). The command list of every push is read
 * before git sees it; any other ref, a deletion or an update of an existing ref is refused with
 * a git report ("[remote rejected] … (reason)"). Dumb HTTP, other paths and methods: 404/405.
 */
export interface GitHttpOptions {
  /** The repository's git directory (fetches). */
  gitDir: string;
  /** The results repository (pushes). */
  resultsRepo: string;
  /** Decides whether a request may use git (token, loopback); returns a refusal or undefined. */
  authorize: (
    req: IncomingMessage,
  ) =>
    | { status: number; message: string; headers?: Record<string, string> }
    | undefined;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /**
   * Checks each pushed result ref against the pusher's claim (see dashboard/result-claims.ts);
   * returns the refusal for a ref, or undefined.
   */
  checkPush?: (
    ref: string,
    req: IncomingMessage,
  ) => Promise<string | undefined>;
  /** @defaultValue 512 MiB — largest push accepted. */
  maxPushBytes?: number;
  /** @defaultValue 64 MiB — largest fetch negotiation accepted. */
  maxFetchRequestBytes?: number;
  /** @defaultValue 16 — concurrent git processes; more get 503. */
  maxConcurrent?: number;
}

const ZERO = '0'.repeat(40);
const MAX_COMMAND_BYTES = 64 * 1024;
const BACKEND_TIMEOUT_MS = 10 * 60_000;

type Route = {
  repo: 'fetch' | 'push';
  method: 'GET' | 'POST';
  sub: string;
  query: string;
};

function route(
  method: string,
  url: URL,
): Route | { status: number; message: string } {
  const rest = url.pathname.slice(SERVED_REPO_PATH.length);
  const service = url.searchParams.get('service');
  if (rest === '/info/refs') {
    if (method !== 'GET' && method !== 'HEAD')
      return { status: 405, message: 'use GET for info/refs' };
    if (service === 'git-upload-pack')
      return {
        repo: 'fetch',
        method: 'GET',
        sub: rest,
        query: 'service=git-upload-pack',
      };
    if (service === 'git-receive-pack')
      return {
        repo: 'push',
        method: 'GET',
        sub: rest,
        query: 'service=git-receive-pack',
      };
    return {
      status: 403,
      message:
        'only the smart HTTP protocol is served (service=git-upload-pack or git-receive-pack)',
    };
  }
  if (rest === '/git-upload-pack' || rest === '/git-receive-pack') {
    if (method !== 'POST')
      return { status: 405, message: `use POST for ${rest.slice(1)}` };
    return {
      repo: rest === '/git-upload-pack' ? 'fetch' : 'push',
      method: 'POST',
      sub: rest,
      query: '',
    };
  }
  return {
    status: 404,
    message: 'not found: this endpoint serves only git fetch and result pushes',
  };
}

function pkt(payload: string | Buffer): Buffer {
  const body =
    typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([
    Buffer.from((body.length + 4).toString(16).padStart(4, '0'), 'ascii'),
    body,
  ]);
}

interface Command {
  oldSha: string;
  newSha: string;
  ref: string;
}

/** Parses the command list at the start of a receive-pack request; undefined until complete. */
export function parseReceiveCommands(
  buf: Buffer,
):
  | { commands: Command[]; caps: string[]; end: number }
  | { error: string }
  | undefined {
  const commands: Command[] = [];
  let caps: string[] = [];
  let pos = 0;
  for (;;) {
    if (buf.length < pos + 4) return undefined;
    const lenHex = buf.toString('ascii', pos, pos + 4);
    if (!/^[0-9a-f]{4}$/.test(lenHex))
      return { error: 'malformed push request' };
    const len = parseInt(lenHex, 16);
    if (len === 0) return { commands, caps, end: pos + 4 };
    if (len < 4) return { error: 'malformed push request' };
    if (buf.length < pos + len) return undefined;
    let line = buf.toString('utf8', pos + 4, pos + len);
    pos += len;
    const nul = line.indexOf('\0');
    if (nul >= 0) {
      caps = line
        .slice(nul + 1)
        .trim()
        .split(' ')
        .filter(Boolean);
      line = line.slice(0, nul);
    }
    line = line.replace(/\n$/, '');
    if (line.startsWith('shallow ')) continue;
    const m = /^([0-9a-f]{40}) ([0-9a-f]{40}) (\S+)$/.exec(line);
    if (!m)
      return {
        error: `unsupported push command: ${JSON.stringify(line.slice(0, 80))}`,
      };
    commands.push({ oldSha: m[1]!, newSha: m[2]!, ref: m[3]! });
  }
}

/** Why a ref update is not allowed, or undefined. */
export function refusal(c: Command): string | undefined {
  if (!c.ref.startsWith(RESULT_REF_PREFIX) || !parseResultRef(c.ref))
    return `only new refs ${RESULT_REF_PREFIX}<issue>/<attempt> may be pushed here`;
  if (c.newSha === ZERO) return 'result refs cannot be deleted by a push';
  if (c.oldSha !== ZERO) return 'result refs are write-once';
  return undefined;
}

/** A receive-pack report refusing every command (side-band wrapped when the client asked for it). */
function rejectionReport(
  commands: Command[],
  reasons: Map<string, string>,
  caps: string[],
): Buffer {
  const inner = Buffer.concat([
    pkt('unpack ok\n'),
    ...commands.map((c) =>
      pkt(
        `ng ${c.ref} ${reasons.get(c.ref) ?? 'refused: another ref in this push was refused'}\n`,
      ),
    ),
    Buffer.from('0000'),
  ]);
  if (!caps.includes('side-band-64k') && !caps.includes('side-band'))
    return inner;
  return Buffer.concat([
    pkt(Buffer.concat([Buffer.from([1]), inner])),
    Buffer.from('0000'),
  ]);
}

export class GitHttp {
  private running = 0;

  constructor(private readonly o: GitHttpOptions) {}

  /** Whether a request is for this endpoint. */
  handles(req: IncomingMessage): boolean {
    const path = (req.url ?? '').split('?')[0] ?? '';
    return (
      path === SERVED_REPO_PATH ||
      path.startsWith(`${SERVED_REPO_PATH}/`) ||
      path === '/git' ||
      path.startsWith('/git/')
    );
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    void this.serve(req, res).catch((err: Error) => {
      this.o.log('git endpoint: request failed', { error: err.message });
      if (!res.headersSent) this.plain(res, 500, 'internal error');
      else res.destroy();
    });
  }

  private plain(
    res: ServerResponse,
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ): void {
    res.writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Cache-Control': 'no-store',
      ...headers,
    });
    res.end(`${message}\n`);
  }

  private async serve(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const refused = this.o.authorize(req);
    if (refused) {
      req.resume();
      return this.plain(res, refused.status, refused.message, refused.headers);
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith(`${SERVED_REPO_PATH}/`)) {
      req.resume();
      return this.plain(
        res,
        404,
        `not found: the repository is served at ${SERVED_REPO_PATH}`,
      );
    }
    const r = route(req.method ?? 'GET', url);
    if ('status' in r) {
      req.resume();
      return this.plain(res, r.status, r.message);
    }
    if (this.running >= (this.o.maxConcurrent ?? 16)) {
      req.resume();
      return this.plain(res, 503, 'too many git requests at once; try again', {
        'Retry-After': '2',
      });
    }
    if (r.method === 'POST') {
      const expected =
        r.repo === 'fetch'
          ? 'application/x-git-upload-pack-request'
          : 'application/x-git-receive-pack-request';
      if (req.headers['content-type'] !== expected) {
        req.resume();
        return this.plain(res, 415, `expected Content-Type ${expected}`);
      }
    }
    let body: Readable | undefined;
    if (r.method === 'POST') {
      const enc = (req.headers['content-encoding'] ?? '').toLowerCase();
      if (enc && enc !== 'gzip' && enc !== 'x-gzip') {
        req.resume();
        return this.plain(res, 415, `unsupported Content-Encoding ${enc}`);
      }
      body = enc ? req.pipe(createGunzip()) : req;
    }
    this.running += 1;
    try {
      await this.backend(r, req, res, body);
    } finally {
      this.running -= 1;
    }
  }

  private async backend(
    r: Route,
    req: IncomingMessage,
    res: ServerResponse,
    body: Readable | undefined,
  ): Promise<void> {
    const limit =
      r.repo === 'push'
        ? (this.o.maxPushBytes ?? 512 * 1024 * 1024)
        : (this.o.maxFetchRequestBytes ?? 64 * 1024 * 1024);
    const iter = body?.[Symbol.asyncIterator]() as
      AsyncIterator<Buffer> | undefined;
    let head = Buffer.alloc(0);
    if (iter && r.repo === 'push') {
      // The command list first: nothing reaches git before every ref update is checked.
      let parsed = parseReceiveCommands(head);
      while (parsed === undefined) {
        const next = await iter.next();
        if (next.done) break;
        head = Buffer.concat([head, next.value]);
        if (
          head.length > MAX_COMMAND_BYTES &&
          parseReceiveCommands(head) === undefined
        )
          return this.plain(res, 413, 'push command list too long');
        parsed = parseReceiveCommands(head);
      }
      if (parsed === undefined || 'error' in parsed)
        return this.plain(res, 400, parsed?.error ?? 'truncated push request');
      const reasons = new Map<string, string>();
      for (const c of parsed.commands) {
        const why =
          refusal(c) ??
          (await this.o
            .checkPush?.(c.ref, req)
            .catch(
              (err: Error) => `the claim could not be checked: ${err.message}`,
            ));
        if (why) reasons.set(c.ref, why);
      }
      if (parsed.commands.length === 0 || reasons.size > 0) {
        this.o.log('git endpoint: push refused', {
          refs: parsed.commands.map((c) => c.ref),
          reasons: [...reasons.values()],
        });
        // Drain what the client still sends (bounded) so it reads our report, not a reset.
        let seen = head.length;
        for (;;) {
          const next = await iter.next();
          if (next.done) break;
          seen += next.value.length;
          if (seen > limit) {
            req.destroy();
            return;
          }
        }
        res.writeHead(200, {
          'Content-Type': 'application/x-git-receive-pack-result',
          'Cache-Control': 'no-store',
        });
        res.end(rejectionReport(parsed.commands, reasons, parsed.caps));
        return;
      }
    }
    const repoDir = r.repo === 'fetch' ? this.o.gitDir : this.o.resultsRepo;
    const config: Array<[string, string]> =
      r.repo === 'fetch'
        ? [
            ['http.receivepack', 'false'],
            ['http.uploadpack', 'true'],
            ['http.getanyfile', 'false'],
          ]
        : [
            ['http.receivepack', 'true'],
            ['http.uploadpack', 'false'],
            ['http.getanyfile', 'false'],
            ['receive.denyDeletes', 'true'],
          ];
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: dirname(repoDir),
      PATH_INFO: `/${basename(repoDir)}${r.sub}`,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: r.method,
      QUERY_STRING: r.query,
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: 'runner',
      REMOTE_ADDR: req.socket.remoteAddress ?? '',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_CONFIG_COUNT: String(config.length),
    };
    config.forEach(([k, v], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = k;
      env[`GIT_CONFIG_VALUE_${i}`] = v;
    });
    const proto = req.headers['git-protocol'];
    if (typeof proto === 'string' && /^[a-z0-9=:._-]{1,100}$/i.test(proto))
      env.GIT_PROTOCOL = proto;
    const child = spawn('git', ['http-backend'], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), BACKEND_TIMEOUT_MS);
    let stderr = '';
    child.stderr.on(
      'data',
      (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)),
    );
    child.stdin.on('error', () => undefined);
    res.on('close', () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const exited = new Promise<number | null>((resolve) =>
      child.once('close', (code) => resolve(code)),
    );
    const feeding = (async () => {
      if (!iter) return child.stdin.end();
      let seen = head.length;
      if (head.length) child.stdin.write(head);
      for (;;) {
        const next = await iter.next();
        if (next.done) break;
        seen += next.value.length;
        if (seen > limit) {
          child.kill('SIGKILL');
          throw new Error(`request larger than ${limit} bytes`);
        }
        if (!child.stdin.write(next.value))
          await Promise.race([once(child.stdin, 'drain'), exited]);
      }
      child.stdin.end();
    })();
    feeding.catch((err: Error) =>
      this.o.log('git endpoint: request body', { error: err.message }),
    );
    await this.relay(child.stdout, res);
    const code = await exited;
    clearTimeout(timer);
    if (code !== 0)
      this.o.log('git endpoint: git http-backend failed', {
        code,
        route: `${r.method} ${r.sub}`,
        error: stderr.trim().split('\n').slice(-2).join(' | '),
      });
  }

  /** Copies the CGI response: `Status:` and headers first, then the body as it comes. */
  private async relay(out: Readable, res: ServerResponse): Promise<void> {
    let head = Buffer.alloc(0);
    for await (const chunk of out as AsyncIterable<Buffer>) {
      if (res.headersSent) {
        if (!res.write(chunk)) await once(res, 'drain');
        continue;
      }
      head = Buffer.concat([head, chunk]);
      let sep = head.indexOf('\r\n\r\n');
      let sepLen = 4;
      if (sep < 0) {
        sep = head.indexOf('\n\n');
        sepLen = 2;
      }
      if (sep < 0) {
        if (head.length > 64 * 1024)
          throw new Error('git http-backend sent no header block');
        continue;
      }
      let status = 200;
      const headers: Record<string, string> = { 'Cache-Control': 'no-store' };
      for (const line of head.toString('latin1', 0, sep).split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i <= 0) continue;
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status')
          status = Number(v.split(' ')[0]) || 500;
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      const rest = head.subarray(sep + sepLen);
      if (rest.length && !res.write(rest)) await once(res, 'drain');
    }
    if (!res.headersSent) {
      res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8' });
      return void res.end('git http-backend ended without a response\n');
    }
    res.end();
  }
}

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { SupervisorError } from '../supervisor/errors.js';
import { errorBody, type DashRequest, type DashResponse } from './http.js';

export const SESSION_COOKIE = 'supervisor_session';
export const CSRF_HEADER = 'x-supervisor-csrf';

export interface SecurityOptions {
  /** SUPERVISOR_DASHBOARD_TOKEN; without it the dashboard only binds to loopback. */
  token: string | undefined;
  readOnly: boolean;
  host: string;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/** Refuses to serve on a non-loopback address without a token (checked before binding). */
export function checkListenAddress(
  host: string,
  token: string | undefined,
): void {
  if (isLoopbackHost(host) || token) return;
  throw new SupervisorError(
    'ERR_SUP_CONFIG',
    `the dashboard would listen on ${host}, which is reachable from other machines, and no token is set`,
    {
      hint: 'set SUPERVISOR_DASHBOARD_TOKEN to a secret of 16+ characters (e.g. `openssl rand -hex 24`), or keep the dashboard on 127.0.0.1 (the default)',
    },
  );
}

const safeEqual = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export function parseCookies(
  header: string | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const k = part.slice(0, i).trim();
    try {
      out[k] = decodeURIComponent(part.slice(i + 1).trim());
    } catch {
      /* a malformed cookie is no cookie */
    }
  }
  return out;
}

export type AuthMethod = 'none' | 'bearer' | 'cookie';

/**
 * The dashboard's rules, in one place and free of express:
 * - with a token, every request needs `Authorization: Bearer <token>` or the session cookie the
 *   login form sets (an HMAC of the token, HttpOnly, SameSite=Lax);
 * - without a token the server only listens on loopback, and only answers requests whose Host is
 *   a loopback name (a DNS-rebinding page cannot reach it through its own domain);
 * - state-changing requests come from our own origin: a non-GET must not carry a foreign Origin,
 *   and our API's POSTs must carry the CSRF token (double-submit: the page gets it in a meta tag,
 *   a cross-site page cannot read it), unless authorised by a bearer header, which browsers never
 *   attach on their own;
 * - read-only: every write is refused (403), Bull Board's included.
 */
export class DashboardSecurity {
  /** Per server start; a page served before a restart gets a new one on reload. */
  readonly csrfToken = randomBytes(24).toString('base64url');
  private readonly sessionValue: string | undefined;

  constructor(private readonly o: SecurityOptions) {
    this.sessionValue = o.token
      ? createHmac('sha256', o.token)
          .update('agent-supervisor dashboard session v1')
          .digest('base64url')
      : undefined;
  }

  get requiresToken(): boolean {
    return this.o.token !== undefined;
  }

  get readOnly(): boolean {
    return this.o.readOnly;
  }

  authenticate(req: Pick<DashRequest, 'headers'>): AuthMethod | undefined {
    if (!this.o.token) return 'none';
    const auth = req.headers.authorization;
    const m = auth ? /^Bearer\s+(.+)$/i.exec(auth.trim()) : null;
    if (m?.[1] && safeEqual(m[1], this.o.token)) return 'bearer';
    const cookie = parseCookies(req.headers.cookie)[SESSION_COOKIE];
    if (cookie && this.sessionValue && safeEqual(cookie, this.sessionValue))
      return 'cookie';
    return undefined;
  }

  checkLogin(token: unknown): boolean {
    return (
      typeof token === 'string' &&
      this.o.token !== undefined &&
      safeEqual(token, this.o.token)
    );
  }

  sessionCookie(): string {
    return `${SESSION_COOKIE}=${this.sessionValue ?? ''}; Path=/; HttpOnly; SameSite=Lax`;
  }

  clearedCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0`;
  }

  /** DNS rebinding: without a token, only loopback names (or the configured host) may address us. */
  hostAllowed(hostHeader: string | undefined): boolean {
    if (this.o.token) return true;
    if (!hostHeader) return false;
    const name = hostHeader.replace(/:\d+$/, '');
    return (
      isLoopbackHost(name) || name.toLowerCase() === this.o.host.toLowerCase()
    );
  }

  /** A request's Origin (or Referer) is ours, or the request is not from a page at all. */
  sameOrigin(req: Pick<DashRequest, 'headers'>): boolean {
    const host = req.headers.host;
    const origin =
      req.headers.origin ??
      (req.headers.referer ? safeOrigin(req.headers.referer) : undefined);
    if (origin === undefined) {
      // Browsers send Origin on every cross-site write; Sec-Fetch-Site confirms where one came from.
      const site = req.headers['sec-fetch-site'];
      return site === undefined || site === 'same-origin' || site === 'none';
    }
    // `Origin: null` (privacy settings, sandboxed frames): trust only the browser's own Sec-Fetch-Site.
    if (origin === 'null')
      return req.headers['sec-fetch-site'] === 'same-origin';
    if (!host) return false;
    try {
      return new URL(origin).host.toLowerCase() === host.toLowerCase();
    } catch {
      return false;
    }
  }

  /**
   * Gatekeeping for every request; undefined lets it through. `kind` tells our API's writes
   * (CSRF token required) from Bull Board's (its UI sends none; Origin and SameSite cover it).
   */
  guard(
    req: Pick<DashRequest, 'method' | 'path' | 'headers'>,
    kind: 'page' | 'api' | 'write' | 'queues' | 'login',
  ): DashResponse | undefined {
    if (!this.hostAllowed(req.headers.host)) {
      return errorBody(
        403,
        'this dashboard only answers on a loopback address (127.0.0.1 / localhost)',
        { code: 'ERR_DASHBOARD_HOST' },
      );
    }
    const write =
      req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS';
    if (kind === 'login')
      return write && !this.sameOrigin(req)
        ? errorBody(403, 'cross-site login refused', {
            code: 'ERR_DASHBOARD_CSRF',
          })
        : undefined;
    const auth = this.authenticate(req);
    if (!auth)
      return {
        status: 401,
        body: {
          error:
            'authentication required: send Authorization: Bearer <token>, or log in at /login',
          code: 'ERR_DASHBOARD_AUTH',
        },
        type: 'json',
        headers: { 'WWW-Authenticate': 'Bearer realm="agent-supervisor"' },
      };
    if (!write) return undefined;
    if (this.o.readOnly)
      return errorBody(403, 'the dashboard is read-only (--read-only)', {
        code: 'ERR_DASHBOARD_READ_ONLY',
      });
    if (!this.sameOrigin(req))
      return errorBody(
        403,
        'cross-site request refused (Origin does not match)',
        { code: 'ERR_DASHBOARD_CSRF' },
      );
    if (kind === 'write' && auth !== 'bearer') {
      const sent = req.headers[CSRF_HEADER];
      if (!sent || !safeEqual(sent, this.csrfToken)) {
        return errorBody(
          403,
          `missing or wrong CSRF token (send the ${CSRF_HEADER} header from GET /api/session)`,
          { code: 'ERR_DASHBOARD_CSRF' },
        );
      }
    }
    return undefined;
  }
}

function safeOrigin(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

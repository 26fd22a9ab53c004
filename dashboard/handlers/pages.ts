import { randomBytes } from 'node:crypto';
import type { DashboardDeps } from '../deps.js';
import type { DashRequest, DashResponse } from '../http.js';
import { renderLogin, renderPage } from '../page/layout.js';
import { REVIEW_SCRIPT, REVIEW_STYLE } from '../page/review.js';
import { SCRIPT } from '../page/script.js';
import { STYLE } from '../page/style.js';

const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** GET / — the Parallel Agents page, rendered with the current state. */
export const page = (d: DashboardDeps) => async (): Promise<DashResponse> => ({
  status: 200,
  type: 'html',
  body: renderPage(await d.hub.snapshot(), {
    csrfToken: d.security.csrfToken,
    loggedIn: d.security.requiresToken,
  }),
  headers: { 'Content-Security-Policy': PAGE_CSP },
});

export const stylesheet = (): DashResponse => ({
  status: 200,
  type: 'css',
  body: STYLE + REVIEW_STYLE,
});
export const script = (): DashResponse => ({
  status: 200,
  type: 'js',
  body: SCRIPT + REVIEW_SCRIPT,
});

/** The login form, also what an unauthenticated browser gets instead of a page (status 401). */
export function loginForm(status: number, error?: string): DashResponse {
  const nonce = randomBytes(16).toString('base64');
  return {
    status,
    type: 'html',
    body: renderLogin({ nonce, ...(error ? { error } : {}) }),
    headers: {
      'Content-Security-Policy': `default-src 'none'; style-src 'nonce-${nonce}'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
    },
  };
}

/** GET /login */
export const getLogin = (d: DashboardDeps) => (): DashResponse =>
  d.security.requiresToken ? loginForm(200) : redirect('/');

/** POST /login (form: token) — sets the session cookie. */
export const postLogin =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    if (!d.security.requiresToken) return redirect('/');
    const token = (req.body as { token?: unknown } | undefined)?.token;
    if (!d.security.checkLogin(token)) {
      d.log('dashboard: failed login');
      return loginForm(401, 'That token is not right.');
    }
    return {
      ...redirect('/'),
      headers: { Location: '/', 'Set-Cookie': d.security.sessionCookie() },
    };
  };

/** POST /logout */
export const postLogout = (d: DashboardDeps) => (): DashResponse => ({
  ...redirect(d.security.requiresToken ? '/login' : '/'),
  headers: {
    Location: d.security.requiresToken ? '/login' : '/',
    'Set-Cookie': d.security.clearedCookie(),
  },
});

function redirect(to: string): DashResponse {
  return {
    status: 303,
    type: 'text',
    body: `See ${to}`,
    headers: { Location: to },
  };
}

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './harness.js';

/** The project's root: the directory of package.json above this module (sources or dist/). */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir)
    dir = dirname(dir);
  return `${dir}/`;
}

const ROOT = projectRoot();

/** The project's own code lives under /tmp (e.g. a CI clone there). */
export const CODE_UNDER_TMP = ROOT.startsWith('/tmp/');

function ip(...args: string[]): string {
  return execFileSync('ip', args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function tryIp(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    /* already gone */
  }
}

export type Link = 'redis' | 'git';

/**
 * A second "host" on this machine (the two-host tests and the lost-host benchmark): a network namespace joined to ours by two veth links, one
 * carrying Redis (10.231.N.0/24) and one carrying git and the dashboard (10.232.N.0/24), so a
 * test can cut either or both. Processes started in it also get a mount namespace in which a
 * fresh tmpfs covers /tmp: the supervisor's repository (and every test's temporary files) are
 * not there. Needs root and iproute2; throws (never skips) when they are missing.
 */
export class SecondHost {
  private constructor(
    readonly ns: string,
    private readonly veths: Record<
      Link,
      { host: string; peer: string; subnet: number }
    >,
  ) {}

  static create(): SecondHost {
    if (process.getuid?.() !== 0)
      throw new Error(
        'the two-host test needs root (network namespaces, veth links, mounts)',
      );
    try {
      ip('-V');
    } catch (err) {
      throw new Error(
        `the two-host test needs iproute2 (\`ip\`): ${(err as Error).message}`,
      );
    }
    const id = randomBytes(3).toString('hex');
    const used = ip('-4', '-o', 'addr');
    let n = 1 + Math.floor(Math.random() * 250);
    while (used.includes(`10.231.${n}.`) || used.includes(`10.232.${n}.`))
      n = (n % 250) + 1;
    const veths = {
      redis: { host: `sr${id}h`, peer: `sr${id}n`, subnet: 231 },
      git: { host: `sg${id}h`, peer: `sg${id}n`, subnet: 232 },
    } as const;
    const ns = `sup-${id}`;
    const host = new SecondHost(ns, {
      redis: { ...veths.redis, subnet: n },
      git: { ...veths.git, subnet: n },
    });
    try {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      for (const [link, v] of Object.entries(veths) as Array<
        [Link, (typeof veths)[Link]]
      >) {
        const prefix = `10.${v.subnet}.${n}`;
        ip('link', 'add', v.host, 'type', 'veth', 'peer', 'name', v.peer);
        ip('link', 'set', v.peer, 'netns', ns);
        ip('addr', 'add', `${prefix}.1/24`, 'dev', v.host);
        ip('link', 'set', v.host, 'up');
        ip('-n', ns, 'addr', 'add', `${prefix}.2/24`, 'dev', v.peer);
        ip('-n', ns, 'link', 'set', v.peer, 'up');
        void link;
      }
    } catch (err) {
      host.destroy();
      throw new Error(
        `could not build the second host: ${(err as Error).message}`,
      );
    }
    return host;
  }

  /** Our address on a link (what the second host connects to). */
  hostAddress(link: Link): string {
    return `10.${link === 'redis' ? 231 : 232}.${this.veths[link].subnet}.1`;
  }

  /** The second host's address on a link. */
  remoteAddress(link: Link): string {
    return `10.${link === 'redis' ? 231 : 232}.${this.veths[link].subnet}.2`;
  }

  /**
   * Cuts a link on our side: the second host's packets are dropped (its connections hang, as
   * across a real partition, rather than failing at once).
   */
  down(link: Link): void {
    ip('link', 'set', this.veths[link].host, 'down');
  }

  up(link: Link): void {
    ip('link', 'set', this.veths[link].host, 'up');
  }

  /**
   * The wrapper that runs a command on the second host: its network namespace, and a private
   * mount namespace with an empty tmpfs over /tmp.
   */
  wrapper(): string[] {
    // When the project itself lives under /tmp (a CI clone), its code is bound back in at the same
    // path after /tmp is covered: the second host runs our runner but still cannot see the repository.
    const code = CODE_UNDER_TMP ? ROOT.replace(/\/$/, '') : '';
    const script = [
      'set -e',
      'code="$1"; shift',
      'if [ -n "$code" ]; then mkdir -p /run/second-host-code; mount --bind "$code" /run/second-host-code; fi',
      'mount -t tmpfs -o size=256m tmpfs /tmp',
      'if [ -n "$code" ]; then mkdir -p "$code"; mount --bind /run/second-host-code "$code"; fi',
      'exec "$@"',
    ].join('\n');
    return [
      'ip',
      'netns',
      'exec',
      this.ns,
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'second-host',
      code,
    ];
  }

  /** Runs a command on the second host and returns its output (for checks). */
  async run(
    cmd: string[],
    timeoutMs = 10_000,
  ): Promise<{ code: number | null; out: string }> {
    const [w, ...wargs] = this.wrapper();
    const child = spawn(w!, [...wargs, ...cmd], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number | null>((r) =>
      child.once('close', r),
    );
    clearTimeout(timer);
    return { code, out };
  }

  /** Removes the links and the namespace (processes still in it are killed first). */
  destroy(): void {
    try {
      const pids = ip('netns', 'pids', this.ns).split('\n').filter(Boolean);
      for (const p of pids) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    } catch {
      /* no namespace */
    }
    tryIp('link', 'del', this.veths.redis.host);
    tryIp('link', 'del', this.veths.git.host);
    tryIp('netns', 'del', this.ns);
  }
}

/**
 * A redis-server of our own, bound to one address (never 127.0.0.1:6379); with an fsync'd AOF
 * unless `aof` is false (the benchmark, which restarts nothing).
 */
export class BoundRedis {
  private child: ReturnType<typeof spawn> | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'sup-redis-'));

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly opts: { aof?: boolean } = {},
  ) {}

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  async start(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      this.host,
      '--dir',
      this.dir,
      '--save',
      '',
      ...(this.opts.aof === false
        ? ['--appendonly', 'no']
        : ['--appendonly', 'yes', '--appendfsync', 'always']),
      '--protected-mode',
      'no',
    ];
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    this.child = child;
    await waitUntil(
      () => {
        if (child.exitCode !== null)
          throw new Error(`redis-server exited with ${child.exitCode}`);
        try {
          return (
            execFileSync(
              'redis-cli',
              ['-h', this.host, '-p', String(this.port), 'ping'],
              { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
            ).trim() === 'PONG'
          );
        } catch {
          return false;
        }
      },
      `redis-server on ${this.host}:${this.port}`,
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
}

/** A TCP port nobody listens on at `host` (the kernel's choice), for a server started next. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() =>
        resolve(typeof addr === 'object' && addr ? addr.port : 0),
      );
    });
  });
}

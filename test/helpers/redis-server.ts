import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './cli.js';
import { tempDir } from './repo.js';
import { ping } from '../../supervisor/redis.js';

/** A free port on 127.0.0.1 (one implementation, shared with the benchmark's second host). */
export { freePort } from '../../bench/lib/netns.js';
import { freePort } from '../../bench/lib/netns.js';

/** A private redis-server for tests that stop or restart Redis (never the shared one). */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  readonly dir = tempDir('sup-redis-');

  constructor(
    readonly port: number,
    private readonly persistence: 'aof' | 'none',
    /** Required of every client (`--requirepass`) when set. */
    private readonly password?: string,
    /** Where it listens: loopback, or every address (for containers on a bridge network). */
    private readonly bind = '127.0.0.1',
  ) {}

  static async create(
    persistence: 'aof' | 'none' = 'aof',
    opts: { password?: string; bind?: string } = {},
  ): Promise<PrivateRedis> {
    return new PrivateRedis(
      await freePort(),
      persistence,
      opts.password,
      opts.bind,
    );
  }

  get url(): string {
    return `redis://${this.password ? `:${this.password}@` : ''}127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      this.bind,
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      this.persistence === 'aof' ? 'yes' : 'no',
      '--appendfsync',
      'always',
      ...(this.password ? ['--requirepass', this.password] : []),
    ];
    this.child = spawn('redis-server', args, { stdio: 'ignore' });
    await waitFor(() => ping(this.url), {
      timeoutMs: 10_000,
      what: 'private redis-server',
    });
  }

  private get running(): boolean {
    return (
      !!this.child &&
      this.child.exitCode === null &&
      this.child.signalCode === null
    );
  }

  /** Deletes its data while it is stopped: the next start is what a restart without persistence gives. */
  wipe(): void {
    if (this.running)
      throw new Error('PrivateRedis.wipe() while redis-server runs');
    for (const f of readdirSync(this.dir))
      rmSync(join(this.dir, f), { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || !this.running) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
}

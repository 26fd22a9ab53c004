/**
 * The attacker of the container isolation tests: what a prompt-injected agent would try from
 * inside its runner's container (Docker runtime, Swarm task). It writes what it found into
 * probe-report.txt and everything it could read into probe-dump.txt; both become its commit,
 * and `expectIsolated` reads them from the result.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { cliJson, waitFor } from '../helpers/cli.js';
import { git } from '../helpers/repo.js';

/** The probe as a shell script; Redis is the queue's, as the container reaches it. */
export function probeScript(redis: { host: string; port: number }): string {
  return `#!/bin/sh
out=probe-report.txt
dump=probe-dump.txt
: > "$out"; : > "$dump"
echo "agent-uid $(id -u)" >> "$out"
echo "agent-capeff $(awk '/^CapEff:/ { print $2 }' /proc/self/status)" >> "$out"
env >> "$dump"
for p in /proc/[0-9]*; do
  pid=\${p#/proc/}
  [ "$pid" = "$$" ] && continue
  cmd=$(tr '\\0' ' ' < "$p/cmdline" 2>/dev/null)
  uid=$(awk '/^Uid:/ { print $2 }' "$p/status" 2>/dev/null)
  case "$cmd" in
    *agent-runner/main.js*)
      echo "runner-uid $uid" >> "$out"
      if kill -0 "$pid" 2>/dev/null; then echo "signal-runner: allowed" >> "$out"; else echo "signal-runner: refused" >> "$out"; fi ;;
  esac
  if tr '\\0' '\\n' < "$p/environ" >> "$dump" 2>/dev/null; then echo "environ-readable $pid $uid $cmd" >> "$out"; fi
done
if cat /proc/1/environ > /dev/null 2>&1; then echo "proc1-environ: readable" >> "$out"; else echo "proc1-environ: refused" >> "$out"; fi
cat /proc/self/environ /app/*.json 2>/dev/null | tr '\\0' '\\n' >> "$dump"
# Docker and Swarm secrets, Kubernetes' mounted configuration and credentials.
for f in /run/secrets/* /etc/agent-supervisor/runner/* /var/run/secrets/agent-supervisor/*; do
  [ -e "$f" ] || continue
  if cat "$f" >> "$dump" 2>/dev/null; then echo "secret-readable $f" >> "$out"; else echo "secret-refused $f" >> "$out"; fi
done
# Files mounted one by one into the container (the runner's log is one): appended to, they
# would forge what the supervisor shows.
awk '{ print $5 }' /proc/self/mountinfo | while read -r m; do
  case "$m" in /proc/*|/sys/*|/dev/*|/etc/hosts|/etc/hostname|/etc/resolv.conf) continue ;; esac
  [ -d "$m" ] && continue
  if printf 'forged-by-agent\\n' >> "$m" 2>/dev/null; then echo "mounted-file-writable $m"; else echo "mounted-file-refused $m"; fi >> "$out"
done
if ls /run/agent-supervisor > /dev/null 2>&1; then echo "runner-dir: readable" >> "$out"; else echo "runner-dir: refused" >> "$out"; fi
node -e '
const s = require("net").connect(${redis.port}, "${redis.host}");
let buf = "";
s.on("connect", () => s.write("KEYS *\\r\\nSET forged 1\\r\\n"));
s.on("data", (d) => { buf += d; if (buf.split("\\r\\n").length > 2) s.end(); });
s.on("end", () => { require("fs").appendFileSync("probe-report.txt", buf.split("\\r\\n").filter(Boolean).map((l) => "redis: " + l).join("\\n") + "\\n"); });
s.on("error", (e) => { require("fs").appendFileSync("probe-report.txt", "redis-error: " + e.code + "\\n"); });
setTimeout(() => process.exit(0), 10000).unref();
'
exit 0
`;
}

/**
 * What the probe must have found: a uid of its own, no environment but its own processes', no
 * secret, no mounted file it can write, a signal to the runner refused, and Redis refusing it
 * (it reaches the port) — and none of `secrets` anywhere in what it could read.
 */
export function expectIsolated(
  report: string,
  dump: string,
  secrets: readonly string[],
): string[] {
  const lines = report.split('\n');
  const agentUid = Number(
    lines.find((l) => l.startsWith('agent-uid '))!.slice(10),
  );
  const runnerUid = Number(
    lines.find((l) => l.startsWith('runner-uid '))!.slice(11),
  );
  expect(agentUid, report).toBeGreaterThan(0);
  expect(runnerUid, report).not.toBe(agentUid);
  expect(lines).toContain('agent-capeff 0000000000000000');
  expect(lines).toContain('proc1-environ: refused');
  expect(lines).toContain('signal-runner: refused');
  expect(lines).toContain('runner-dir: refused');
  // The only environments it can read are its own processes'.
  for (const l of lines.filter((x) => x.startsWith('environ-readable ')))
    expect(l.split(' ')[2], l).toBe(String(agentUid));
  expect(lines.filter((l) => l.startsWith('secret-readable '))).toEqual([]);
  expect(lines.filter((l) => l.startsWith('mounted-file-writable '))).toEqual(
    [],
  );
  // Nothing it could read holds the runner's configuration or a credential.
  expect(dump).not.toContain('SUPERVISOR_RUNNER_CONFIG');
  expect(dump).not.toContain('"redisUrl"');
  for (const s of secrets) {
    expect(dump).not.toContain(s);
    expect(report).not.toContain(s);
  }
  // It reaches the port (the runner's network is its network), but Redis refuses it.
  expect(lines.filter((l) => l.startsWith('redis'))).toEqual([
    'redis: -NOAUTH Authentication required.',
    'redis: -NOAUTH Authentication required.',
  ]);
  return lines;
}

/** Commits the probe into the repository the agents work on. */
export function commitProbe(
  dir: string,
  redis: { host: string; port: number },
): void {
  writeFileSync(join(dir, 'probe.sh'), probeScript(redis));
  git(dir, 'add', 'probe.sh');
  git(dir, 'commit', '-qm', 'probe');
}

/**
 * Adds an issue the agent answers by running the probe (its command runs `sh probe.sh` for this
 * title), waits until it is done, and returns what the probe committed.
 */
export async function runProbeIssue(
  dir: string,
  env: Record<string, string>,
  opts: {
    title?: string;
    timeoutMs?: number;
    /** What to show when it does not finish (the supervisor's output, runner logs). */
    diagnose: () => Promise<string>;
  },
): Promise<{ report: string; dump: string }> {
  const added = await cliJson<{ id: number }>(
    ['issue', 'add', opts.title ?? 'Look around'],
    { cwd: dir, env },
  );
  const issue = await waitFor(
    async () => {
      const i = await cliJson<{
        status: string;
        commit: string | null;
        error: string | null;
      }>(['issue', 'show', String(added.id)], { cwd: dir, env });
      return i.status === 'done' || i.status === 'failed' ? i : false;
    },
    {
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      what: 'the probe finished',
    },
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await opts.diagnose()}`);
  });
  expect(issue.status, issue.error ?? '').toBe('done');
  return {
    report: git(dir, 'show', `${issue.commit}:probe-report.txt`),
    dump: git(dir, 'show', `${issue.commit}:probe-dump.txt`),
  };
}

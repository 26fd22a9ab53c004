/**
 * Issue 13 item 9, against the real engine: `supervisor image build --ca-file --npm-registry`
 * behind a private registry that only a private CA vouches for. The registry here is an HTTPS
 * server of the test's own, on the engine's bridge, with a certificate from a CA made for the
 * test: npm in the build reaches it only when the registry URL reached the build and the CA is
 * trusted there (otherwise it would try the public registry, or fail the TLS handshake, and no
 * request would arrive). It answers 404, so the build fails: the command says so, and the
 * failed step leaves no container behind.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/repo.js';
import { describeDocker, docker } from './helpers.js';

/**
 * The engine's bridge address on the host, where build containers reach it (read with `ip`:
 * Node lists no interface that is down, as docker0 is while no container uses it).
 */
function bridgeAddress(): string | undefined {
  try {
    const out = execFileSync('ip', ['-4', '-o', 'addr', 'show', 'docker0'], {
      encoding: 'utf8',
    });
    return / inet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** A CA and a server certificate it signed for `ip`; the files' paths. */
function makeCertificates(dir: string, ip: string) {
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) =>
    execFileSync('openssl', args, { stdio: 'pipe' });
  ssl(
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-subj', '/CN=agent-supervisor test CA',
    '-keyout', f('ca.key'), '-out', f('ca.pem'),
  ); // prettier-ignore
  ssl(
    'req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${ip}`,
    '-keyout', f('server.key'), '-out', f('server.csr'),
  ); // prettier-ignore
  writeFileSync(f('san.ext'), `subjectAltName=IP:${ip}\n`);
  ssl(
    'x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'),
    '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1',
    '-extfile', f('san.ext'), '-out', f('server.pem'),
  ); // prettier-ignore
  return { ca: f('ca.pem'), key: f('server.key'), cert: f('server.pem') };
}

/** Containers a build with AGENT_PACKAGES=`pkg` ran (a failed step's, left behind). */
async function buildContainers(pkg: string): Promise<string[]> {
  const found: string[] = [];
  for (const c of await docker.listContainers({ all: true })) {
    const info = await docker
      .getContainer(c.Id)
      .inspect()
      .catch(() => undefined);
    if (info?.Config.Env?.includes(`AGENT_PACKAGES=${pkg}`)) found.push(c.Id);
  }
  return found;
}

const ip = bridgeAddress();
let server: Server | undefined;
let port = 0;
const requests: string[] = [];
let certs: ReturnType<typeof makeCertificates>;

describeDocker(
  'supervisor image build with a private registry and CA (real engine)',
  () => {
    beforeAll(async () => {
      if (!ip) throw new Error('no docker0 bridge address on this host');
      certs = makeCertificates(tempDir('sup-image-ca-'), ip);
      server = createServer(
        { key: readFileSync(certs.key), cert: readFileSync(certs.cert) },
        (req, res) => {
          requests.push(`${req.method} ${req.url}`);
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end('{"error":"not found"}');
        },
      );
      await new Promise<void>((r) => server!.listen(0, ip, r));
      port = (server.address() as { port: number }).port;
    });

    afterAll(() => {
      server?.close();
    });

    it('npm in the build asks the given registry over TLS the CA vouches for; the failed build is an error and leaves no container', async () => {
      // A package name no registry has; it also finds the build's step containers.
      const pkg = `sup-test-${randomBytes(6).toString('hex')}`;
      const tag = `agent-supervisor-test/ca-build:${pkg}`;
      const r = await runCli(
        [
          'image',
          'build',
          '--tag',
          tag,
          '--base-image',
          'local/node20:bookworm',
          '--agent-packages',
          pkg,
          '--ca-file',
          certs.ca,
          '--npm-registry',
          `https://${ip}:${port}/`,
        ],
        { cwd: tempDir('sup-image-cwd-'), timeoutMs: 600_000 },
      );
      const leftover = await buildContainers(pkg);
      // Whatever the outcome, nothing of this build stays on the engine.
      for (const id of leftover)
        await docker
          .getContainer(id)
          .remove({ force: true })
          .catch(() => undefined);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/docker build exited with code \d+/);
      expect(requests, r.stderr).toContain(`GET /${pkg}`);
      expect(leftover).toEqual([]);
      await expect(docker.getImage(tag).inspect()).rejects.toMatchObject({
        statusCode: 404,
      });
    }, 660_000);
  },
);

/**
 * `supervisor image build` behind a TLS-intercepting proxy or with a private registry: the CA
 * bundle and the registry reach the build (`--ca-file`, `--npm-registry`, or the host's npm
 * configuration), a failed step leaves no container behind (`--force-rm`), bad values are usage
 * errors. The docker CLI is a recording stand-in (SUPERVISOR_DOCKER), as in the infra tests.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/repo.js';

const PEM =
  '-----BEGIN CERTIFICATE-----\nMIIBfakeCorporateProxyCA\n-----END CERTIFICATE-----\n';

/** A docker stand-in that records its argv (NUL-separated) and exits with `code`. */
function fakeDocker(
  dir: string,
  code: number,
): { bin: string; args: () => string[] } {
  const calls = join(dir, 'argv');
  const bin = join(dir, 'docker');
  writeFileSync(
    bin,
    `#!/bin/sh\nfor a in "$@"; do printf '%s\\0' "$a"; done > ${JSON.stringify(calls)}\nexit ${code}\n`,
  );
  chmodSync(bin, 0o755);
  return {
    bin,
    args: () => readFileSync(calls, 'utf8').split('\0').slice(0, -1),
  };
}

/** The value of `--build-arg NAME=…`, if passed. */
function buildArg(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length - 1; i++)
    if (args[i] === '--build-arg' && args[i + 1]!.startsWith(`${name}=`))
      return args[i + 1]!.slice(name.length + 1);
  return undefined;
}

describe('supervisor image build: CA bundle, registry, cleanup', () => {
  it('passes --ca-file and --npm-registry to the build, removes containers of failed steps, and names the file instead of printing it', async () => {
    const dir = tempDir('sup-image-');
    const ca = join(dir, 'corp-ca.pem');
    writeFileSync(ca, PEM);
    const docker = fakeDocker(dir, 0);
    const r = await runCli(
      [
        'image',
        'build',
        '--tag',
        'test/runner:ca',
        '--ca-file',
        ca,
        '--npm-registry',
        'https://npm.corp.example/',
      ],
      { cwd: dir, env: { SUPERVISOR_DOCKER: docker.bin } },
    );
    expect(r.code, r.stderr).toBe(0);
    const args = docker.args();
    expect(args[0]).toBe('build');
    expect(buildArg(args, 'NPM_CA_PEM')).toBe(PEM);
    expect(buildArg(args, 'NPM_REGISTRY')).toBe('https://npm.corp.example/');
    expect(args).toContain('--force-rm');
    expect(args[args.length - 1]!.replace(/\/$/, '')).toBe(
      ROOT.replace(/\/$/, ''),
    );
    // The progress line names the file; the bundle itself is not printed.
    expect(r.stderr).toContain(`NPM_CA_PEM=<${ca}>`);
    expect(r.stderr).not.toContain('MIIBfakeCorporateProxyCA');
  });

  it("takes both from the host's npm configuration when no flag is given; flags win", async () => {
    const dir = tempDir('sup-image-');
    const ca = join(dir, 'npmrc-ca.pem');
    writeFileSync(ca, PEM);
    const docker = fakeDocker(dir, 0);
    const npmEnv = {
      SUPERVISOR_DOCKER: docker.bin,
      npm_config_cafile: ca,
      npm_config_registry: 'https://registry.corp.example/npm/',
    };
    const r = await runCli(['image', 'build', '--tag', 'test/runner:npmrc'], {
      cwd: dir,
      env: npmEnv,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(buildArg(docker.args(), 'NPM_CA_PEM')).toBe(PEM);
    expect(buildArg(docker.args(), 'NPM_REGISTRY')).toBe(
      'https://registry.corp.example/npm/',
    );
    const flags = await runCli(
      [
        'image',
        'build',
        '--tag',
        'test/runner:npmrc',
        '--npm-registry',
        'https://other.example/',
      ],
      { cwd: dir, env: npmEnv },
    );
    expect(flags.code, flags.stderr).toBe(0);
    expect(buildArg(docker.args(), 'NPM_REGISTRY')).toBe(
      'https://other.example/',
    );
    // The public registry is no setting to pass on.
    const plain = await runCli(
      ['image', 'build', '--tag', 'test/runner:plain'],
      {
        cwd: dir,
        env: {
          SUPERVISOR_DOCKER: docker.bin,
          npm_config_registry: 'https://registry.npmjs.org/',
          npm_config_cafile: '',
        },
      },
    );
    expect(plain.code, plain.stderr).toBe(0);
    expect(buildArg(docker.args(), 'NPM_REGISTRY')).toBeUndefined();
    expect(buildArg(docker.args(), 'NPM_CA_PEM')).toBeUndefined();
  });

  it('refuses an unreadable or non-PEM CA file and a registry that is not a URL before building; a failed build is an error', async () => {
    const dir = tempDir('sup-image-');
    const docker = fakeDocker(dir, 0);
    const env = { SUPERVISOR_DOCKER: docker.bin };
    const missing = await runCli(
      ['image', 'build', '--ca-file', join(dir, 'nope.pem')],
      { cwd: dir, env },
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(
      /cannot read the CA bundle .*nope\.pem: ENOENT/,
    );
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate\n');
    const junk = await runCli(
      ['image', 'build', '--ca-file', join(dir, 'junk.pem')],
      { cwd: dir, env },
    );
    expect(junk.code).toBe(2);
    expect(junk.stderr).toMatch(/holds no PEM certificate/);
    const reg = await runCli(['image', 'build', '--npm-registry', 'corp npm'], {
      cwd: dir,
      env,
    });
    expect(reg.code).toBe(2);
    expect(reg.stderr).toMatch(/--npm-registry must be an http\(s\) URL/);
    const failing = fakeDocker(tempDir('sup-image-'), 3);
    const failed = await runCli(['image', 'build'], {
      cwd: dir,
      env: { SUPERVISOR_DOCKER: failing.bin },
    });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/docker build exited with code 3/);
    expect(failing.args()).toContain('--force-rm');
  });
});

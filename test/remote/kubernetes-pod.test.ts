/**
 * deploy/kubernetes/statefulset.yaml's runner container, run as a kubelet would run it but by
 * the local Docker engine (no cluster is reachable here): its user and capabilities, its
 * environment (pod name, ConfigMap and Secret keys), the ConfigMap's runner.json and the git
 * token mounted with the volumes' modes and root's ownership (no fsGroup), an empty cache
 * volume, a tmpfs /tmp. The runner.json comes from `supervisor runner-config`, as the
 * documentation says to make it. The container attacker of test/security/agent-probe.ts, as
 * the pod's agent, then finds nothing of the runner's and gets NOAUTH from the queue's Redis.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { useCleanups } from '../helpers/cleanup.js';
import { ROOT, runCli, startSupervisor, testEnv } from '../helpers/cli.js';
import { PrivateRedis } from '../helpers/redis-server.js';
import { tempDir, tempRepo } from '../helpers/repo.js';
import {
  commitProbe,
  expectIsolated,
  runProbeIssue,
} from '../security/agent-probe.js';
import {
  IMAGE_BUILD_TIMEOUT_MS,
  RUNNER_IMAGE,
  describeDocker,
  ensureRunnerImage,
} from '../docker/helpers.js';

const cleanups = useCleanups();
const PASSWORD = `pw${randomBytes(12).toString('hex')}`;
const GIT_TOKEN = `git-${randomBytes(12).toString('hex')}`;
type Obj = Record<string, any>;

function manifest(file: string): Obj {
  const docs = parseAllDocuments(
    readFileSync(join(ROOT, 'deploy/kubernetes', file), 'utf8'),
    { version: '1.1' },
  );
  return docs[0]!.toJS() as Obj;
}

let redis: PrivateRedis;

describeDocker(
  'deploy/kubernetes: the runner container as the StatefulSet describes it',
  () => {
    beforeAll(async () => {
      await ensureRunnerImage();
      redis = await PrivateRedis.create('none', { password: PASSWORD });
      await redis.start();
    }, IMAGE_BUILD_TIMEOUT_MS + 60_000);

    afterAll(() => redis?.stop());

    it("its agent reads neither the mounted configuration, the token nor the runner's environment, and gets NOAUTH", async () => {
      const sts = manifest('statefulset.yaml');
      // The ConfigMap's example runner.json says where the cache and the token are, and who
      // the agent is: runner-config is asked for the same.
      const example = JSON.parse(
        manifest('configmap.yaml').data['runner.json'],
      );
      const pod = sts.spec.template.spec;
      const c = pod.containers[0];
      // The container's settings over the pod's, as Kubernetes applies them.
      const sc = { ...pod.securityContext, ...c.securityContext };
      const fsGroup: number | undefined = pod.securityContext?.fsGroup;
      const repo = tempRepo();
      cleanups.push(repo.cleanup);
      commitProbe(repo.dir, { host: '127.0.0.1', port: redis.port });
      const env = testEnv({
        REDIS_URL: redis.url,
        SUPERVISOR_AGENT_COMMAND: 'sh probe.sh',
        SUPERVISOR_GIT_TOKEN: GIT_TOKEN,
      });
      delete env.SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS;
      // The supervisor feeds and records, and serves git at its dashboard; the pod runs the slot.
      const sup = await startSupervisor(repo.dir, env, ['--agents', '0']);
      cleanups.push(async () => void (await sup.stop()));

      // Files as the kubelet writes a volume's items: root's, with the volume's defaultMode.
      const volumes = new Map<string, Obj>(
        pod.volumes.map((v: Obj) => [v.name, v]),
      );
      const mounts: string[] = [];
      for (const m of c.volumeMounts as Obj[]) {
        const v = volumes.get(m.name);
        const dir = tempDir(`sup-pod-${m.name}-`);
        chmodSync(dir, 0o755);
        if (v?.emptyDir) {
          mounts.push('--tmpfs', `${m.mountPath}:mode=1777`);
          continue;
        }
        if (v?.configMap || v?.secret) {
          const src = v.configMap ?? v.secret;
          for (const item of src.items as Obj[]) {
            let text: string;
            if (v.configMap) {
              const printed = await runCli(
                [
                  'runner-config',
                  '--cache-dir',
                  example.git.cacheDir,
                  '--credentials-file',
                  example.git.credentialsFile,
                  ...(example.agentUser
                    ? [
                        '--agent-user',
                        `${example.agentUser.uid}:${example.agentUser.gid}`,
                      ]
                    : []),
                ],
                { cwd: repo.dir, env },
              );
              expect(printed.code, printed.stderr).toBe(0);
              text = printed.stdout;
            } else text = GIT_TOKEN;
            const file = join(dir, item.path);
            writeFileSync(file, text);
            // With an fsGroup the kubelet gives read-only volumes to that group, readable by it.
            chownSync(file, 0, fsGroup ?? 0);
            chmodSync(
              file,
              src.defaultMode | (fsGroup !== undefined ? 0o440 : 0),
            );
          }
        }
        // (The volume claim: an empty directory of root's, or of the fsGroup, group-writable.)
        if (!v && fsGroup !== undefined) {
          chownSync(dir, 0, fsGroup);
          chmodSync(dir, 0o2775);
        }
        mounts.push('-v', `${dir}:${m.mountPath}${m.readOnly ? ':ro' : ''}`);
      }
      const envArgs: string[] = [];
      for (const e of c.env as Obj[]) {
        let value: string | undefined = e.value;
        const ref = e.valueFrom;
        if (ref?.fieldRef?.fieldPath === 'metadata.name')
          value = `${sts.metadata.name}-0`;
        else if (ref?.fieldRef?.fieldPath === 'spec.nodeName')
          value = hostname();
        else if (ref?.configMapKeyRef?.key === 'redis-url') value = redis.url;
        else if (ref?.secretKeyRef) continue; // optional API keys: none here
        expect(value, e.name).toBeDefined();
        envArgs.push('-e', `${e.name}=${value}`);
      }
      const name = `sup-pod-${randomBytes(4).toString('hex')}`;
      execFileSync(
        'docker',
        [
          'run',
          '-d',
          '--name',
          name,
          '--network',
          'host',
          '--user',
          `${sc.runAsUser ?? 0}:${sc.runAsGroup ?? 0}`,
          ...(fsGroup !== undefined ? ['--group-add', String(fsGroup)] : []),
          ...sc.capabilities.drop.flatMap((x: string) => ['--cap-drop', x]),
          ...(sc.capabilities.add ?? []).flatMap((x: string) => [
            '--cap-add',
            x,
          ]),
          ...(sc.allowPrivilegeEscalation === false
            ? ['--security-opt', 'no-new-privileges:true']
            : []),
          ...envArgs,
          ...mounts,
          RUNNER_IMAGE,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      cleanups.push(() => {
        spawnSync('docker', ['rm', '-f', name], { stdio: 'ignore' });
      });

      const { report, dump } = await runProbeIssue(repo.dir, env, {
        timeoutMs: 90_000,
        diagnose: async () =>
          `${sup.output}\n${spawnSync('docker', ['logs', '--tail', '50', name], { encoding: 'utf8' }).stderr}`,
      });
      const lines = expectIsolated(report, dump, [PASSWORD, GIT_TOKEN]);
      expect(lines).toContain(
        'secret-refused /etc/agent-supervisor/runner/runner.json',
      );
      expect(lines).toContain(
        'secret-refused /var/run/secrets/agent-supervisor/git-token',
      );
      expect(lines).toContain(`agent-uid ${example.agentUser?.uid}`);
    }, 300_000);
  },
);

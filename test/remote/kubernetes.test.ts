/**
 * deploy/kubernetes/, validated offline: no cluster is reachable from CI, so the manifests are
 * parsed as Kubernetes parses them (YAML 1.1) and checked against a minimal schema of the
 * fields that matter, and against each other (selectors, volumes, keys). The runner
 * configuration in the ConfigMap is validated by the job contract itself, with the slot id a
 * pod would derive from its name.
 */
import { describe, expect, it } from 'vitest';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { RunnerConfigSchema } from '../../contract/job.js';
import { completeRunnerConfig } from '../../agent-runner/remote-config.js';
import { RUNNER_CAPABILITIES } from '../../supervisor/runtimes/docker.js';
import { ROOT, runCli, testEnv } from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';

const DIR = join(ROOT, 'deploy/kubernetes');
const KEDA = join(ROOT, 'deploy/kubernetes-keda');

type Obj = Record<string, any>;

function load(file: string, dir = DIR): Obj[] {
  const docs = parseAllDocuments(readFileSync(join(dir, file), 'utf8'), {
    version: '1.1',
  });
  return docs.map((d) => {
    expect(
      d.errors,
      `${file}: ${d.errors.map((e) => e.message).join('; ')}`,
    ).toEqual([]);
    return d.toJS() as Obj;
  });
}

/** A minimal schema: dotted paths that must exist, with the type they must have. */
function check(
  obj: Obj,
  where: string,
  fields: Record<string, 'string' | 'number' | 'object' | 'array' | 'boolean'>,
): void {
  for (const [path, type] of Object.entries(fields)) {
    const v = path
      .split('.')
      .reduce<any>(
        (o, k) => (o === undefined || o === null ? undefined : o[k]),
        obj,
      );
    const actual = Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v;
    expect(actual, `${where}: ${path} should be ${type}`).toBe(type);
  }
}

/** What Pod Security's `baseline` level lets a container add (kubernetes.io/docs/concepts/security/pod-security-standards). */
const BASELINE_CAPABILITIES = [
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
];
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const QUANTITY = /^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/;

describe('deploy/kubernetes (offline validation)', () => {
  const kustomization = load('kustomization.yaml')[0]!;
  const objects = (kustomization.resources as string[]).flatMap((f) =>
    load(f).map((o) => ({ file: f, o })),
  );
  const byKind = (kind: string) =>
    objects.filter((x) => x.o.kind === kind).map((x) => x.o);

  it('lists every manifest in the kustomization, each a well-formed object', () => {
    check(kustomization, 'kustomization.yaml', {
      apiVersion: 'string',
      kind: 'string',
      resources: 'array',
    });
    const files = readdirSync(DIR)
      .filter(
        (f) =>
          f.endsWith('.yaml') &&
          f !== 'kustomization.yaml' &&
          !f.endsWith('.example.yaml'),
      )
      .sort();
    expect([...kustomization.resources].sort()).toEqual(files);
    for (const { file, o } of objects) {
      check(o, file, {
        apiVersion: 'string',
        kind: 'string',
        'metadata.name': 'string',
      });
      expect(o.metadata.name, file).toMatch(DNS_LABEL);
    }
    expect(objects.map((x) => x.o.kind).sort()).toEqual([
      'ConfigMap',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Service',
      'StatefulSet',
    ]);
  });

  it('the StatefulSet: stable slot ids from pod ordinals, config and credentials mounted where the runner looks', () => {
    const sts = byKind('StatefulSet')[0]!;
    const svc = byKind('Service')[0]!;
    const cm = byKind('ConfigMap')[0]!;
    // The Secret is created by the user, never applied from here (secret.example.yaml).
    const secret = load('secret.example.yaml')[0]!;
    check(sts, 'StatefulSet', {
      'spec.serviceName': 'string',
      'spec.replicas': 'number',
      'spec.selector.matchLabels': 'object',
      'spec.template.metadata.labels': 'object',
      'spec.template.spec.containers': 'array',
      'spec.template.spec.terminationGracePeriodSeconds': 'number',
    });
    expect(sts.apiVersion).toBe('apps/v1');
    expect(sts.spec.serviceName).toBe(svc.metadata.name);
    expect(svc.spec.clusterIP).toBe('None');
    for (const [k, v] of Object.entries(sts.spec.selector.matchLabels)) {
      expect(sts.spec.template.metadata.labels[k]).toBe(v);
      expect(svc.spec.selector[k]).toBe(v);
    }
    expect(
      sts.spec.template.spec.terminationGracePeriodSeconds,
    ).toBeGreaterThanOrEqual(30);

    const pod = sts.spec.template.spec;
    const c = pod.containers[0];
    check(c, 'container', {
      name: 'string',
      image: 'string',
      env: 'array',
      volumeMounts: 'array',
      'resources.limits.memory': 'string',
    });
    for (const q of [
      ...Object.values(c.resources.limits),
      ...Object.values(c.resources.requests),
    ])
      expect(String(q)).toMatch(QUANTITY);
    const env = new Map<string, any>(c.env.map((e: any) => [e.name, e]));
    expect(env.get('SUPERVISOR_POD_NAME').valueFrom.fieldRef.fieldPath).toBe(
      'metadata.name',
    );
    // Every key a pod reads exists (or is optional).
    for (const e of c.env) {
      const ref = e.valueFrom?.configMapKeyRef ?? e.valueFrom?.secretKeyRef;
      if (!ref || ref.optional) continue;
      const source = e.valueFrom.configMapKeyRef ? cm : secret;
      expect(ref.name).toBe(source.metadata.name);
      expect(
        Object.keys(source.data ?? source.stringData),
        `${e.name} → ${ref.key}`,
      ).toContain(ref.key);
    }
    // Every mount has a volume (or a claim template), and mounted items exist.
    const volumes = new Map<string, any>(
      pod.volumes.map((v: any) => [v.name, v]),
    );
    const claims = new Set(
      (sts.spec.volumeClaimTemplates ?? []).map((t: any) => t.metadata.name),
    );
    for (const m of c.volumeMounts)
      expect(
        volumes.has(m.name) || claims.has(m.name),
        `volume ${m.name}`,
      ).toBe(true);
    const fileAt = (path: string): { volume: any; key: string } => {
      const m = c.volumeMounts.find((x: any) =>
        path.startsWith(`${x.mountPath}/`),
      );
      expect(m, `a mount holding ${path}`).toBeDefined();
      const v = volumes.get(m.name);
      const rel = path.slice(m.mountPath.length + 1);
      const item = (v.configMap ?? v.secret).items.find(
        (i: any) => i.path === rel,
      );
      expect(item, `an item for ${path}`).toBeDefined();
      return { volume: v, key: item.key };
    };
    const configFile = fileAt(env.get('SUPERVISOR_RUNNER_CONFIG_FILE').value);
    expect(configFile.volume.configMap.name).toBe(cm.metadata.name);
    expect(cm.data).toHaveProperty(configFile.key);

    // The runner configuration a pod reads is valid by the job contract, slot from the ordinal.
    const runnerJson = JSON.parse(cm.data[configFile.key]) as Record<
      string,
      unknown
    >;
    const completed = completeRunnerConfig(runnerJson, {
      SUPERVISOR_POD_NAME: 'agent-runner-2',
      SUPERVISOR_SLOT_OFFSET: env.get('SUPERVISOR_SLOT_OFFSET').value,
      SUPERVISOR_REDIS_URL: cm.data['redis-url'],
    });
    const cfg = RunnerConfigSchema.parse(completed);
    expect(cfg.agentId).toBe('agent-003');
    expect(cfg.branch).toBe('agent/003');
    expect(cfg.redisUrl).toBe(cm.data['redis-url']);
    const git = cfg.git;
    expect(git.mode).toBe('remote');
    if (git.mode !== 'remote') return;
    expect(cfg.worktreePath.startsWith(`${git.cacheDir}/agent-003/`)).toBe(
      true,
    );
    expect(
      c.volumeMounts.some(
        (m: any) => git.cacheDir.startsWith(m.mountPath) && claims.has(m.name),
      ),
    ).toBe(true);
    const token = fileAt(git.credentialsFile!);
    expect(token.volume.secret.secretName).toBe(secret.metadata.name);
    expect(secret.stringData).toHaveProperty(token.key);
    // YAML 1.1, as Kubernetes reads it: 0400 is octal. Root's only: the runner reads the
    // configuration and the token, its agent (another uid, no fsGroup) cannot.
    expect(token.volume.secret.defaultMode).toBe(0o400);
    expect(configFile.volume.configMap.defaultMode).toBe(0o400);
    expect(cfg.agentUser?.uid).toBeGreaterThan(0);
    expect(pod.securityContext?.fsGroup).toBeUndefined();
    expect(pod.securityContext?.supplementalGroups ?? []).not.toContain(
      cfg.agentUser?.gid,
    );

    // The liveness probe runs a file the image has.
    const probe = c.livenessProbe.exec.command as string[];
    const script = probe.find((a) => a.startsWith('/app/dist/'))!;
    expect(
      existsSync(
        join(ROOT, script.replace('/app/dist/', '').replace(/\.js$/, '.ts')),
      ),
    ).toBe(true);
  });

  it('parity with the Docker runtime and safe operation: PDB, NetworkPolicy, ephemeral storage, hardening, a liveness probe that survives a Redis outage, no Secret applied', () => {
    const sts = byKind('StatefulSet')[0]!;
    const pod = sts.spec.template.spec;
    const c = pod.containers[0];
    const labels = sts.spec.template.metadata.labels;
    const pdb = byKind('PodDisruptionBudget')[0]!;
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(pdb.spec.maxUnavailable).toBe(1);
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels))
      expect(labels[k]).toBe(v);
    const np = byKind('NetworkPolicy')[0]!;
    for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels))
      expect(labels[k]).toBe(v);
    expect([...np.spec.policyTypes].sort()).toEqual(['Egress', 'Ingress']);
    expect(np.spec.ingress).toEqual([]);
    const ports = np.spec.egress.flatMap((e: any) =>
      e.ports.map((p: any) => p.port),
    );
    expect([...new Set(ports)].sort()).toEqual([443, 53, 6379, 7420].sort());
    const https = np.spec.egress.find((e: any) =>
      e.ports.some((p: any) => p.port === 443),
    );
    expect(https.to[0].ipBlock.except).toContain('169.254.0.0/16');
    expect(https.to[0].ipBlock.except).toContain('10.0.0.0/8');
    // Storage, privileges, processes.
    expect(String(c.resources.limits['ephemeral-storage'])).toMatch(QUANTITY);
    expect(String(c.resources.requests['ephemeral-storage'])).toMatch(QUANTITY);
    const tmp = c.volumeMounts.find((m: any) => m.mountPath === '/tmp');
    const tmpVol = pod.volumes.find((v: any) => v.name === tmp.name);
    expect(tmpVol.emptyDir.sizeLimit).toMatch(QUANTITY);
    // As the Docker runtime's and Swarm's runners: root with only RUNNER_CAPABILITIES (Pod
    // Security `baseline` allows them), its agent under runner.json's agentUser (above).
    expect(c.securityContext).toMatchObject({
      runAsUser: 0,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect([...c.securityContext.capabilities.add].sort()).toEqual(
      [...RUNNER_CAPABILITIES].sort(),
    );
    for (const cap of c.securityContext.capabilities.add)
      expect(BASELINE_CAPABILITIES).toContain(cap);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(c.livenessProbe.exec.command).toContain('--liveness');
    expect(c.readinessProbe.exec.command).not.toContain('--liveness');
    const gitVol = pod.volumes.find((v: any) => v.secret);
    expect(gitVol.secret.optional).toBe(false);
    // Rendered as kubectl renders it: no Secret (so nothing overwrites a real token).
    const rendered = execFileSync('kubectl', ['kustomize', DIR], {
      encoding: 'utf8',
    });
    const kinds = parseAllDocuments(rendered).map(
      (d) => (d.toJS() as Obj).kind,
    );
    expect(kinds).not.toContain('Secret');
    expect(rendered).not.toContain('replace-with-the-supervisor-git-token');
  });

  it('runner-config --agent-user prints the agentUser the ConfigMap carries, and refuses root', async () => {
    const cm = byKind('ConfigMap')[0]!;
    const inConfigMap = JSON.parse(cm.data['runner.json']).agentUser;
    const repo = tempRepo();
    try {
      const args = [
        'runner-config',
        '--git-url',
        'https://supervisor.example.com/git/repo.git',
        '--redis-url',
        'redis://redis.example:6379',
        '--cache-dir',
        '/var/cache/agent-supervisor',
      ];
      const env = testEnv();
      expect((await runCli(['init'], { cwd: repo.dir, env })).code).toBe(0);
      const printed = await runCli(
        [...args, '--agent-user', `${inConfigMap.uid}:${inConfigMap.gid}`],
        { cwd: repo.dir, env },
      );
      expect(printed.code, printed.stderr).toBe(0);
      expect(JSON.parse(printed.stdout).agentUser).toEqual(inConfigMap);
      const root = await runCli([...args, '--agent-user', '0:0'], {
        cwd: repo.dir,
        env,
      });
      expect(root.code).toBe(2);
      // A password is never printed; the runner takes the whole URL from SUPERVISOR_REDIS_URL.
      const withPassword = await runCli(
        [
          ...args.map((a) =>
            a === 'redis://redis.example:6379'
              ? 'redis://:s3cret-passw0rd@redis.example:6379'
              : a,
          ),
          '--agent-user',
          '1000:1000',
        ],
        { cwd: repo.dir, env },
      );
      expect(withPassword.code, withPassword.stderr).toBe(0);
      expect(withPassword.stdout).not.toContain('s3cret-passw0rd');
      expect(withPassword.stderr).toMatch(
        /the Redis password is not printed .* as SUPERVISOR_REDIS_URL/,
      );
      expect(root.stderr).toMatch(
        /--agent-user must be uid:gid with a uid other than 0/,
      );
    } finally {
      repo.cleanup();
    }
  });

  it('the liveness probe passes while Redis does not answer; the readiness probe fails', () => {
    const config = JSON.stringify({
      agentId: 'agent-001',
      redisUrl: 'redis://127.0.0.1:1',
      prefix: 'p',
      queueName: 'q',
      repoPath: '/x',
      worktreePath: '/x/w',
      branch: 'agent/001',
      baseBranch: 'main',
      agentCommand: 'true',
      logDir: '/x/l',
      runDir: '/x/r',
      lease: {},
    });
    const probe = (args: string[]) =>
      spawnSync(
        process.execPath,
        [join(ROOT, 'dist/agent-runner/healthcheck.js'), ...args],
        {
          env: { PATH: process.env.PATH, SUPERVISOR_RUNNER_CONFIG: config },
          encoding: 'utf8',
        },
      );
    const live = probe(['--liveness']);
    expect(live.status, live.stdout).toBe(0);
    expect(live.stdout).toMatch(/alive: Redis does not answer/);
    const ready = probe([]);
    expect(ready.status).toBe(1);
  });
});

describe('deploy/kubernetes-keda (offline validation)', () => {
  const so = load('scaledobject.yaml', KEDA)[0]!;
  const sts = load('statefulset.yaml')[0]!;
  const cm = load('configmap.yaml')[0]!;
  const runner = JSON.parse(cm.data['runner.json']);
  const trigger = (type: string) =>
    (so.spec.triggers as Obj[]).find((t) => t.type === type)!;

  it("a KEDA ScaledObject for the runners' StatefulSet, rendered with the base by kubectl kustomize", () => {
    check(so, 'ScaledObject', {
      apiVersion: 'string',
      kind: 'string',
      'metadata.name': 'string',
      'spec.scaleTargetRef.name': 'string',
      'spec.minReplicaCount': 'number',
      'spec.maxReplicaCount': 'number',
      'spec.pollingInterval': 'number',
      'spec.cooldownPeriod': 'number',
      'spec.triggers': 'array',
      'spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds':
        'number',
    });
    expect(so.apiVersion).toBe('keda.sh/v1alpha1');
    expect(so.kind).toBe('ScaledObject');
    expect(so.spec.scaleTargetRef).toEqual({
      apiVersion: sts.apiVersion,
      kind: sts.kind,
      name: sts.metadata.name,
    });
    expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(0);
    expect(so.spec.maxReplicaCount).toBeGreaterThanOrEqual(
      Math.max(1, so.spec.minReplicaCount),
    );
    // KEDA takes trigger metadata as strings only.
    for (const t of so.spec.triggers as Obj[]) {
      check(t, `trigger ${t.type}`, { type: 'string', metadata: 'object' });
      for (const [k, v] of Object.entries(t.metadata))
        expect(typeof v, `${t.type}.${k}`).toBe('string');
    }
    const rendered = parseAllDocuments(
      execFileSync('kubectl', ['kustomize', KEDA], { encoding: 'utf8' }),
    ).map((d) => d.toJS() as Obj);
    expect(rendered.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'ScaledObject',
      'Service',
      'StatefulSet',
    ]);
  });

  it("the Redis trigger reads the queue's real wait list, where BullMQ puts a job without a priority", async () => {
    const redisTrigger = trigger('redis').metadata;
    const url = new URL(cm.data['redis-url']);
    expect(redisTrigger.address).toBe(`${url.hostname}:${url.port || 6379}`);
    expect(redisTrigger.listName).toBe(
      `${runner.prefix}:${runner.queueName}:wait`,
    );
    expect(Number(redisTrigger.listLength)).toBeGreaterThanOrEqual(1);
    // The same key names on a real BullMQ queue: no priority → the wait list (LLEN, what KEDA's
    // Redis scaler counts); our feeder's priorities → the prioritized set, which it cannot count
    // (hence the Prometheus trigger).
    const prefix = `keda${Date.now().toString(36)}`;
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const queue = new Queue(runner.queueName, { connection: redis, prefix });
    try {
      await queue.add('plain', { title: 'a' });
      await queue.add('ours', { title: 'b' }, { priority: 3 });
      const key = redisTrigger.listName.replace(
        `${runner.prefix}:`,
        `${prefix}:`,
      );
      expect(await redis.llen(key)).toBe(1);
      expect(await redis.zcard(key.replace(/:wait$/, ':prioritized'))).toBe(1);
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      redis.disconnect();
    }
  });

  it('the Prometheus trigger asks for one runner per waiting or running job, and holds the runners there are during a pause (promtool test rules)', () => {
    const query = trigger('prometheus').metadata.query as string;
    expect(trigger('prometheus').metadata.threshold).toBe('1');
    const metrics = readFileSync(join(ROOT, 'dashboard/metrics.ts'), 'utf8');
    for (const m of query.matchAll(/\b(supervisor_[a-z_]+)/g))
      expect(metrics, m[1]).toContain(`name: '${m[1]}'`);
    const dir = mkdtempSync(join(tmpdir(), 'sup-keda-'));
    try {
      writeFileSync(
        join(dir, 'rules.yml'),
        JSON.stringify({
          groups: [
            { name: 'keda', rules: [{ record: 'runner_demand', expr: query }] },
          ],
        }),
      );
      const series = (name: string, labels: string, values: string) => ({
        series: `${name}{${labels}}`,
        values,
      });
      writeFileSync(
        join(dir, 'test.yml'),
        JSON.stringify({
          rule_files: ['rules.yml'],
          evaluation_interval: '1m',
          tests: [
            {
              interval: '1m',
              // Minute 0: 5 prioritized + 1 waiting + 2 active, not paused. Minute 1: paused by
              // hand with the same backlog and 3 runners (2 idle, 1 working).
              input_series: [
                series('supervisor_queue_jobs', 'state="waiting"', '1 1'),
                series('supervisor_queue_jobs', 'state="prioritized"', '5 5'),
                series('supervisor_queue_jobs', 'state="active"', '2 1'),
                series('supervisor_queue_jobs', 'state="completed"', '90 91'),
                series('supervisor_paused', 'kind="manual"', '0 1'),
                series('supervisor_paused', 'kind="usage-limit"', '0 0'),
                series('supervisor_agents', 'state="idle"', '0 2'),
                series('supervisor_agents', 'state="working"', '2 1'),
                series('supervisor_agents', 'state="crashed"', '1 1'),
              ],
              promql_expr_test: [
                {
                  expr: 'runner_demand',
                  eval_time: '0m',
                  exp_samples: [{ labels: 'runner_demand', value: 8 }],
                },
                {
                  expr: 'runner_demand',
                  eval_time: '1m',
                  exp_samples: [{ labels: 'runner_demand', value: 3 }],
                },
              ],
            },
          ],
        }),
      );
      const r = spawnSync('promtool', ['test', 'rules', 'test.yml'], {
        cwd: dir,
        encoding: 'utf8',
      });
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

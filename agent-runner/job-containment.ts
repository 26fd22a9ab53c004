import {
  AGENT_CGROUP_VAR,
  containmentFile,
  readContainmentRecord,
  type ContainmentRecord,
  SLOT_MARKER_VAR,
  prepareSlotCgroup,
  removeSlotCgroup,
  slotMarkerFor,
  slotPorts,
  sweepSlot,
  type ContainmentMode,
  type ContainmentSpec,
} from '../contract/agent-containment.js';
import type { RunnerConfig } from '../contract/job.js';
import { replaceSlotFile } from '../contract/slot-files.js';

type Log = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * The runner's side of "nothing outlives its job": gives the agent the slot's marker (and
 * cgroup), and sweeps the slot before each job, after each agent exit and at start and stop.
 */
export class JobContainment {
  readonly spec: ContainmentSpec;
  readonly cgroup: string | undefined;
  readonly mode: ContainmentMode;
  /** A cgroup recorded by an earlier runner of this slot (if it lived elsewhere). */
  private readonly earlierCgroup: string | undefined;

  constructor(
    cfg: RunnerConfig,
    private readonly log: Log,
  ) {
    this.spec = {
      slotKey: `${cfg.prefix}:${cfg.queueName}:${cfg.agentId}`,
      worktreePath: cfg.worktreePath,
      ports: slotPorts(cfg.agentEnv),
      ...(cfg.agentUser ? { agentUid: cfg.agentUser.uid } : {}),
    };
    this.owner = cfg.agentUser;
    // (An agent with a uid of its own can write the run directory: its record is not trusted.)
    this.earlierCgroup = cfg.agentUser
      ? undefined
      : readContainmentRecord(cfg.runDir)?.cgroup;
    this.cgroup = prepareSlotCgroup(this.spec.slotKey);
    this.mode = this.cgroup ? 'cgroup' : cfg.agentUser ? 'uid' : 'tracking';
    this.runDir = cfg.runDir;
  }

  private readonly runDir: string;
  private readonly owner: RunnerConfig['agentUser'];

  /** At runner start: record where the slot's processes are, then sweep what is left. */
  async begin(): Promise<void> {
    replaceSlotFile(
      containmentFile(this.runDir),
      JSON.stringify({
        slotKey: this.spec.slotKey,
        worktreePath: this.spec.worktreePath,
        ports: [...this.spec.ports],
        ...(this.cgroup ? { cgroup: this.cgroup } : {}),
      } satisfies ContainmentRecord),
      this.owner,
    );
    await this.sweep('runner start');
  }

  /**
   * Whether a full sweep ran since anything last ran in the slot: the sweep before a job is then
   * a light one (cgroup and ports, no pass over every process; see `SweepOptions.scan`).
   */
  private sweptSinceLastRun = false;

  /** Something of the job's (a before-job step, the agent) is about to run in the slot. */
  willRun(): void {
    this.sweptSinceLastRun = false;
  }

  /** Variables for the agent: the inherited marker, and the cgroup its wrapper enters. */
  agentEnv(): Record<string, string> {
    return {
      [SLOT_MARKER_VAR]: slotMarkerFor(this.spec.slotKey),
      ...(this.cgroup ? { [AGENT_CGROUP_VAR]: this.cgroup } : {}),
    };
  }

  /** Kills whatever the slot's agents left running; logs it and the ports still held. */
  sweep(when: string): Promise<void> {
    return this.run(when, true);
  }

  /**
   * The sweep before a job: after a full sweep with nothing run in the slot since (the previous
   * job's exit sweep, the runner's start), the cgroup and the slot's ports are checked, not
   * every process on the host again (`SweepOptions.scan`).
   */
  sweepBeforeJob(): Promise<void> {
    return this.run('before job', !this.sweptSinceLastRun);
  }

  private async run(when: string, scan: boolean): Promise<void> {
    const report = await sweepSlot(
      this.spec,
      [this.cgroup, this.earlierCgroup],
      { scan },
    );
    if (scan) this.sweptSinceLastRun = true;
    if (report.killed.length)
      this.log(`killed ${report.killed.length} leftover agent process(es)`, {
        when,
        mode: this.mode,
        killed: report.killed,
      });
    if (report.busyPorts.length)
      this.log('slot ports still in use after the sweep', {
        when,
        ports: report.busyPorts,
      });
  }

  close(): void {
    removeSlotCgroup(this.cgroup);
  }
}

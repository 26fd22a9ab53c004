import { slotId } from '../../contract/job.js';
import type { Db } from './db.js';
import { cachedStatement } from './statements.js';

/** What the control plane knows about a slot's runner (its runtime's view, not the runner's). */
export const SLOT_STATES = [
  'stopped',
  'starting',
  'running',
  'stopping',
  'crashed',
  /** Broken and given up on: not started until `supervisor restart <agent>` or a new scale. */
  'quarantined',
] as const;
export type SlotState = (typeof SLOT_STATES)[number];

export interface Slot {
  id: string;
  number: number;
  worktree: string;
  branch: string;
  state: SlotState;
  pid: number | null;
  containerId: string | null;
  health: string | null;
  restarts: number;
  lastError: string | null;
  stateSince: number;
  createdAt: number;
}

const SELECT = `SELECT id, number, worktree, branch, state, pid, container_id AS containerId, health, restarts,
  last_error AS lastError, state_since AS stateSince, created_at AS createdAt FROM slots`;

export class SlotStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  list(): Slot[] {
    return cachedStatement(
      this.db,
      `${SELECT} ORDER BY number`,
    ).all() as Slot[];
  }

  get(id: string): Slot | undefined {
    return cachedStatement(this.db, `${SELECT} WHERE id = ?`).get(id) as
      Slot | undefined;
  }

  /** Registers slot N (idempotent). */
  ensure(n: number, worktree: string, branch: string): Slot {
    const id = slotId(n);
    const t = this.now();
    this.db
      .prepare(
        `INSERT INTO slots (id, number, worktree, branch, state, state_since, created_at) VALUES (?, ?, ?, ?, 'stopped', ?, ?) ON CONFLICT (id) DO NOTHING`,
      )
      .run(id, n, worktree, branch, t, t);
    return this.get(id)!;
  }

  setState(
    id: string,
    state: SlotState,
    fields: {
      pid?: number | null;
      containerId?: string | null;
      lastError?: string | null;
      health?: string | null;
    } = {},
  ): void {
    const current = this.get(id);
    if (!current) return;
    const since = current.state === state ? current.stateSince : this.now();
    this.db
      .prepare(
        `UPDATE slots SET state = ?, state_since = ?, pid = ?, container_id = ?, last_error = ?, health = ? WHERE id = ?`,
      )
      .run(
        state,
        since,
        fields.pid === undefined ? current.pid : fields.pid,
        fields.containerId === undefined
          ? current.containerId
          : fields.containerId,
        fields.lastError === undefined ? current.lastError : fields.lastError,
        fields.health === undefined ? current.health : fields.health,
        id,
      );
  }

  incrementRestarts(id: string): void {
    this.db
      .prepare('UPDATE slots SET restarts = restarts + 1 WHERE id = ?')
      .run(id);
  }

  remove(id: string): void {
    this.db.prepare('DELETE FROM slots WHERE id = ?').run(id);
  }
}

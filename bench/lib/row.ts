/** One line of the benchmark table, measured against its baseline in the same run. */
export interface RowResult {
  id: string;
  title: string;
  /** Our number, formatted for the table. */
  ours: string;
  /** The baseline's number, formatted ("—" when the row has an absolute target). */
  baseline: string;
  /** Ratio or overhead against the baseline, formatted. */
  comparison: string;
  target: string;
  /** Whether the target was met; undefined when the row has no target. */
  met: boolean | undefined;
  /** Raw numbers for results.json. */
  data: Record<string, unknown>;
}

export interface BenchOptions {
  quick: boolean;
  log: (msg: string) => void;
}

import type { Logger } from '../supervisor/daemon.js';
import type { DashboardMetrics } from './metrics.js';
import type { DashboardSecurity } from './security.js';
import type { StatusHub } from './snapshot.js';
import type { DashboardSource } from './source.js';

/** What the handlers share: the data source, the snapshot hub, the security rules, the metrics. */
export interface DashboardDeps {
  source: DashboardSource;
  hub: StatusHub;
  security: DashboardSecurity;
  metrics: DashboardMetrics;
  log: Logger;
}

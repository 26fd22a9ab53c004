import { createRequire } from 'node:module';
import type Docker from 'dockerode';

const require = createRequire(import.meta.url);

/**
 * @defaultValue 120000 — a Docker API request whose connection stays silent this long is aborted,
 * so a hung engine cannot stall the recorder or the scaler. Longer than any stop grace the API
 * waits out; streams that may stay silent (`logs --follow`) pass `timeout: 0`.
 */
export const DOCKER_REQUEST_TIMEOUT_MS = 120_000;

/**
 * A dockerode client, loaded on first use: dockerode brings ssh2, gRPC and protobufjs with it
 * (~25 MB resident), which a supervisor on the process runtime never needs.
 */
export function dockerClient(opts?: Docker.DockerOptions): Docker {
  const Dockerode = require('dockerode') as typeof Docker;
  return new Dockerode({ timeout: DOCKER_REQUEST_TIMEOUT_MS, ...opts });
}

import { createRequire } from 'node:module';
import type Docker from 'dockerode';

const require = createRequire(import.meta.url);

/**
 * A dockerode client, loaded on first use: dockerode brings ssh2, gRPC and protobufjs with it
 * (~25 MB resident), which a supervisor on the process runtime never needs.
 */
export function dockerClient(opts?: Docker.DockerOptions): Docker {
  const Dockerode = require('dockerode') as typeof Docker;
  return new Dockerode(opts);
}

import { expect, it } from 'vitest';
import { DockerodeEngine } from '../../supervisor/runtimes/docker/engine.js';
import { preflightAgent } from '../../supervisor/preflight.js';
import { describeDocker } from '../docker/helpers.js';

// redis:7 is one of the local images the Docker suites build: it has a shell, not an agent.
describeDocker('preflight inside the runner image (real engine)', () => {
  it('finds a program the image has and refuses one it lacks', async () => {
    const engine = new DockerodeEngine();
    const target = (agentCommand: string) => ({
      agentCommand,
      runtime: 'docker',
      image: 'redis:7',
      root: '/tmp',
    });
    const found = await preflightAgent(target('redis-server --version'), {
      engine,
    });
    expect(found.path).toMatch(/\/redis-server$/);
    await expect(
      preflightAgent(target('claude -p < "$ISSUE_PROMPT_FILE"'), { engine }),
    ).rejects.toMatchObject({
      code: 'ERR_SUP_AGENT_MISSING',
      message:
        'the agent program "claude" is not installed in the runner image redis:7',
      hint: expect.stringMatching(/in the runner image/),
    });
  });
});

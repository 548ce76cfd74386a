/**
 * The README starts long-running services as `node bin/t2i.js <service>` (or an installed `t2i` bin): the
 * process a supervisor signals is the service itself. SIGTERM to exactly that command drains it and it
 * exits 0 (`npx t2i …` is not used for services: npx runs the command in a child and does not pass
 * SIGTERM on, leaving the service orphaned).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exited, spawnCli } from '../helpers/cli.ts';
import { createTestEnv } from '../helpers/env.ts';

for (const service of ['sink', 'worker'] as const) {
  test(`SIGTERM to \`node bin/t2i.js ${service}\` drains it and it exits 0`, async () => {
    const t = await createTestEnv();
    const child = spawnCli([service], { env: { ...t.env, T2I_HTTP_PORT: '0', T2I_LOG_LEVEL: 'info' } });
    let output = '';
    // Running, as a fact: the service runtime logs it (to stderr, as all logs) once the service has started.
    const running = new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        output += d.toString();
        if (/"msg":"\w+: running \(SIGTERM/.test(output)) resolve();
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', () => reject(new Error(`${service} exited early: ${output}`)));
    });
    await running;
    child.kill('SIGTERM');
    const { code, signal } = await exited(child);
    assert.equal(signal, null, output);
    assert.equal(code, 0, output);
    assert.match(output, /SIGTERM/, 'it says it got SIGTERM');
  });
}

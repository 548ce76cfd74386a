import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

/**
 * What the images do (deploy/docker/Dockerfile, stage `build`): tsc -p tsconfig.build.json emits JavaScript
 * next to the sources, then the TypeScript is deleted. Done here on a copy; the compiled tree must run with
 * no .ts file left and without tsx: the CLI, a dynamically imported command, and the engine in its thread.
 */
test('the compiled JavaScript of the images runs without its TypeScript: CLI, model check, the engine thread', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-compiled-'));
  try {
    for (const item of ['services', 'schemas', 'package.json', 'tsconfig.json', 'tsconfig.build.json'])
      fs.cpSync(path.join(PACKAGE_ROOT, item), path.join(dir, item), { recursive: true });
    fs.mkdirSync(path.join(dir, 'deploy', 'docker'), { recursive: true });
    fs.copyFileSync(path.join(PACKAGE_ROOT, 'deploy', 'docker', 'fetch-model.ts'), path.join(dir, 'deploy', 'docker', 'fetch-model.ts'));
    fs.symlinkSync(path.join(PACKAGE_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    fs.symlinkSync(path.join(PACKAGE_ROOT, 'models'), path.join(dir, 'models'));
    execFileSync(process.execPath, [path.join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
      cwd: dir,
      stdio: 'pipe',
    });
    const removeTs = (folder: string) => {
      for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
        const full = path.join(folder, entry.name);
        if (entry.isDirectory()) removeTs(full);
        else if (entry.name.endsWith('.ts')) fs.rmSync(full);
      }
    };
    removeTs(path.join(dir, 'services'));
    removeTs(path.join(dir, 'deploy'));
    assert.ok(fs.existsSync(path.join(dir, 'deploy', 'docker', 'fetch-model.js')));

    // Plain node, no loader: NODE_OPTIONS cleared so nothing brings tsx in.
    const env = { ...process.env, NODE_OPTIONS: '' };
    const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: dir, env, encoding: 'utf8' });
    const version = (JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(node(['services/cli/main.js', '--version']).trim(), version);
    assert.match(node(['services/cli/main.js', 'model', 'check', 'models/tiny-flux']), /^ok \(checked/m);
    const script = `
      const { EngineThread } = await import('./services/worker/engine-thread.js');
      const engine = new EngineThread({ modelDirectory: 'models/tiny-flux' });
      await engine.load();
      const [image] = await engine.generate([{ prompt: 'a red circle', seed: 7 }]);
      await engine.close();
      console.log(JSON.stringify({ width: image.width, height: image.height, bytes: image.data.length }));`;
    fs.writeFileSync(path.join(dir, 'engine-check.mjs'), script);
    const image = JSON.parse(node(['engine-check.mjs']).trim()) as { width: number; height: number; bytes: number };
    assert.equal(image.bytes, image.width * image.height * 3);
    assert.ok(image.width > 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

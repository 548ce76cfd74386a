/**
 * Static checks of deploy/docker/Dockerfile and Dockerfile.gpu (no Docker engine on these machines): stages, base
 * images, a non-root runtime user, exec-form ENTRYPOINT/CMD/HEALTHCHECK behind tini, every COPY source present and
 * let through the .dockerignore, onnxruntime-node's install step, and the entrypoint's commands.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  base: string;
  name?: string;
  instructions: Instruction[];
}

/** Dockerfile instructions with continuation lines joined and comments dropped; ARG defaults substituted in FROM. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i] ?? '';
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      i++;
      const next = lines[i] ?? '';
      if (/^\s*#/.test(next)) continue;
      line = `${line.slice(0, -1)} ${next.trim()}`;
    }
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    assert.ok(match, `line ${start + 1}: not an instruction: ${line}`);
    instructions.push({ keyword: (match[1] as string).toUpperCase(), args: (match[2] as string).trim(), line: start + 1 });
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'ARG' && stages.length === 0) {
      const [name, value] = instruction.args.split('=', 2);
      args[name as string] = value ?? '';
    } else if (instruction.keyword === 'FROM') {
      const [base, as, name] = instruction.args.replace(/^--platform=\S+\s+/, '').split(/\s+/);
      const resolved = (base as string).replace(/\$\{(\w+)\}/g, (_, n: string) => args[n] ?? `\${${n}}`);
      stages.push({ base: resolved, ...(as?.toUpperCase() === 'AS' && name ? { name } : {}), instructions: [] });
    } else {
      assert.ok(stages.length > 0, `line ${instruction.line}: ${instruction.keyword} before FROM`);
      (stages.at(-1) as Stage).instructions.push(instruction);
    }
  }
  return { args, stages };
}

function execForm(args: string): string[] | undefined {
  try {
    const parsed: unknown = JSON.parse(args);
    return Array.isArray(parsed) && parsed.every((p) => typeof p === 'string') ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Paths a .dockerignore lets through: `**` first, then `!path` exceptions (the only form these files use). */
function allowedByDockerignore(ignore: string, source: string): boolean {
  const rules = ignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(rules[0], '**', 'the .dockerignore starts by excluding everything');
  return rules.slice(1).some((rule) => {
    assert.ok(rule.startsWith('!'), `unexpected .dockerignore rule ${rule}`);
    const allowed = rule.slice(1).replace(/\/$/, '');
    return source === allowed || source.startsWith(`${allowed}/`);
  });
}

const packageJson = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

for (const file of ['Dockerfile', 'Dockerfile.gpu']) {
  const dockerfilePath = path.join(PACKAGE_ROOT, 'deploy', 'docker', file);
  const { stages } = parseDockerfile(fs.readFileSync(dockerfilePath, 'utf8'));
  const runtime = stages.at(-1) as Stage;
  const all = (keyword: string, stage: Stage = runtime) => stage.instructions.filter((i) => i.keyword === keyword);

  test(`${file}: multi-stage, dependencies installed in a build stage without dev packages`, () => {
    assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
    const names = stages.map((s) => s.name).filter(Boolean);
    assert.equal(new Set(names).size, names.length, 'stage names are unique');
    const deps = stages.find((s) => s.name === 'deps');
    assert.ok(deps, 'a deps stage');
    assert.match(deps.base, /^node:24-[a-z-]+@sha256:[0-9a-f]{64}$/, 'dependencies are installed with Node 24 LTS, pinned by digest');
    const install = all('RUN', deps)
      .map((r) => r.args)
      .join('\n');
    assert.match(install, /npm ci --omit=dev/);
    // Compiled JavaScript: a build stage runs tsc with tsconfig.build.json and deletes the TypeScript; the
    // runtime takes services/ from it, never from the build context (test/deploy/compiled.test.ts runs that output).
    const build = stages.find((s) => s.name === 'build');
    assert.ok(build, 'a build stage');
    const compile = all('RUN', build)
      .map((r) => r.args)
      .join('\n');
    assert.match(compile, /tsc -p tsconfig\.build\.json/);
    assert.match(compile, /-name '\*\.ts' -delete/);
    assert.ok(packageJson.devDependencies.typescript, 'typescript is installed in the build stage (npm ci with dev packages)');
    const copies = all('COPY').map((c) => c.args);
    assert.ok(
      copies.some((c) => /^--from=build \/app\/services \.\/services$/.test(c)),
      'services/ comes compiled from the build stage',
    );
    assert.ok(!copies.some((c) => /^(\.\/)?services\b/.test(c) || /^bin\b/.test(c)), 'no TypeScript sources in the runtime stage');
    for (const copy of all('COPY')) {
      const from = /--from=(\S+)/.exec(copy.args)?.[1];
      if (from)
        assert.ok(
          stages.some((s) => s.name === from),
          `line ${copy.line}: COPY --from=${from} names no stage`,
        );
    }
  });

  test(`${file}: the runtime runs as a non-root user`, () => {
    const users = all('USER');
    assert.ok(users.length > 0, 'USER in the runtime stage');
    const user = (users.at(-1) as Instruction).args.split(':')[0] as string;
    assert.ok(user !== 'root' && user !== '0', `USER ${user} is root`);
    const lastRun = Math.max(...all('RUN').map((r) => r.line));
    assert.ok((users.at(-1) as Instruction).line > lastRun, 'USER comes after the last RUN');
    assert.match(
      all('RUN')
        .map((r) => r.args)
        .join('\n'),
      new RegExp(`useradd .*--uid ${user}\\b`),
      'the user is created',
    );
  });

  test(`${file}: exec-form ENTRYPOINT through tini, exec-form CMD and HEALTHCHECK`, () => {
    const entrypoint = execForm((all('ENTRYPOINT').at(-1) as Instruction).args);
    assert.ok(entrypoint, 'ENTRYPOINT is a JSON array');
    assert.equal(entrypoint[0], '/usr/bin/tini');
    assert.equal(entrypoint[1], '--');
    assert.equal(entrypoint[2], '/app/deploy/docker/entrypoint.sh');
    assert.match(
      all('RUN')
        .map((r) => r.args)
        .join('\n'),
      /apt-get install .*\btini\b/,
      'tini is installed',
    );
    const cmd = all('CMD');
    assert.equal(cmd.length, 1);
    assert.ok(execForm((cmd[0] as Instruction).args), 'CMD is a JSON array');
    const health = all('HEALTHCHECK');
    assert.equal(health.length, 1);
    const probe = /\bCMD\s+(\[.*\])$/.exec((health[0] as Instruction).args)?.[1];
    assert.ok(probe && execForm(probe), 'HEALTHCHECK CMD is a JSON array');
    assert.match(probe, /\/livez/);
    assert.ok(all('EXPOSE').some((e) => e.args.split(/\s+/).includes('8080')));
    assert.ok(
      all('ENV').some((e) => /T2I_HTTP_PORT=8080/.test(e.args)),
      'the health server port the probe uses',
    );
  });

  test(`${file}: every COPY source exists and passes the .dockerignore`, () => {
    const ignore = fs.readFileSync(`${dockerfilePath}.dockerignore`, 'utf8');
    for (const stage of stages) {
      for (const copy of all('COPY', stage)) {
        if (/--from=/.test(copy.args)) continue;
        const parts = copy.args.split(/\s+/).filter((p) => !p.startsWith('--'));
        for (const source of parts.slice(0, -1)) {
          assert.ok(fs.existsSync(path.join(PACKAGE_ROOT, source)), `line ${copy.line}: ${source} does not exist`);
          assert.ok(
            allowedByDockerignore(ignore, source.replace(/\/$/, '')),
            `line ${copy.line}: ${source} is excluded by the .dockerignore`,
          );
        }
      }
    }
    const entrypoint = path.join(PACKAGE_ROOT, 'deploy', 'docker', 'entrypoint.sh');
    assert.ok(fs.statSync(entrypoint).mode & 0o111, 'entrypoint.sh is executable');
    const mode = execFileSync('git', ['ls-files', '-s', 'deploy/docker/entrypoint.sh'], { cwd: PACKAGE_ROOT, encoding: 'utf8' });
    if (mode !== '') assert.match(mode, /^100755 /, 'entrypoint.sh is committed executable');
  });
}

test('Dockerfile: CPU image skips the CUDA download of onnxruntime-node', () => {
  const { stages } = parseDockerfile(fs.readFileSync(path.join(PACKAGE_ROOT, 'deploy', 'docker', 'Dockerfile'), 'utf8'));
  assert.match((stages.at(-1) as Stage).base, /^node:24-[a-z-]+@sha256:[0-9a-f]{64}$/);
  const deps = stages.find((s) => s.name === 'deps') as Stage;
  assert.ok(deps.instructions.some((i) => i.keyword === 'ENV' && /ONNXRUNTIME_NODE_INSTALL=skip/.test(i.args)));
});

test('Dockerfile.gpu: CUDA 12 + cuDNN 9 runtime base, Node 24, onnxruntime-node CUDA providers installed explicitly', () => {
  const { stages } = parseDockerfile(fs.readFileSync(path.join(PACKAGE_ROOT, 'deploy', 'docker', 'Dockerfile.gpu'), 'utf8'));
  const runtime = stages.at(-1) as Stage;
  assert.match(runtime.base, /^nvidia\/cuda:12\.\d+(\.\d+)?-cudnn(9)?-runtime-ubuntu2[24]\.04@sha256:[0-9a-f]{64}$/);
  // onnxruntime-node 1.2x/1.3x builds its CUDA provider against CUDA 12 and cuDNN 9.
  const ort = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.match(ort.version, /^1\.(2[2-9]|3\d)\./);
  const deps = stages.find((s) => s.name === 'deps') as Stage;
  const run = deps.instructions
    .filter((i) => i.keyword === 'RUN')
    .map((i) => i.args)
    .join('\n');
  assert.match(run, /ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install/);
  assert.ok(
    fs.existsSync(path.join(PACKAGE_ROOT, 'node_modules', 'onnxruntime-node', 'script', 'install.js')),
    'the install script the image runs',
  );
  assert.match(run, /libonnxruntime_providers_cuda\.so/, 'the build fails when the CUDA provider is missing');
  const copies = runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args);
  assert.ok(
    copies.some((c) => /--from=node \/usr\/local\/bin\/node /.test(c)),
    'Node from the official image',
  );
  assert.ok(stages.some((s) => s.name === 'node' && /^node:24-[a-z-]+@sha256:[0-9a-f]{64}$/.test(s.base)));
  assert.ok(runtime.instructions.some((i) => i.keyword === 'ENV' && /T2I_EXECUTION_PROVIDER=cuda/.test(i.args)));
});

test('the compose file builds the CPU image, and its commands go through the entrypoint', () => {
  const compose = parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'deploy', 'compose', 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, { build?: { dockerfile?: string } }>;
  };
  const built = Object.values(compose.services).filter((s) => s.build);
  assert.ok(built.length > 0);
  for (const service of built) assert.equal(service.build?.dockerfile, 'deploy/docker/Dockerfile');
  // The entrypoint passes t2i commands through (here, outside a container: it finds the app from its own path).
  const help = execFileSync('sh', [path.join(PACKAGE_ROOT, 'deploy', 'docker', 'entrypoint.sh'), '--help'], { encoding: 'utf8' });
  assert.match(help, /^\s+worker\b/m);
  assert.match(help, /^\s+stack\b/m);
});

/**
 * The npm package the AMI installs (`npm pack` of the checkout, then `npm install -g --omit=dev`):
 * it carries everything the runtime reads, nothing of the tests or the CDK app, and every
 * package the runtime requires is a production dependency (a devDependency would be missing
 * on the image).
 */
import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers/proc';

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

function packedFiles(): string[] {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm pack --dry-run failed: ${r.stderr}`);
  return (JSON.parse(r.stdout)[0].files as { path: string }[]).map((f) => f.path);
}

/** Module names required by the compiled runtime, with the file requiring each. */
function requires(files: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of files.filter((p) => p.startsWith('dist/runtime/') && p.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    for (const m of text.matchAll(/require\(["']([^"']+)["']\)/g)) out.set(m[1], f);
  }
  return out;
}

describe('the npm package the AMI installs', () => {
  const files = packedFiles();

  test('GIVEN npm pack WHEN listed THEN the CLIs, the web UI, the sources of the native helpers, the patches and the postinstall are in it', () => {
    for (const bin of Object.values(pkg.bin as Record<string, string>)) expect(files).toContain(bin);
    for (const f of ['runtime/proxy/webui/app.js', 'native/pam-launch.c', 'native/passwd-lookup.c', 'scripts/build-native.js', 'patches/ssh2+1.17.0.patch']) expect(files).toContain(f);
  });

  test('GIVEN npm pack WHEN listed THEN no tests, benchmarks, CDK app or TypeScript sources are in it', () => {
    expect(files.filter((f) => /^(test|bench|lib|bin|ami|dist\/(test|bench|lib|bin))\//.test(f) || /^runtime\/.*\.ts$/.test(f))).toEqual([]);
  });

  test('GIVEN the compiled runtime WHEN its requires are resolved THEN each is a builtin, a packed file, or a production dependency', () => {
    const deps = new Set(Object.keys(pkg.dependencies));
    const problems: string[] = [];
    const required = requires(files);
    expect([...required.keys()]).toEqual(expect.arrayContaining(['ssh2', 'better-sqlite3', '@aws-sdk/client-ssm', 'node:fs']));
    for (const [name, from] of required) {
      if (name.startsWith('.')) {
        const target = path.join(path.dirname(from), name);
        if (!files.includes(`${target}.js`) && !files.includes(`${target}/index.js`) && !files.includes(target)) problems.push(`${from}: ${name} is not packed`);
        continue;
      }
      const bare = name.startsWith('node:') ? name.slice(5) : name;
      if (builtinModules.includes(bare.split('/')[0])) continue;
      const dep = name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : name.split('/')[0];
      if (!deps.has(dep)) problems.push(`${from}: ${dep} is not in "dependencies"`);
    }
    expect(problems).toEqual([]);
  });
});

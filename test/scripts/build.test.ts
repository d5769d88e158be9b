/**
 * scripts/build.js --if-stale, what `npm start`, `npm run bench` and `npm run deploy:local` run first: it
 * compiles only when a compiler input changed since the last successful build. Each test builds a small
 * project of its own with the checkout's compiler (--project), so the checkout's dist/ is left alone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, run, tempDir } from '../helpers/proc';

const BUILD = path.join(ROOT, 'scripts', 'build.js');
const TSCONFIG = {
  compilerOptions: { target: 'ES2022', module: 'commonjs', outDir: 'dist', rootDir: '.', strict: true, types: [] },
  include: ['src/**/*.ts'],
};

let project: string;
const src = (f: string) => path.join(project, 'src', f);
const out = (f: string) => path.join(project, 'dist', 'src', f);
const stamp = () => path.join(project, 'dist', '.build-stamp.json');
const build = (...args: string[]) => run(process.execPath, [BUILD, '--project', project, ...args], { cwd: project });

beforeEach(async () => {
  // GIVEN a project built once with --if-stale
  project = tempDir('build-stale-');
  fs.mkdirSync(path.join(project, 'src'));
  fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
  fs.writeFileSync(path.join(project, 'package-lock.json'), '{}\n');
  fs.writeFileSync(src('greet.ts'), 'export const greeting: string = "hello";\n');
  const first = await build('--if-stale');
  expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: expect.stringContaining('compiling') });
  expect(fs.readFileSync(out('greet.js'), 'utf8')).toContain('"hello"');
  expect(fs.existsSync(stamp())).toBe(true);
});
afterEach(() => fs.rmSync(project, { recursive: true, force: true }));

/** Marks the compiled output, so a compile (which rewrites it) shows. */
const markOutput = () => fs.appendFileSync(out('greet.js'), '// not recompiled\n');
const recompiled = () => !fs.readFileSync(out('greet.js'), 'utf8').includes('// not recompiled');

test('nothing changed: it does not compile', async () => {
  markOutput();
  // WHEN it runs again on the unchanged project
  const r = await build('--if-stale');
  // THEN it exits 0 at once, quietly, and the output is the one from before
  expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: '', stderr: '' });
  expect(recompiled()).toBe(false);
});

test.each([
  ['a source is edited', () => fs.writeFileSync(src('greet.ts'), 'export const greeting: string = "bonjour";\n')],
  ['a source is added', () => fs.writeFileSync(src('other.ts'), 'export const other = 1;\n')],
  ['tsconfig.json changes', () => fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({ ...TSCONFIG, compilerOptions: { ...TSCONFIG.compilerOptions, target: 'ES2020' } }))],
  ['the dependencies change (package-lock.json)', () => fs.writeFileSync(path.join(project, 'package-lock.json'), '{"lockfileVersion": 3}\n')],
])('%s: it compiles again', async (_what, change) => {
  markOutput();
  // WHEN a compiler input changes and it runs again
  change();
  const r = await build('--if-stale');
  // THEN it compiles
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining('compiling') });
  expect(recompiled()).toBe(true);
});

test('a failed build is not recorded: the next run compiles again', async () => {
  // WHEN a change does not compile
  fs.writeFileSync(src('greet.ts'), 'export const greeting: number = "hello";\n');
  const failed = await build('--if-stale');
  // THEN it fails with the compiler's error, and dist/ is not marked current
  expect(failed.code).not.toBe(0);
  expect(failed.stdout + failed.stderr).toContain('TS2322');
  expect(fs.existsSync(stamp())).toBe(false);
  // AND once fixed, the next run compiles the fix
  fs.writeFileSync(src('greet.ts'), 'export const greeting: string = "fixed";\n');
  const fixed = await build('--if-stale');
  expect(fixed.code).toBe(0);
  expect(fs.readFileSync(out('greet.js'), 'utf8')).toContain('"fixed"');
  // AND the run after that does not compile
  markOutput();
  expect((await build('--if-stale')).code).toBe(0);
  expect(recompiled()).toBe(false);
});

test('without --if-stale (npm run build) it always compiles', async () => {
  markOutput();
  // WHEN the plain build runs on the unchanged project
  const r = await build();
  // THEN it compiles
  expect(r.code).toBe(0);
  expect(recompiled()).toBe(true);
});

test('an unknown argument is refused with a usage line', async () => {
  const r = await build('--if-stal');
  expect(r.code).toBe(2);
  expect(r.stderr).toContain('build: unknown argument "--if-stal"');
  expect(r.stderr).toContain('usage: node scripts/build.js');
});

/**
 * Synthesizes the CDK app (`bin/app.ts`, through the pinned `cdk` CLI, as `cdk deploy` would) into
 * a cloud assembly directory for the local deployment. Context values are passed as `-c` flags.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './instance';

/** Runs `cdk synth -o outDir -c k=v ...`; rejects with cdk's own message when synthesis fails. */
export function synthesize(outDir: string, context: Record<string, string>): Promise<string> {
  const args = [path.join(REPO_ROOT, 'node_modules', 'aws-cdk', 'bin', 'cdk'), 'synth', '--quiet', '-o', outDir];
  for (const [k, v] of Object.entries(context)) args.push('-c', `${k}=${v}`);
  // The CLI's caches go to a temporary directory of its own, removed afterwards.
  const tmp = fs.mkdtempSync(path.join(path.dirname(path.resolve(outDir)), '.synth-tmp-'));
  return new Promise<string>((resolve, reject) => {
    execFile(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 64 << 20, env: { ...process.env, TMPDIR: tmp } }, (err, _stdout, stderr) => {
      fs.rmSync(tmp, { recursive: true, force: true });
      if (err) reject(new Error(`cdk synth failed: ${stderr.split('\n').filter((l) => /error|Error/.test(l)).join('\n') || stderr.slice(-2000)}`));
      else resolve(outDir);
    });
  });
}

/**
 * An S3 server for tests: s3rver (dev dependency) in its own process on a free
 * loopback port with its files in a temporary directory, ready when
 * ListObjects on its bucket answers. sim/aws/s3rver.ts adds what
 * s3rver lacks (ListMultipartUploads, ListParts, AbortMultipartUpload, S3's
 * part checks at CompleteMultipartUpload), test/helpers/s3rver-main.ts a
 * fault injector. The process
 * runs from dist/, so build first (`npx tsc -p .`; `npm test` does it).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Daemon, freePort, ROOT, tempDir, waitFor } from './proc';

/** s3rver's only account. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;
export const S3RVER_REGION = 'us-east-1';
const MAIN_JS = path.join(ROOT, 'dist', 'test', 'helpers', 's3rver-main.js');

export class S3rverProcess {
  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly bucket: string,
    private daemon: Daemon,
  ) {}

  /** Starts s3rver with `bucket` created, and waits until it answers. */
  static async start(bucket = 'recordings'): Promise<S3rverProcess> {
    if (!fs.existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run "npx tsc -p ." (npm test does it)`);
    const port = await freePort();
    const dir = tempDir('s3rver-');
    const daemon = Daemon.spawn(process.execPath, [MAIN_JS, String(port), dir, bucket]);
    const s3 = new S3rverProcess(port, dir, bucket, daemon);
    const client = s3.client();
    try {
      let exited = false;
      void daemon.exited.then(() => (exited = true));
      await waitFor(
        's3rver to answer',
        async () => {
          if (exited) throw new Error(`s3rver exited: ${daemon.stderr}${daemon.stdout}`);
          await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1 }));
          return true;
        },
        30_000,
      );
    } catch (err) {
      await s3.stop();
      throw err;
    } finally {
      client.destroy();
    }
    return s3;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A client as the store's own for an S3-compatible endpoint: path style, checksums only when required. */
  client(): S3Client {
    return new S3Client({
      endpoint: this.endpoint,
      region: S3RVER_REGION,
      credentials: S3RVER_CREDENTIALS,
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 2,
    });
  }

  /** Makes the next `count` S3 requests fail with `status`/`code` (503 SlowDown by default). */
  injectFaults(count: number, status = 503, code = 'SlowDown'): Promise<{ remaining: number; injected: number }> {
    return this.faults('POST', JSON.stringify({ count, status, code }));
  }

  /** How many injected faults are left and how many were served. */
  faultState(): Promise<{ remaining: number; injected: number }> {
    return this.faults('GET');
  }

  private faults(method: string, body?: string): Promise<{ remaining: number; injected: number }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: this.port, path: '/__faults', method }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`/__faults: HTTP ${res.statusCode}: ${text}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Stops the process (SIGTERM, SIGKILL after 10 s) and removes its files. Harmless when already stopped. */
  async stop(): Promise<void> {
    const killer = setTimeout(() => this.daemon.child.kill('SIGKILL'), 10_000);
    try {
      await this.daemon.stop('SIGTERM');
    } finally {
      clearTimeout(killer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

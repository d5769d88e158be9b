/**
 * The process test/helpers/s3.ts starts: s3rver with S3's multipart behaviour
 * (sim/aws/s3rver.ts) on 127.0.0.1:<port> with its files in <dir>, plus a
 * fault injector: `POST /__faults {"count": n, "status": 503, "code": "SlowDown"}`
 * makes the next n S3 requests fail that way; `GET /__faults` tells how many did.
 *
 * Usage: node s3rver-main.js <port> <dir> <bucket>...
 */
import { createS3rver, readBody, S3rverError, S3rverMiddleware, stopS3rver } from '../../sim/aws/s3rver';

function faultInjector(): S3rverMiddleware {
  const faults = { remaining: 0, status: 503, code: 'SlowDown', injected: 0 };
  return async function injectFaults(ctx, next) {
    if (ctx.path === '/__faults') {
      if (ctx.method === 'POST') {
        const spec = JSON.parse((await readBody(ctx.req)).toString() || '{}');
        Object.assign(faults, { remaining: spec.count ?? 0, status: spec.status ?? 503, code: spec.code ?? 'SlowDown', injected: 0 });
      }
      ctx.set('content-type', 'application/json');
      ctx.body = JSON.stringify({ remaining: faults.remaining, injected: faults.injected });
      return;
    }
    if (faults.remaining > 0) {
      faults.remaining--;
      faults.injected++;
      await readBody(ctx.req);
      const err = new S3rverError(faults.code, 'Injected by the test.');
      err.status = faults.status;
      throw err;
    }
    return next();
  };
}

async function main(): Promise<void> {
  const [port, dir, ...buckets] = process.argv.slice(2);
  const server = createS3rver({ host: '127.0.0.1', port: Number(port), dir, buckets });
  // Before the S3 additions (which sit just before s3rver's router).
  server.middleware.splice(server.middleware.length - 2, 0, faultInjector());
  await server.run();
  process.stdout.write(`s3rver listening on 127.0.0.1:${port}\n`);
  const stop = () => stopS3rver(server).finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`s3rver failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}

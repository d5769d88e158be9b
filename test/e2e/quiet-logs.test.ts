/**
 * Clients that give up mid-request are not the server's fault and must not
 * flood its log: 200 connections each to the web listener (3080) and the auth
 * API (3025) that send the headers and half a body, then reset (and 200 SSH
 * connections each to the node and the proxy reset mid key exchange), leave
 * no error or warning line and no stack trace in the daemon's output at INFO
 * level; with -d each aborted request is one debug line without a stack.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { createAuth, startCluster, TestAuth } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';

const CONNECTIONS = 200;
/** How many connections are open at once (all 200 end up aborted; this only spares the machine). */
const PARALLEL = 20;

/**
 * One request that stops halfway: the headers ask for `100 Continue`, so the server's
 * handler is reading the body when the client, having half sent it, resets the connection.
 */
function abortMidRequest(port: number, requestPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // TLS over a TCP socket of our own: resetting that one sends the RST.
    const raw = net.connect(port, '127.0.0.1');
    raw.on('error', () => undefined);
    const sock = tls.connect({ socket: raw, servername: 'localhost', rejectUnauthorized: false }, () => {
      sock.write(
        `POST ${requestPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n`,
      );
    });
    let seen = '';
    sock.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      if (!seen.startsWith('HTTP/1.1 100')) {
        reject(new Error(`expected 100 Continue, got ${JSON.stringify(seen.slice(0, 200))}`));
        sock.destroy();
        return;
      }
      sock.write('{"user":"alice","pass":"');
      // The TLS record is out once the write callback runs; then an RST, not a FIN.
      sock.write('', () => raw.resetAndDestroy());
    });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve());
    raw.on('close', () => resolve());
  });
}

async function abortMany(port: number, requestPath: string): Promise<void> {
  for (let done = 0; done < CONNECTIONS; done += PARALLEL) {
    await Promise.all(Array.from({ length: PARALLEL }, () => abortMidRequest(port, requestPath)));
  }
}

/** An SSH client that sends its version, reads the server's, and resets the connection mid key exchange. */
function abortSsh(port: number): Promise<void> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write('SSH-2.0-OpenSSH_9.6\r\n'));
    sock.once('data', () => sock.resetAndDestroy());
    sock.on('error', () => undefined);
    sock.on('close', () => resolve());
  });
}

/** Fewer at once than sshd's MaxStartups start (10), so none is dropped for being one too many. */
const SSH_PARALLEL = 5;
async function abortManySsh(port: number): Promise<void> {
  for (let done = 0; done < CONNECTIONS; done += SSH_PARALLEL) {
    await Promise.all(Array.from({ length: SSH_PARALLEL }, () => abortSsh(port)));
  }
}

/** Stops the daemon (SIGTERM, a clean shutdown) and returns all it wrote once its output is closed. */
async function stopAndCollect(cluster: TestAuth): Promise<string> {
  const d = cluster.daemon!;
  await d.stop('SIGTERM');
  await waitFor('the daemon output to close', () => (d.child.stdout!.closed && d.child.stderr!.closed) || undefined, 10_000);
  return d.stdout + d.stderr;
}

/** Log lines (JSON) at `level`. */
const linesAt = (output: string, level: string) => output.split('\n').filter((l) => l.includes(`"level":"${level}"`));
/** A stack frame, as `at fn (file:line:col)` or `at file:line:col`, raw or inside a JSON string. */
const STACK_FRAME = /(^|\\n|\n)\s*at (\S+ \()?\S+:\d+:\d+\)?/;

describe('clients that abort mid-request', () => {
  let cluster: TestAuth | undefined;
  afterEach(async () => {
    await cluster?.cleanup();
    cluster = undefined;
  });

  it('GIVEN a cluster at INFO WHEN 200 requests each to 3080 and 3025 stop halfway and reset, and 200 SSH connections each to the node and proxy reset THEN its output has no error or warning line and no stack trace', async () => {
    // GIVEN auth, node and proxy at INFO (the test config's severity).
    cluster = await startCluster({ proxy: {} });

    // WHEN 200 clients each abort a login on the web listener and a join on the auth API,
    // and 200 reset their SSH connection to the node and to the proxy.
    await abortMany(cluster.proxyPorts!.web, '/webapi/sessions');
    await abortMany(cluster.port, '/v1/tokens/register');
    await abortManySsh(cluster.nodePort!);
    await abortManySsh(cluster.proxyPorts!.ssh);

    // THEN, once the daemon has stopped (the resets reached it before the SIGTERM did), nothing was logged at error level, and no stack.
    const output = await stopAndCollect(cluster);
    expect(output).toContain('teleport is running');
    expect(linesAt(output, 'error')).toEqual([]);
    expect(output).not.toMatch(STACK_FRAME);
    // THEN nothing at all was logged above debug about the aborted connections (sshd-style load shedding, should
    // the server release reset connections later than the next batch opens, is a warning by design and is not one).
    const afterStart = output.slice(output.indexOf('teleport is running'));
    expect(linesAt(afterStart, 'warn').filter((l) => !l.includes('too many unauthenticated connections'))).toEqual([]);
  });

  it('GIVEN a cluster with -d WHEN requests stop halfway and reset THEN each is one debug line naming the client going away, without a stack', async () => {
    // GIVEN auth and proxy started with -d.
    cluster = await createAuth({ proxy: {} });
    cluster.startArgs.push('-d');
    cluster.start();
    await cluster.ready();

    await abortMany(cluster.proxyPorts!.web, '/webapi/sessions');
    await abortMany(cluster.port, '/v1/tokens/register');

    // THEN every abort is one debug line (waiting for all of them shows the server saw each).
    const gone = () => linesAt(cluster!.daemon!.stdout + cluster!.daemon!.stderr, 'debug').filter((l) => l.includes('the client went away'));
    await waitFor(`${2 * CONNECTIONS} debug lines about clients going away`, () => gone().length >= 2 * CONNECTIONS || undefined, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${gone().length} seen`);
    });
    const output = await stopAndCollect(cluster);
    expect(gone()).toHaveLength(2 * CONNECTIONS);
    expect(linesAt(output, 'error')).toEqual([]);
    expect(output).not.toMatch(STACK_FRAME);
  });
});

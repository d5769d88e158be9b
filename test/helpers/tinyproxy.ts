/**
 * tinyproxy (Debian package `tinyproxy`), a small real HTTP proxy, for the
 * HTTPS_PROXY tests: CONNECT to any port from loopback (or the client address
 * given), every request logged (`connects()` lists the CONNECT targets it
 * served, in order).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Daemon, freePort, tempDir } from './proc';

export interface TinyProxy {
  /** `http://<listen address>:<port>`, for HTTPS_PROXY. */
  url: string;
  /** The `host:port` of every CONNECT it was asked for so far. */
  connects(): string[];
  stop(): Promise<void>;
}

/** Starts tinyproxy listening on `listen` (an address of this host) for clients from `allow`. */
export async function startTinyProxy(opts: { listen?: string; allow?: string } = {}): Promise<TinyProxy> {
  const dir = tempDir('tinyproxy-');
  const listen = opts.listen ?? '127.0.0.1';
  const port = await freePort(listen);
  // No ConnectPort line: CONNECT to any port (tinyproxy's sample allows 443 and 563 only).
  const conf = [`Port ${port}`, `Listen ${listen}`, `Allow ${opts.allow ?? '127.0.0.1'}`, 'Timeout 600', 'MaxClients 200', 'LogLevel Connect', ''];
  fs.writeFileSync(path.join(dir, 'tinyproxy.conf'), conf.join('\n'));
  const daemon = Daemon.spawn('tinyproxy', ['-d', '-c', path.join(dir, 'tinyproxy.conf')]);
  const stop = async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await daemon.waitForOutput(/Reloading config file finished/);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `http://${listen}:${port}`,
    connects: () => [...(daemon.stdout + daemon.stderr).matchAll(/Request \(file descriptor \d+\): CONNECT (\S+) HTTP/g)].map((m) => m[1]),
    stop,
  };
}

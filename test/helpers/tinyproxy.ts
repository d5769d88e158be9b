/**
 * tinyproxy (Debian package `tinyproxy`), a small real HTTP proxy, for the
 * HTTPS_PROXY tests: CONNECT to any port from loopback, every request logged
 * (`connects()` lists the CONNECT targets it served, in order).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Daemon, freePort, tempDir } from './proc';

export interface TinyProxy {
  /** `http://127.0.0.1:<port>`, for HTTPS_PROXY. */
  url: string;
  /** The `host:port` of every CONNECT it was asked for so far. */
  connects(): string[];
  stop(): Promise<void>;
}

export async function startTinyProxy(): Promise<TinyProxy> {
  const dir = tempDir('tinyproxy-');
  const port = await freePort();
  // No ConnectPort line: CONNECT to any port (tinyproxy's sample allows 443 and 563 only).
  fs.writeFileSync(path.join(dir, 'tinyproxy.conf'), [`Port ${port}`, 'Listen 127.0.0.1', 'Allow 127.0.0.1', 'Timeout 600', 'MaxClients 200', 'LogLevel Connect', ''].join('\n'));
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
    url: `http://127.0.0.1:${port}`,
    connects: () => [...(daemon.stdout + daemon.stderr).matchAll(/Request \(file descriptor \d+\): CONNECT (\S+) HTTP/g)].map((m) => m[1]),
    stop,
  };
}

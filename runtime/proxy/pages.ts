/**
 * The browser UI's pages, served by the proxy's web listener from the static
 * files in runtime/proxy/webui (HTML, one script, one stylesheet, the SVG
 * favicon; no build step). The pages hold no data: the script asks the web
 * API for it (the cluster name from ping), so no secret ever lands in HTML.
 *   /                              redirect to /web
 *   /web, /web/cluster/:site/nodes the nodes the logged-in user may see
 *   /web/login                     password + TOTP login
 *   /web/newuser/:token            sign-up: password and TOTP enrolment
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Logger } from '../utils/logger';

/** Only this origin's own files; no inline script or style; images may be data: URLs (the QR code). */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "frame-ancestors 'none'",
  "form-action 'self'",
  "base-uri 'none'",
  "object-src 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The files a path serves; nothing else under the folder is reachable. */
function fileFor(pathname: string): string | undefined {
  if (pathname === '/web' || pathname === '/web/' || /^\/web\/cluster\/[^/]+\/nodes\/?$/.test(pathname)) return 'nodes.html';
  if (pathname === '/web/login' || pathname === '/web/login/') return 'login.html';
  if (/^\/web\/newuser\/[^/]+\/?$/.test(pathname)) return 'newuser.html';
  if (pathname === '/web/app.js') return 'app.js';
  if (pathname === '/web/app.css') return 'app.css';
  if (pathname === '/web/favicon.svg') return 'favicon.svg';
  return undefined;
}

/**
 * The folder of the UI files: runtime/proxy/webui under the package root (the
 * directory with package.json), the same whether this code runs from dist/
 * after tsc (which copies no HTML) or from the sources under ts-jest.
 */
export function webUiDir(from = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'runtime', 'proxy', 'webui');
    if (path.dirname(dir) === dir) return path.join(from, 'webui');
  }
}

export class WebUi {
  constructor(
    private readonly log: Logger,
    readonly dir = webUiDir(),
  ) {
    if (!fs.existsSync(path.join(dir, 'nodes.html'))) log.warn('the web UI files are missing; only the web API is served', { dir });
  }

  /** Answers a GET or HEAD for a page or file; false when the path is not one. */
  async serve(pathname: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
    if (pathname === '/' || pathname === '/web/index.html') {
      res.writeHead(302, { location: '/web', 'content-length': 0 });
      res.end();
      return true;
    }
    const name = fileFor(pathname);
    if (!name) return false;
    let body: Buffer;
    try {
      body = await fs.promises.readFile(path.join(this.dir, name));
    } catch (err) {
      this.log.warn('cannot read a web UI file', { file: name, error: (err as Error).message });
      return false;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(name)], 'content-length': body.length, 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }
}

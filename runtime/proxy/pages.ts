/**
 * The browser UI's pages, served by the proxy's web listener from the static
 * files in runtime/proxy/webui (HTML, app.js and the audit page's audit.js, one stylesheet, the SVG
 * favicon; no build step), and xterm.js's built files straight from
 * node_modules by an allow-list (`/web/xterm/...`). The pages hold no data: the
 * script asks the web API for it (the cluster name from ping), so no secret
 * ever lands in HTML.
 *   /                              redirect to /web
 *   /web, /web/cluster/:site/nodes the nodes the logged-in user may see
 *   /web/login                     password + TOTP code or security key login
 *   /web/cli-mfa/:id               tsh login's security key: the user uses their key for that request (runtime/client/securitykey.ts)
 *   /web/account                   change password (current password and second factor)
 *   /web/audit                     the audit log: events of a time range, by type and user (audit.js)
 *   /web/newuser/:token            sign-up: password and TOTP enrolment
 *   /web/cluster/:site/console/node/:server/:login   a terminal on a node (terminal.ts); `?sid=<id>` joins that running session
 *   /web/cluster/:site/sessions    the sessions running on the nodes the user may see, to join
 *   /web/cluster/:site/session/:sid   plays a recorded session (play/pause, speed, seek)
 *
 * The logged-in pages share their navigation and user menu: `nav.html`, which
 * is not served itself, goes where a page says `{{NAV <page>}}`, with that
 * page's link marked current.
 *
 * The terminal and player pages' CSP differs in one directive, for xterm.js: it writes
 * its computed styles (theme colours, cell size) into `<style>` elements it
 * creates, and colours 24-bit-colour cells with `style` attributes. So that
 * page gets `style-src 'self' 'nonce-<random per response>'` (app.js gives
 * each `<style>` element xterm.js creates the nonce, which the page carries in
 * a `<meta>`) and `style-src-attr 'unsafe-inline'`; scripts stay `'self'` only.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Logger } from '../utils/logger';

/** The directives every page shares after the script and style ones. */
const POLICY_REST = ["img-src 'self' data:", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'", "object-src 'none'"];

/** Only this origin's own files; no inline script or style; images may be data: URLs (the QR code). */
export const CONTENT_SECURITY_POLICY = ["default-src 'self'", "script-src 'self'", "style-src 'self'", ...POLICY_REST].join('; ');

/** The terminal page's policy (module comment): style elements with the nonce, style attributes. */
export function terminalContentSecurityPolicy(nonce: string): string {
  return ["default-src 'self'", "script-src 'self'", `style-src 'self' 'nonce-${nonce}'`, "style-src-attr 'unsafe-inline'", ...POLICY_REST].join('; ');
}

/** What the terminal page's `<meta name="csp-nonce">` holds in the file, replaced by each response's nonce. */
const NONCE_PLACEHOLDER = '{{CSP_NONCE}}';

/** Where a logged-in page's navigation goes, naming the page (module comment). */
const NAV_PLACEHOLDER = /\{\{NAV ([a-z]+)\}\}/;

/** xterm.js's built files, served from the installed packages (no CDN, no copy). */
const PACKAGE_FILES: Record<string, string> = {
  '/web/xterm/xterm.js': '@xterm/xterm/lib/xterm.js',
  '/web/xterm/xterm.css': '@xterm/xterm/css/xterm.css',
  '/web/xterm/addon-fit.js': '@xterm/addon-fit/lib/addon-fit.js',
};

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
  if (pathname === '/web/account' || pathname === '/web/account/') return 'account.html';
  if (pathname === '/web/audit' || pathname === '/web/audit/') return 'audit.html';
  if (/^\/web\/newuser\/[^/]+\/?$/.test(pathname)) return 'newuser.html';
  if (/^\/web\/cli-mfa\/[0-9a-f]{32}\/?$/.test(pathname)) return 'cli-mfa.html';
  if (/^\/web\/cluster\/[^/]+\/sessions\/?$/.test(pathname)) return 'sessions.html';
  if (/^\/web\/cluster\/[^/]+\/session\/[0-9a-f-]{36}\/?$/.test(pathname)) return 'player.html';
  if (/^\/web\/cluster\/[^/]+\/console\/node\/[^/]+\/[^/]+\/?$/.test(pathname)) return 'terminal.html';
  if (pathname === '/web/app.js') return 'app.js';
  if (pathname === '/web/audit.js') return 'audit.js';
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
    const pkg = PACKAGE_FILES[pathname];
    const name = pkg ?? fileFor(pathname);
    if (!name) return false;
    let body: Buffer;
    try {
      body = await fs.promises.readFile(pkg ? require.resolve(pkg) : path.join(this.dir, name));
    } catch (err) {
      this.log.warn('cannot read a web UI file', { file: name, error: (err as Error).message });
      return false;
    }
    if (name.endsWith('.html')) body = await this.withNav(body);
    if (name === 'terminal.html' || name === 'player.html') {
      const nonce = randomBytes(16).toString('base64');
      body = Buffer.from(body.toString('utf8').replace(NONCE_PLACEHOLDER, nonce));
      res.setHeader('content-security-policy', terminalContentSecurityPolicy(nonce));
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(name)], 'content-length': body.length, 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }

  /** The page with its `{{NAV <page>}}` replaced by nav.html, the page's own link marked current. */
  private async withNav(page: Buffer): Promise<Buffer> {
    const text = page.toString('utf8');
    const at = NAV_PLACEHOLDER.exec(text);
    if (!at) return page;
    const nav = (await fs.promises.readFile(path.join(this.dir, 'nav.html'), 'utf8')).trimEnd();
    const current = nav.replace(`id="${at[1]}-link"`, `id="${at[1]}-link" aria-current="page"`);
    return Buffer.from(text.replace(at[0], current.trimStart()));
  }
}

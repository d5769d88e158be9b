/**
 * tsh beyond login: `ls` (filtered by the user's roles and by labels), `scp`,
 * `ssh -L/-R/-D/-A`, and `play`, against a real cluster (auth + node + proxy in
 * one process). `ls` and `play` reach the auth server through the proxy's
 * `proxy:@cluster` subsystem with the user's TLS certificate.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { startCluster, TestAuth } from '../helpers/cluster';
import { cliPath, Daemon, freePort, run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

/** A TCP server that answers each line with `echo:<line>`. */
function echoServer(): Promise<{ port: number; close(): void }> {
  return new Promise((resolve) => {
    const server = net.createServer((sock) => {
      sock.on('data', (d) => sock.write(`echo:${d}`));
      sock.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as net.AddressInfo).port, close: () => server.close() }));
  });
}

/** Sends one line to 127.0.0.1:port and returns the first answer. */
function ask(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(line));
    sock.once('data', (d) => {
      resolve(d.toString());
      sock.destroy();
    });
    sock.once('error', reject);
  });
}

describe('tsh ls, scp, ssh -L/-R/-D/-A and play', () => {
  let c: TestAuth;
  let alice: TshUser;
  let work: string;

  beforeAll(async () => {
    work = tempDir('tsh-cmds-');
    c = await startCluster({ proxy: { insecureNoTls: true }, labels: { env: 'staging', team: 'infra' }, commands: [{ name: 'arch', command: ['echo', 'x86'], period: '1h' }] });
    alice = await TshUser.signUp(c, 'alice', [LOGIN]);
    await alice.login();
  });
  afterAll(async () => {
    await c?.cleanup();
    alice?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a logged-in user WHEN tsh ls runs THEN the node is listed with its static and command labels', async () => {
    const r = await alice.tsh(['ls']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^Node Name\s+Address\s+Labels$/);
    expect(lines[1]).toMatch(/^-+ +-+ +-+$/);
    expect(lines[2]).toMatch(new RegExp(`^test-auth\\s+127\\.0\\.0\\.1:${c.nodePort}\\s+arch=x86,env=staging,team=infra$`));
    expect(lines).toHaveLength(3);
  });

  it('GIVEN label selectors WHEN tsh ls runs THEN only matching nodes are listed; -v adds the node ID', async () => {
    expect((await alice.tsh(['ls', 'env=staging,team=infra'])).stdout).toMatch(/^test-auth /m);
    expect((await alice.tsh(['ls', 'env=prod'])).stdout).not.toMatch(/test-auth/);
    const v = await alice.tsh(['ls', '-v']);
    expect(v.stdout).toMatch(/^Node Name\s+Node ID\s+Address\s+Labels$/m);
    expect(v.stdout).toMatch(/^test-auth\s+[0-9a-f-]{36}\s+127\.0\.0\.1:\d+/m);
    const bad = await alice.tsh(['ls', 'env']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/ERROR: "env" is not a label selector: expected key=value/);
  });

  it('GIVEN a user whose role allows only other labels WHEN tsh ls runs THEN the node is not listed', async () => {
    const rolePath = path.join(work, 'role.yaml');
    fs.writeFileSync(
      rolePath,
      ['kind: role', 'version: v3', 'metadata:', '  name: prod-only', 'spec:', '  allow:', '    logins: [nobody]', '    node_labels:', '      env: prod', '  deny: {}', ''].join('\n'),
    );
    await c.tctlOk('create', rolePath);
    const bob = await TshUser.signUp(c, 'bob', ['nobody'], { roles: ['prod-only'] });
    try {
      await bob.login();
      const r = await bob.tsh(['ls']);
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(/test-auth/);
    } finally {
      bob.cleanup();
    }
  });

  it('GIVEN files WHEN tsh scp copies them to and from the node THEN the bytes and modes arrive; -r copies a tree', async () => {
    const src = path.join(work, 'up.bin');
    const data = crypto.randomBytes(3 * 1024 * 1024 + 7);
    fs.writeFileSync(src, data, { mode: 0o640 });
    const remoteDir = tempDir('tsh-scp-remote-');
    try {
      const up = await alice.tsh(['scp', src, `${LOGIN}@test-auth:${remoteDir}/copied.bin`]);
      expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 0, stderr: '' });
      expect(fs.readFileSync(path.join(remoteDir, 'copied.bin')).equals(data)).toBe(true);
      expect(fs.statSync(path.join(remoteDir, 'copied.bin')).mode & 0o777).toBe(0o640);

      const downDir = tempDir('tsh-scp-down-');
      const down = await alice.tsh(['scp', `test-auth:${remoteDir}/copied.bin`, downDir]);
      expect(down.code).toBe(0);
      expect(fs.readFileSync(path.join(downDir, 'copied.bin')).equals(data)).toBe(true);

      const tree = path.join(work, 'tree');
      fs.mkdirSync(path.join(tree, 'sub'), { recursive: true });
      fs.writeFileSync(path.join(tree, 'sub', 'leaf.txt'), 'leaf\n');
      const noR = await alice.tsh(['scp', tree, `test-auth:${remoteDir}`]);
      expect(noR.code).not.toBe(0);
      expect(noR.stderr).toMatch(/is a directory \(use -r/);
      const rec = await alice.tsh(['scp', '-r', tree, `test-auth:${remoteDir}`]);
      expect(rec.code).toBe(0);
      expect(fs.readFileSync(path.join(remoteDir, 'tree', 'sub', 'leaf.txt'), 'utf8')).toBe('leaf\n');

      const missing = await alice.tsh(['scp', `test-auth:${remoteDir}/nope`, downDir]);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toMatch(/nope: no such file or directory/);
      fs.rmSync(downDir, { recursive: true, force: true });
    } finally {
      fs.rmSync(remoteDir, { recursive: true, force: true });
    }
  });

  it('GIVEN a logged-in user WHEN tsh clusters runs THEN the cluster behind the proxy is listed online', async () => {
    const r = await alice.tsh(['clusters']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout.trimEnd().split('\n').map((l) => l.trim().split(/\s+/).join(' '))).toEqual(['Cluster Name Status', '------------ ------', 'example.com online']);
  });

  it('GIVEN -L WHEN a local connection is made THEN it reaches the target from the node', async () => {
    const echo = await echoServer();
    const local = await freePort();
    const tsh = Daemon.spawn(process.execPath, [cliPath('tsh'), 'ssh', '-N', '-L', `${local}:127.0.0.1:${echo.port}`, 'test-auth'], { HOME: alice.home, TELEPORT_HOME: '' });
    try {
      const answer = await waitFor('the -L listener', () => ask(local, 'via-L\n').catch(() => undefined));
      expect(answer).toBe('echo:via-L\n');
    } finally {
      await tsh.stop();
      echo.close();
    }
  });

  it('GIVEN -D WHEN curl goes through the SOCKS5 and SOCKS4a proxy THEN its requests leave from the node; a non-SOCKS client is dropped alone', async () => {
    const web = http.createServer((req, res) => res.end(`hello ${req.url} from ${req.socket.remoteAddress}`));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    const webPort = (web.address() as net.AddressInfo).port;
    const socks = await freePort();
    const tsh = Daemon.spawn(process.execPath, [cliPath('tsh'), 'ssh', '-N', '-D', String(socks), 'test-auth'], { HOME: alice.home, TELEPORT_HOME: '' });
    try {
      // GIVEN the listener is up (a plain TCP connect succeeds)
      await waitFor('the -D listener', () => new Promise<boolean>((res) => net.connect(socks, '127.0.0.1', function (this: net.Socket) { this.destroy(); res(true); }).once('error', () => res(false))));
      // WHEN a client that does not speak SOCKS connects THEN only it is dropped
      const junk = await new Promise<string>((resolve) => {
        let got = '';
        const sock = net.connect(socks, '127.0.0.1', () => sock.write('GET / HTTP/1.0\r\n\r\n'));
        sock.on('data', (d) => (got += d));
        sock.on('error', () => undefined);
        sock.on('close', () => resolve(got === '' ? 'closed without a reply' : got));
      });
      expect(junk).toBe('closed without a reply');
      // AND curl resolves "localhost" on the far side (socks5h, socks4a) and by address (socks5, socks4)
      for (const proto of ['socks5h', 'socks4a']) {
        const r = await run('curl', ['-sS', '--max-time', '20', '-x', `${proto}://127.0.0.1:${socks}`, `http://localhost:${webPort}/${proto}`]);
        expect({ proto, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ proto, code: 0, stdout: `hello /${proto} from 127.0.0.1`, stderr: '' });
      }
      for (const proto of ['socks5', 'socks4']) {
        const r = await run('curl', ['-sS', '--max-time', '20', '-x', `${proto}://127.0.0.1:${socks}`, `http://127.0.0.1:${webPort}/${proto}`]);
        expect({ proto, code: r.code, stdout: r.stdout }).toEqual({ proto, code: 0, stdout: `hello /${proto} from 127.0.0.1` });
      }
      // AND a port nothing listens on is refused with a SOCKS error, not a hang
      const closed = await freePort();
      const refused = await run('curl', ['-sS', '--max-time', '20', '-x', `socks5h://127.0.0.1:${socks}`, `http://localhost:${closed}/`]);
      expect(refused.code).toBe(97); // curl: proxy handshake error (the SOCKS server refused the connection)
      expect(tsh.stderr).toMatch(new RegExp(`channel for -D to localhost:${closed}: open failed`));
    } finally {
      await tsh.stop();
      web.close();
    }
  });

  it('GIVEN -R WHEN a program on the node connects to the forwarded port THEN it reaches the target on the client side', async () => {
    const echo = await echoServer();
    const remote = await freePort();
    const script = `exec 3<>/dev/tcp/127.0.0.1/${remote}; echo via-R >&3; head -n1 <&3`;
    const r = await alice.tsh(['ssh', '-R', `${remote}:127.0.0.1:${echo.port}`, 'test-auth', 'bash', '-c', `'${script}'`]);
    echo.close();
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('echo:via-R\n');
    expect(r.code).toBe(0);
  });

  it('GIVEN -A WHEN a program on the node lists the forwarded agent THEN it holds the tsh certificate', async () => {
    const cert = fs.readFileSync(path.join(alice.home, '.tsh', 'keys', '127.0.0.1', 'alice-cert.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
    const r = await alice.tsh(['ssh', '-A', 'test-auth', 'ssh-add', '-L']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split(' ').slice(0, 2).join(' ')).toBe(cert);
    const without = await alice.tsh(['ssh', 'test-auth', 'ssh-add -L; echo "exit=$?"']);
    expect(without.stdout).toMatch(/exit=2/);
  });

  it('GIVEN an interactive session WHEN tsh play runs with its ID THEN what was typed and shown is played back; another user may not', async () => {
    // script(1) gives tsh a terminal, so the session is interactive and recorded.
    const typed = await run('script', ['-qec', `${process.execPath} ${cliPath('tsh')} ssh test-auth`, '/dev/null'], {
      env: { HOME: alice.home, TELEPORT_HOME: '' },
      input: 'echo "sid=$TELEPORT_SESSION"; echo typed-$((6*7)); exit\r',
    });
    const sid = /sid=([0-9a-f-]{36})/.exec(typed.stdout)![1];
    const played = await waitFor('the recording', async () => {
      const r = await alice.tsh(['--proxy=127.0.0.1', 'play', sid]);
      return r.code === 0 ? r : undefined;
    });
    expect(played.stdout).toContain('typed-42');
    expect(played.stdout).toContain(`sid=${sid}`);

    const carol = await TshUser.signUp(c, 'carol', ['nobody'], { roles: ['prod-only'] });
    try {
      await carol.login();
      const denied = await carol.tsh(['play', sid]);
      expect(denied.code).not.toBe(0);
      expect(denied.stderr).toMatch(/ERROR: no recording of session/);
      expect(denied.stdout).toBe('');
    } finally {
      carol.cleanup();
    }
  });
});

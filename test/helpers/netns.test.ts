/**
 * The network labs of test/helpers/netns.ts (root, iproute2, nftables): labs of different
 * prefixes never share addresses, a lab is cut off as it says, and close() leaves nothing.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { NetLab } from './netns';

const ipOut = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

describe('NetLab', () => {
  const labs: NetLab[] = [];
  afterAll(() => {
    for (const lab of labs) lab.close();
  });

  it('GIVEN two labs of different prefixes THEN they hold different numbers (and so different addresses), each with its lock', () => {
    const a = NetLab.create('tlaba');
    labs.push(a);
    const b = NetLab.create('tlabb');
    labs.push(b);
    expect(a.n).not.toBe(b.n);
    expect(a.addr(1)).not.toBe(b.addr(1));
    expect(fs.readFileSync(`/run/tnetlab${a.n}.pid`, 'utf8')).toBe(`${process.pid} ${process.env.TELEPORT_TS_TEST_RUN} tlaba`);
  });

  it('GIVEN a lab with a namespace linked to this host WHEN it closes THEN its namespace, link, route and lock are gone', async () => {
    // GIVEN
    const lab = NetLab.create('tlabc');
    labs.push(lab);
    const ns = lab.namespace('x');
    lab.veth({ dev: lab.hostDev('h'), addr: `${lab.addr(1)}/30` }, { ns, dev: 'eth0', addr: `${lab.addr(2)}/30` });
    // (the namespace reaches this host over its link, and this host has no route to the rest of the lab's /24)
    expect(await lab.probe(ns, lab.addr(1), 9)).toBe('ECONNREFUSED');
    expect(await lab.probe(undefined, lab.addr(6), 9)).toBe('EHOSTUNREACH');
    // WHEN
    lab.close();
    // THEN
    expect(ipOut('netns', 'list')).not.toContain(ns);
    expect(ipOut('-o', 'link', 'show')).not.toContain(lab.hostDev('h'));
    expect(ipOut('route', 'show', 'type', 'unreachable')).not.toContain(`${lab.addr(0)}/24`);
    expect(fs.existsSync(`/run/tnetlab${lab.n}.pid`)).toBe(false);
  });
});

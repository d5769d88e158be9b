/**
 * Network addresses as written in teleport.yaml and flags: `host:port`,
 * `[ipv6]:port`, a bare host or IPv6 address (the field's default port), or
 * `:port` (all interfaces).
 */

import { BlockList, isIP, isIPv6 } from 'node:net';
import { BadParameterError } from '../utils/errors';
import { unmapIPv4 } from '../utils/ip';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const HOSTNAME = /^[A-Za-z0-9_.-]+$/;

/** Parses an address; `defaultPort` is used when the text has none. Port 0 means "any free port". */
export function parseAddr(text: string, defaultPort: number): HostPort {
  const s = text.trim();
  const bad = (why: string) =>
    new BadParameterError(`invalid address ${JSON.stringify(text)}: ${why}`);
  if (s === '') throw bad('it is empty; expected host:port');
  if (s.includes('://')) throw bad('expected host:port, not a URL');

  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw bad('missing "]" after the IPv6 address');
    host = s.slice(1, close);
    const after = s.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw bad(`unexpected ${JSON.stringify(after)} after "]"`);
      portText = after.slice(1);
    }
    if (!isIPv6(host.split('%')[0])) throw bad(`${JSON.stringify(host)} is not an IPv6 address`);
  } else {
    const colons = s.split(':').length - 1;
    if (colons > 1) {
      if (!isIPv6(s.split('%')[0])) throw bad('expected host:port (write IPv6 addresses as [addr]:port)');
      host = s;
    } else if (colons === 1) {
      const i = s.indexOf(':');
      host = s.slice(0, i);
      portText = s.slice(i + 1);
    } else {
      host = s;
    }
    if (host === '') {
      if (portText === undefined) throw bad('missing host');
      host = '0.0.0.0';
    } else if (!isIPv6(host) && !HOSTNAME.test(host)) {
      throw bad(`${JSON.stringify(host)} is not a valid host name or IP address`);
    }
  }

  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d+$/.test(portText)) throw bad(`port ${JSON.stringify(portText)} is not a number`);
    port = Number(portText);
    if (port > 65535) throw bad(`port ${port} is out of range (0-65535)`);
  }
  return { host, port };
}

/** Like {@link parseAddr}, for an address that has no default port: the text must name one. */
export function parseAddrWithPort(text: string): HostPort {
  const addr = parseAddr(text, -1);
  if (addr.port === -1) throw new BadParameterError(`invalid address ${JSON.stringify(text)}: missing port; expected host:port`);
  return addr;
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatAddr(addr: HostPort): string {
  return addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/** True for the "all interfaces" hosts a server binds to but a client cannot dial. */
export function isUnspecifiedHost(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::' || /^0*:(0*:)*0*$/.test(host);
}

/** The address a local client dials to reach a server listening on `addr`. */
export function dialableAddr(addr: HostPort): HostPort {
  if (!isUnspecifiedHost(addr.host)) return addr;
  return { host: addr.host.includes(':') ? '::1' : '127.0.0.1', port: addr.port };
}

/** An address block: `ip/prefix`, or one address (`ip`, a /32 or /128). */
export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** Parses `10.0.0.0/8`, `2001:db8::/32` or a single IP address. */
export function parseCidr(text: string): Cidr {
  const s = text.trim();
  const slash = s.indexOf('/');
  const address = slash < 0 ? s : s.slice(0, slash);
  const version = isIP(address);
  if (version === 0) throw new BadParameterError(`invalid address block ${JSON.stringify(text)}: expected an IP address or ip/prefix such as 10.0.0.0/16`);
  const max = version === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : s.slice(slash + 1);
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > max) {
    throw new BadParameterError(`invalid address block ${JSON.stringify(text)}: the prefix length must be 0 to ${max}`);
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** A set of address blocks: whether an IP falls in any of them (an IPv4-mapped IPv6 address counts as IPv4). */
export class AddressSet {
  private readonly blocks = new BlockList();
  readonly empty: boolean;

  constructor(cidrs: readonly Cidr[]) {
    for (const c of cidrs) this.blocks.addSubnet(c.address, c.prefix, c.family);
    this.empty = cidrs.length === 0;
  }

  has(ip: string): boolean {
    const addr = unmapIPv4(ip);
    const version = isIP(addr);
    return version !== 0 && this.blocks.check(addr, version === 4 ? 'ipv4' : 'ipv6');
  }
}

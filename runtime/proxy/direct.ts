/**
 * Which addresses that are not cluster nodes the proxy may dial for
 * `proxy:host:port` (`proxy_service.direct_dial_cidrs`): none by default, so
 * the proxy is never a relay into the network behind it. A host name is
 * resolved once and the proxy dials the allowed IP it resolved to, so a
 * second DNS answer cannot move the connection elsewhere.
 */
import { BlockList, isIP } from 'node:net';
import { parseCidr } from '../config/address';

export class DirectDialPolicy {
  private readonly allowed = new BlockList();
  private readonly empty: boolean;

  constructor(cidrs: string[]) {
    for (const c of cidrs) {
      const { network, prefix, family } = parseCidr(c);
      this.allowed.addSubnet(network, prefix, family);
    }
    this.empty = cidrs.length === 0;
  }

  private allows(ip: string): boolean {
    const version = isIP(ip);
    return version !== 0 && this.allowed.check(ip, version === 4 ? 'ipv4' : 'ipv6');
  }

  /** The IP to dial for `host` (an IP, or a name that resolved to `resolvedIPs`), or undefined when none is allowed. */
  pick(host: string, resolvedIPs: string[]): string | undefined {
    if (this.empty) return undefined;
    const candidates = isIP(host) ? [host] : resolvedIPs;
    return candidates.find((ip) => this.allows(ip));
  }
}

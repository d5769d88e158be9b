/**
 * Which addresses that are not cluster nodes the proxy may dial for
 * `proxy:host:port` (`proxy_service.direct_dial_cidrs`): none by default, so
 * the proxy is never a relay into the network behind it. A host name is
 * resolved once and the proxy dials the allowed IP it resolved to, so a
 * second DNS answer cannot move the connection elsewhere.
 */
import { isIP } from 'node:net';
import { AddressSet, type Cidr } from '../config/address';

export class DirectDialPolicy {
  private readonly allowed: AddressSet;

  constructor(cidrs: readonly Cidr[]) {
    this.allowed = new AddressSet(cidrs);
  }

  /** The IP to dial for `host` (an IP, or a name that resolved to `resolvedIPs`), or undefined when none is allowed. */
  pick(host: string, resolvedIPs: string[]): string | undefined {
    if (this.allowed.empty) return undefined;
    const candidates = isIP(host) ? [host] : resolvedIPs;
    return candidates.find((ip) => this.allowed.has(ip));
  }
}

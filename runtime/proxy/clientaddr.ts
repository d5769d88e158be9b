/**
 * Who a web request comes from. Without configuration it is the TCP peer.
 * Behind a load balancer (an ALB re-encrypting to 3080, or one terminating
 * TLS for `--insecure-no-tls`) every peer is the load balancer, so
 * `proxy_service.trust_x_forwarded_for_from` names the balancers' addresses:
 * on a connection from one of them, X-Forwarded-For is read from the right
 * (each hop appends the address it saw) past the trusted hops, and the first
 * untrusted address is the client. A client cannot choose its address this
 * way: what it writes itself stays to the left of what the balancer appends.
 * A malformed entry stops the walk at the hop that wrote it.
 */
import * as http from 'node:http';
import { isIP } from 'node:net';
import { AddressSet, type Cidr } from '../config/address';
import { unmapIPv4 } from '../utils/ip';

export class ClientAddress {
  private readonly trusted: AddressSet;

  constructor(trustXForwardedForFrom: readonly Cidr[] = []) {
    this.trusted = new AddressSet(trustXForwardedForFrom);
  }

  private isTrusted(addr: string): boolean {
    return this.trusted.has(addr);
  }

  /** The client's address: the TCP peer, or what a trusted load balancer says in X-Forwarded-For. */
  of(req: http.IncomingMessage): string {
    let addr = unmapIPv4(req.socket.remoteAddress ?? '');
    if (!this.isTrusted(addr)) return addr;
    const header = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((h) => h.trim());
    for (let i = hops.length - 1; i >= 0 && hops[i] !== ''; i--) {
      const hop = unmapIPv4(hops[i]);
      if (isIP(hop) === 0) return addr;
      addr = hop;
      if (!this.isTrusted(addr)) return addr;
    }
    return addr;
  }
}

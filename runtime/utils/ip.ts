/** IP address forms that must compare alike. */

/** `::ffff:a.b.c.d` as `a.b.c.d`, so an IPv4 client looks the same on a dual-stack listener; anything else as it is. */
export function unmapIPv4(addr: string): string {
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)?.[1] ?? addr;
}

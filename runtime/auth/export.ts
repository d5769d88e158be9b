/**
 * The cluster CAs in OpenSSH's formats (formats.md §1.8), as `tctl auth export` prints them and the
 * proxy serves them at `/webapi/auth/export`: the user CA as authorized_keys `cert-authority`
 * lines, the host CA as known_hosts `@cert-authority` lines, or the host CA's TLS certificates.
 * Every key of a CA is listed: two during a rotation.
 */
export type ExportType = 'user' | 'host' | 'tls';

/** One line per key; `keyLines` are authorized_keys lines (a comment after the key is dropped). */
export function exportLines(type: 'user' | 'host', cluster: string, keyLines: string[]): string[] {
  return keyLines.map((line) => {
    const key = line.trim().split(/\s+/).slice(0, 2).join(' ');
    return type === 'user'
      ? `cert-authority ${key} type=user&clustername=${encodeURIComponent(cluster)}`
      : `@cert-authority ${cluster},*.${cluster},[${cluster}]:*,[*.${cluster}]:* ${key} type=host`;
  });
}

/** Types of proxy-from-env 2.1.0 (the package ships none). */
declare module 'proxy-from-env' {
  /** The proxy URL for `url` from the *_PROXY and NO_PROXY environment variables, or '' for none. */
  export function getProxyForUrl(url: string | URL): string;
}

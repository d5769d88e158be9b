/**
 * How long an idle connection to the auth API is kept, on both ends. A node
 * or proxy calls the auth service at most every heartbeat period (half the
 * announce TTL, at most 300 s), so its connection must outlive that: with
 * Node's default of 5 s every heartbeat paid a new mutual-TLS handshake
 * (5 ms of auth CPU, against under 1 ms on a kept connection). The client
 * lets go of an idle connection a minute before the server would close it,
 * so it never sends a request on a connection the server is closing.
 *
 * Only connections whose client certificate this cluster's CAs verified are
 * kept: the server closes an anonymous caller's connection after each
 * response (auth/http.ts), so no one holds idle connections without credentials.
 */
export const AUTH_KEEP_ALIVE_MS = 10 * 60_000;

/** How long the client keeps an idle connection: less than the server does. */
export const AUTH_CLIENT_IDLE_MS = AUTH_KEEP_ALIVE_MS - 60_000;

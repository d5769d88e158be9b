/**
 * The flags of `teleport start`, as a commander command without its action,
 * and how their values become the StartFlags that buildConfig merges over
 * the file. Kept apart from teleport.ts so that tests can walk the flags.
 */
import { Command } from 'commander';
import type { StartFlags } from '../config';
import { collect } from './common';

export function startCommand(): Command {
  return new Command('start')
    .description('Starts the Teleport services')
    .option('-d, --debug', 'Enable verbose logging to stderr')
    .option('--insecure-no-tls', 'Disable TLS for the web socket')
    .option('-r, --roles <roles>', 'Comma-separated list of roles to start with [proxy,node,auth]')
    .option('--pid-file <path>', 'Full path to the PID file. By default no PID file will be created')
    .option('--advertise-ip <ip>', 'IP to advertise to clients if running behind NAT')
    .option('-l, --listen-ip <ip>', 'IP address to bind to [0.0.0.0]')
    .option('--auth-server <addr>', 'Address of the auth server [127.0.0.1:3025] (repeatable)', collect)
    .option('--token <token>', 'Invitation token to join a cluster [none]')
    .option('--ca-pin <pin>', 'CA pin to validate the auth server (sha256:<hex>, repeatable)', collect)
    .option('--nodename <name>', 'Name of this node, defaults to hostname')
    .option('-c, --config <path>', 'Path to a configuration file [/etc/teleport.yaml]')
    .option('--labels <labels>', 'List of labels for this node, e.g. env=prod,kernel=[1h:"uname -r"]')
    .option('--insecure', "Establish trust with a root cluster without verifying its web proxy's HTTPS certificate (tests only; start warns)")
    .option('--diag-addr <host:port>', 'Start the diagnostics endpoint (/healthz, /readyz, /metrics over plain HTTP) on this address [off]')
    .option('--permit-user-env', 'Enables reading of ~/.tsh/environment when creating a session')
    .option('--data-dir <path>', 'Directory for keys and state [/var/lib/teleport, or ~/.local/share/teleport for non-root]');
}

/** commander's values (named after the long flags) as StartFlags: `--nodename` is `nodeName`. */
export function toStartFlags(raw: Record<string, unknown>): StartFlags {
  const { nodename, ...rest } = raw as StartFlags & { nodename?: string };
  return { ...rest, ...(nodename !== undefined ? { nodeName: nodename } : {}) };
}

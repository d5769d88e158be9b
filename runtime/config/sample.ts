/**
 * The commented sample teleport.yaml that `teleport configure` prints: all
 * three services on one machine, every value valid for this implementation.
 */

import { hostname } from 'node:os';
import { Defaults } from './config';

/** A YAML scalar: plain when safe, double-quoted otherwise. */
function scalar(value: string): string {
  return /^[A-Za-z0-9/][A-Za-z0-9._/-]*$/.test(value) ? value : JSON.stringify(value);
}

export interface SampleConfigOptions {
  /** @default os.hostname() */
  readonly nodeName?: string;
  /** @default /var/lib/teleport */
  readonly dataDir?: string;
}

export function sampleConfig(opts: SampleConfigOptions = {}): string {
  const nodeName = scalar(opts.nodeName ?? hostname());
  const dataDir = opts.dataDir ?? Defaults.dataDirRoot;
  const dir = scalar(dataDir);
  const commentDir = dataDir.replace(/[\r\n]+/g, ' ');
  return `# A sample Teleport configuration file.
# Save it as /etc/teleport.yaml (or pass it with -c/--config) and edit it.
# Flags given to "teleport start" override the values in this file.

# This section applies to all teleport services.
teleport:
  # The name this node is reachable by. Defaults to the hostname.
  nodename: ${nodeName}

  # Where Teleport keeps its keys, its state and the audit log.
  data_dir: ${dir}

  # Diagnostics endpoint (plain HTTP): /healthz, /readyz and Prometheus /metrics.
  # Off unless set; keep it on loopback or a private network.
  # diag_addr: 127.0.0.1:3000

  # Invitation token used to join a cluster; only used on the first start.
  # A value starting with "/" is read from that file.
  # auth_token: xxxx-token-xxxx

  # The CA pin of the auth server, as printed by "tctl status".
  # ca_pin: sha256:<64 hex digits>   (or the path of a file holding pins)

  # The auth servers to connect to. More than one in an HA setup.
  auth_servers:
    - 127.0.0.1:3025

  # Connection throttling.
  connection_limits:
    max_connections: ${Defaults.maxConnections}
    max_users: ${Defaults.maxUsers}

  # Logging: output is stderr, stdout or the absolute path of a file
  # (reopened on SIGHUP); severity is DEBUG, INFO, WARN or ERROR.
  log:
    output: stderr
    severity: INFO

  # Cluster state storage: dir (embedded SQLite under data_dir), dynamodb or etcd.
  storage:
    type: dir
    # audit_events_uri: ['dynamodb://teleport-events']
    # audit_sessions_uri: 's3://teleport-recordings/records'

# The auth service: the cluster's certificate authority and API.
auth_service:
  enabled: yes

  # Part of every certificate this CA signs. Changing it invalidates all
  # certificates and keys (wipe ${commentDir} after a change). Without it,
  # a new cluster is named after this host (its nodename).
  cluster_name: main

  # Where other Teleport services reach the auth API.
  listen_addr: 0.0.0.0:3025

  # Key type of the cluster's SSH certificate authorities:
  # ed25519, ecdsa-p256, ecdsa-p384 or rsa.
  ca_key_type: ed25519

  authentication:
    # local: Teleport's own user database (github, oidc and saml are not
    # supported yet).
    type: local
    # otp or off (u2f is not supported).
    second_factor: otp

  # Static join tokens, "roles:token"; a token starting with "/" is read
  # from that file. Prefer short-lived tokens from "tctl nodes add".
  # tokens:
  #   - "proxy,node:replace-with-a-32-character-random-token"

  # Where sessions are recorded: node or off (proxy is not supported yet).
  session_recording: node

# The node service: the SSH server on this machine.
ssh_service:
  enabled: yes
  listen_addr: 0.0.0.0:3022

  # Static labels of this node.
  labels:
    env: example

  # Commands run periodically; their output becomes a label.
  commands:
    - name: hostname
      command: [hostname]
      period: 1m0s

  # Read ~/.tsh/environment when a session starts.
  permit_user_env: false

  # When an audit event or recording cannot be written (disk full): refuse the
  # session (the default) or run it unaudited (continue).
  audit_failure: refuse

  # Worker processes that serve SSH connections when the node is busy: auto
  # (one per core, at most 8), 0 (none), or a count.
  workers: auto

  pam:
    enabled: no
    service_name: sshd

# The proxy service: the front door for users.
proxy_service:
  enabled: yes

  # SSH clients connect here.
  listen_addr: 0.0.0.0:3023

  # HTTPS: the web UI and the login API of tsh.
  web_listen_addr: 0.0.0.0:3080

  # The name users reach the proxy by; set it when behind a load balancer.
  # public_addr: teleport.example.com:3080

  # TLS certificates for HTTPS. Without one, a self-signed pair is generated.
  # The first is the default; the others are served to clients that ask for
  # one of their DNS names (SNI).
  # https_keypairs:
  #   - key_file: ${commentDir}/webproxy_key.pem
  #     cert_file: ${commentDir}/webproxy_cert.pem

  # Or a certificate from Let's Encrypt for the public_addr names, instead of
  # https_keypairs: the proxy orders and renews it itself, validated on port
  # 443 of those names (run web_listen_addr on 443, or forward 443 to it).
  # acme:
  #   enabled: yes
  #   email: admin@example.com
`;
}

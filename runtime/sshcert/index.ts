/** OpenSSH keys, private key files and certificates on node:crypto: the public API of runtime/sshcert. */
export { SshReader, SshWriter } from './wire';
export {
  type KeyAlgorithm,
  type KeyPair,
  DEFAULT_RSA_BITS,
  generateKeyPair,
  keyAlgorithmOf,
  publicKeyBlob,
  sshKeyType,
  blobType,
  parsePublicKeyBlob,
  formatAuthorizedKey,
  parseAuthorizedKey,
  sshSign,
  sshVerify,
  signatureAlgorithm,
  fingerprintSHA256,
} from './keys';
export { encodeOpenSSHPrivateKey, decodeOpenSSHPrivateKey, readOpenSSHPrivateKey, loadPrivateKey } from './privatekey';
export {
  type CertType,
  type CertificateFields,
  type Certificate,
  type VerifyOptions,
  MAX_VALID_BEFORE,
  signCertificate,
  parseCertificate,
  verifyCertificate,
  isCertificateType,
  certKeyType,
  certTypeFor,
} from './cert';
export {
  USER_CERT_TTL,
  CLOCK_SKEW_MS,
  type UserCertParams,
  type UserCertPermissions,
  type HostCertParams,
  signUserCert,
  signHostCert,
  hostPrincipals,
  marshalCertRoles,
  EXT_PERMIT_PTY,
  EXT_PERMIT_PORT_FORWARDING,
  EXT_PERMIT_AGENT_FORWARDING,
  EXT_PERMIT_X11_FORWARDING,
  EXT_TELEPORT_ROLES,
  EXT_TELEPORT_TRAITS,
  EXT_TELEPORT_ROUTE_TO_CLUSTER,
  EXT_TELEPORT_ROLE,
  EXT_TELEPORT_AUTHORITY,
} from './issue';
export { CLIENT_HOST_KEY_ALGORITHMS, certBaseAlgorithm, hostKeyWithCertificate, plainHostKey, verifyUserCertAuth, clientCertIdentity, hostCertVerifier, type UserCertAuthOptions, type HostCertVerifierOptions } from './ssh2';

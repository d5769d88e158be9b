/** teleport.yaml: schema, loading with file:line errors, flag merging, defaults, the sample config. */

export { parseAddr, parseCidr, formatAddr, dialableAddr, isUnspecifiedHost, type Cidr, type HostPort } from './address';
export { parseDuration, formatDuration } from './duration';
export { ConfigError, formatIssue, type ConfigIssue } from './errors';
export { parseLabelsFlag, splitCommand, labelNameProblem, type CommandLabel } from './labels';
export {
  STATIC_TOKEN_ROLES,
  parseStaticTokenSpec,
  readTokenValue,
  readCaPinsValue,
  normalizeCaPin,
  type StaticTokenRole,
  type StaticTokenSpec,
} from './tokens';
export {
  FileConfigSchema,
  STORAGE_TYPES,
  CA_KEY_TYPES,
  knownKeysAt,
  describeValue,
  type FileConfig,
} from './schema';
export {
  DEFAULT_CONFIG_PATH,
  parseConfig,
  loadConfigFile,
  resolveConfigPath,
  formatPath,
  sourceMapOf,
  SourceMap,
} from './load';
export {
  Defaults,
  type AcmeSettings,
  SERVICE_ROLES,
  autoWorkers,
  buildConfig,
  defaultDataDir,
  loadTeleportConfig,
  parseRoles,
  parseSessionsUri,
  type CaKeyType,
  type CaKeyParams,
  type Pkcs11Config,
  type AwsKmsConfig,
  HSM_CA_KEY_TYPE,
  type ServiceRole,
  type Severity,
  type StartFlags,
  type StaticToken,
  type SessionsStorage,
  type StorageConfig,
  type TeleportConfig,
} from './config';
export { sampleConfig, type SampleConfigOptions } from './sample';

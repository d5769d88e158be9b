/** The CA key stores: the public API of runtime/keystore. */
import type { CaKeyParams } from '../config';
import { CAKeyStores, LocalKeyStore } from './keystore';
import { Pkcs11KeyStore } from './pkcs11';
import { AwsKmsKeyStore } from './awskms';

export { CAKeyStores, LocalKeyStore, type KeyStore, type KeyUse } from './keystore';
export { localSigner, signLocally, type Signer, type SignatureHash } from './signer';
export { Pkcs11KeyStore } from './pkcs11';
export { AwsKmsKeyStore } from './awskms';

/**
 * The key stores of `auth_service.ca_key_params`: new CA keys go into the
 * configured token or KMS; keys made in process before it was configured keep
 * working (stored in the backend) until the CA is rotated.
 */
export async function openCAKeyStores(params: CaKeyParams | undefined): Promise<CAKeyStores> {
  const local = new LocalKeyStore();
  if (!params) return new CAKeyStores(local);
  const store = 'pkcs11' in params ? Pkcs11KeyStore.open(params.pkcs11) : await AwsKmsKeyStore.open(params.awsKms);
  return new CAKeyStores(store, [store, local]);
}

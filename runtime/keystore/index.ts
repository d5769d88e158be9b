/** The CA key stores: the public API of runtime/keystore. */
import type { CaKeyParams } from '../config';
import { CAKeyStores, LocalKeyStore } from './keystore';
import { Pkcs11KeyStore } from './pkcs11';

export { CAKeyStores, LocalKeyStore, type KeyStore, type KeyUse } from './keystore';
export { localSigner, signLocally, type Signer, type SignatureHash } from './signer';
export { Pkcs11KeyStore } from './pkcs11';

/**
 * The key stores of `auth_service.ca_key_params`: new CA keys go into the
 * configured token; keys made in process before it was configured keep
 * working (stored in the backend) until the CA is rotated.
 */
export function openCAKeyStores(params: CaKeyParams | undefined): CAKeyStores {
  const local = new LocalKeyStore();
  if (!params) return new CAKeyStores(local);
  const token = Pkcs11KeyStore.open(params.pkcs11);
  return new CAKeyStores(token, [token, local]);
}

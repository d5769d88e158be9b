/** `auth_service.ca_key_params`: the CA keys in a PKCS#11 token or AWS KMS, checked when the config is read. */
import { join } from 'node:path';
import { buildConfig, parseConfig } from '../../../runtime/config';
import { errorLines, tempDirWith, yaml } from './helpers';

const ENV = { HOME: '/home/alice' };
const dir = tempDirWith({ 'module.so': 'a module', pin: '1234\n', 'empty-pin': '\n' });
const MODULE = join(dir, 'module.so');

const build = (...authLines: string[]) => buildConfig(parseConfig(yaml('auth_service:', ...authLines.map((l) => `  ${l}`)), 'teleport.yaml'), {}, ENV);
const pkcs11 = (...lines: string[]) => ['ca_key_params:', '  pkcs11:', ...lines.map((l) => `    ${l}`)];

describe('auth_service.ca_key_params', () => {
  test('GIVEN a module, a token label and a PIN file WHEN built THEN the settings, their lines and ECDSA P-256 CA keys', () => {
    // GIVEN / WHEN
    const c = build(...pkcs11(`module_path: ${MODULE}`, 'token_label: hsm1', `pin_path: ${join(dir, 'pin')}`));
    // THEN
    expect(c.caKeyParams).toEqual({
      pkcs11: {
        modulePath: MODULE,
        tokenLabel: 'hsm1',
        pin: '1234',
        where: {
          module_path: 'teleport.yaml:4:7: auth_service.ca_key_params.pkcs11.module_path',
          token: 'teleport.yaml:5:7: auth_service.ca_key_params.pkcs11.token_label',
          pin: 'teleport.yaml:6:7: auth_service.ca_key_params.pkcs11.pin_path',
        },
      },
    });
    expect(c.caKeyType).toBe('ecdsa-p256');
  });

  test('GIVEN a slot number and an inline PIN WHEN built THEN both are taken', () => {
    const c = build(...pkcs11(`module_path: ${MODULE}`, 'slot_number: 7', 'pin: "0001"'));
    expect(c.caKeyParams).toMatchObject({ pkcs11: { slotNumber: 7, pin: '0001' } });
    expect(c.caKeyParams).not.toHaveProperty('pkcs11.tokenLabel');
  });

  test('GIVEN no ca_key_params WHEN built THEN the CA keys stay in process (ed25519)', () => {
    const c = build('enabled: yes');
    expect(c.caKeyParams).toBeUndefined();
    expect(c.caKeyType).toBe('ed25519');
  });

  test.each([
    ['an unknown key under pkcs11', [...pkcs11(`module_path: ${MODULE}`, 'token_label: a', 'pin: "1"', 'max_sessions: 3')], /teleport\.yaml:7:7: unknown key "max_sessions" in auth_service\.ca_key_params\.pkcs11/],
    ['an unknown key store', ['ca_key_params:', '  gcp_kms:', '    keyring: x'], /teleport\.yaml:3:5: .*gcp_kms/],
    ['two key stores', [...pkcs11(`module_path: ${MODULE}`, 'token_label: a', 'pin: "1"'), '  aws_kms:', '    account: "123456789012"', '    region: us-west-2'], /auth_service\.ca_key_params: names two key stores: give pkcs11 or aws_kms, not both/],
    ['a malformed AWS account', ['ca_key_params:', '  aws_kms:', '    account: "1234"', '    region: us-west-2'], /teleport\.yaml:4:\d+: .*expected an AWS account ID \(12 digits\), got "1234"/],
    ['a malformed AWS region', ['ca_key_params:', '  aws_kms:', '    account: "123456789012"', '    region: "us west"'], /teleport\.yaml:5:\d+: .*expected an AWS region such as us-west-2/],
    ['aws_kms without a region', ['ca_key_params:', '  aws_kms:', '    account: "123456789012"'], /auth_service\.ca_key_params\.aws_kms: missing "region"/],
    ['a signer role of another account', ['ca_key_params:', '  aws_kms:', '    account: "123456789012"', '    region: us-west-2', '    signer_role_arn: arn:aws:iam::210987654321:role/auth'], /teleport\.yaml:6:\d+: auth_service\.ca_key_params\.aws_kms\.signer_role_arn: names a role of account 210987654321, but the keys are created in account 123456789012/],
    ['a signer that is not a role', ['ca_key_params:', '  aws_kms:', '    account: "123456789012"', '    region: us-west-2', '    signer_role_arn: arn:aws:iam::123456789012:user/alice'], /teleport\.yaml:6:\d+: .*expected an IAM role ARN/],
    ['an unknown key under aws_kms', ['ca_key_params:', '  aws_kms:', '    account: "123456789012"', '    region: us-west-2', '    multi_region: true'], /teleport\.yaml:6:7: unknown key "multi_region" in auth_service\.ca_key_params\.aws_kms/],
    ['no key store', ['ca_key_params: {}'], /teleport\.yaml:2:\d+: auth_service\.ca_key_params: names no key store/],
    ['both slot_number and token_label', pkcs11(`module_path: ${MODULE}`, 'slot_number: 1', 'token_label: a', 'pin: "1"'), /auth_service\.ca_key_params\.pkcs11: give exactly one of slot_number and token_label/],
    ['neither slot_number nor token_label', pkcs11(`module_path: ${MODULE}`, 'pin: "1"'), /give exactly one of slot_number and token_label/],
    ['both pin and pin_path', pkcs11(`module_path: ${MODULE}`, 'token_label: a', 'pin: "1"', `pin_path: ${join(dir, 'pin')}`), /give exactly one of pin and pin_path/],
    ['no PIN', pkcs11(`module_path: ${MODULE}`, 'token_label: a'), /give exactly one of pin and pin_path/],
    ['a missing module', pkcs11('module_path: /nonexistent/lib.so', 'token_label: a', 'pin: "1"'), /teleport\.yaml:4:\d+: auth_service\.ca_key_params\.pkcs11\.module_path: no such file: "\/nonexistent\/lib\.so"/],
    ['a missing PIN file', pkcs11(`module_path: ${MODULE}`, 'token_label: a', `pin_path: ${join(dir, 'nope')}`), /teleport\.yaml:6:\d+: auth_service\.ca_key_params\.pkcs11\.pin_path: cannot read PIN file/],
    ['an empty PIN file', pkcs11(`module_path: ${MODULE}`, 'token_label: a', `pin_path: ${join(dir, 'empty-pin')}`), /pin_path: PIN file .* is empty/],
    ['a CA key type the token does not make', ['ca_key_type: ed25519', ...pkcs11(`module_path: ${MODULE}`, 'token_label: a', 'pin: "1"')], /teleport\.yaml:2:\d+: auth_service\.ca_key_type: must be ecdsa-p256 \(or left out\) when the CA keys are in a PKCS#11 token/],
  ])('GIVEN %s WHEN built THEN a config error at its line', (_what, lines, message) => {
    // GIVEN / WHEN
    const errors = errorLines(() => build(...(lines as string[])));
    // THEN
    expect(errors.some((l) => (message as RegExp).test(l))).toBe(true);
  });

  test('GIVEN aws_kms with an account and a region WHEN built THEN they are taken with their line, and the CA keys are ECDSA P-256', () => {
    const c = build('ca_key_params:', '  aws_kms:', '    account: "123456789012"', '    region: eu-west-1');
    expect(c.caKeyParams).toEqual({ awsKms: { account: '123456789012', region: 'eu-west-1', where: 'teleport.yaml:3:5: auth_service.ca_key_params.aws_kms' } });
    expect(c.caKeyType).toBe('ecdsa-p256');
  });

  test('GIVEN aws_kms with a signer role of its account WHEN built THEN the role is taken (the keys get a policy naming it)', () => {
    const c = build('ca_key_params:', '  aws_kms:', '    account: "123456789012"', '    region: eu-west-1', '    signer_role_arn: arn:aws:iam::123456789012:role/teleport/auth');
    expect(c.caKeyParams).toMatchObject({ awsKms: { signerRoleArn: 'arn:aws:iam::123456789012:role/teleport/auth' } });
  });

  test('GIVEN an inline PIN WHEN a setting is wrong THEN the error does not repeat the PIN', () => {
    const errors = errorLines(() => build(...pkcs11('module_path: /nonexistent/lib.so', 'token_label: a', 'pin: "s3cr3t-pin"')));
    expect(errors.join('\n')).not.toContain('s3cr3t-pin');
  });
});

import { BadParameterError } from '../../../runtime/utils/errors';
import { dialableAddr, formatAddr, parseAddr } from '../../../runtime/config';

describe('parseAddr', () => {
  test.each([
    ['10.1.0.5:3025', 3025, { host: '10.1.0.5', port: 3025 }],
    ['auth.example.com', 3025, { host: 'auth.example.com', port: 3025 }],
    ['auth.example.com:443', 3025, { host: 'auth.example.com', port: 443 }],
    ['[::1]:3022', 3022, { host: '::1', port: 3022 }],
    ['[fe80::1]', 3080, { host: 'fe80::1', port: 3080 }],
    ['2001:db8::5', 3025, { host: '2001:db8::5', port: 3025 }],
    [':3080', 3080, { host: '0.0.0.0', port: 3080 }],
    ['127.0.0.1:0', 3025, { host: '127.0.0.1', port: 0 }],
  ])('GIVEN %s (default port %d) WHEN parsed THEN host and port are right', (text, def, want) => {
    expect(parseAddr(text, def)).toEqual(want);
  });

  test.each([
    ['host:99999', /port 99999 is out of range/],
    ['host:http', /port "http" is not a number/],
    ['', /empty/],
    ['https://host:3080', /not a URL/],
    ['[::1', /missing "]"/],
    ['bad host:22', /not a valid host name/],
    ['a:b:c', /IPv6 addresses as \[addr\]:port/],
  ])('GIVEN %j WHEN parsed THEN a BadParameterError names the problem', (text, why) => {
    expect(() => parseAddr(text, 3025)).toThrow(BadParameterError);
    expect(() => parseAddr(text, 3025)).toThrow(why);
  });
});

describe('formatAddr and dialableAddr', () => {
  test('GIVEN IPv4 and IPv6 addresses WHEN formatted THEN IPv6 is bracketed', () => {
    expect(formatAddr({ host: '10.0.0.1', port: 3025 })).toBe('10.0.0.1:3025');
    expect(formatAddr({ host: '::1', port: 3022 })).toBe('[::1]:3022');
    expect(formatAddr(parseAddr('[fe80::1]:80', 1))).toBe('[fe80::1]:80');
  });

  test('GIVEN an all-interfaces listen address WHEN made dialable THEN it becomes loopback', () => {
    expect(dialableAddr({ host: '0.0.0.0', port: 3025 })).toEqual({ host: '127.0.0.1', port: 3025 });
    expect(dialableAddr({ host: '::', port: 3025 })).toEqual({ host: '::1', port: 3025 });
    expect(dialableAddr({ host: '10.0.0.7', port: 3025 })).toEqual({ host: '10.0.0.7', port: 3025 });
  });
});

import { BadParameterError } from '../../../runtime/utils/errors';
import { parseLabelsFlag, splitCommand } from '../../../runtime/config';

describe('parseLabelsFlag', () => {
  test("GIVEN the manual's --labels example WHEN parsed THEN it gives command labels", () => {
    expect(parseLabelsFlag('uptime=[1m:"uptime -p"],kernel=[1h:"uname -r"]')).toEqual({
      labels: {},
      commands: [
        { name: 'uptime', command: ['uptime', '-p'], periodMs: 60_000 },
        { name: 'kernel', command: ['uname', '-r'], periodMs: 3_600_000 },
      ],
    });
  });

  test('GIVEN the same flag after the shell removed the quotes WHEN parsed THEN the result is the same', () => {
    expect(parseLabelsFlag('uptime=[1m:uptime -p]').commands).toEqual([{ name: 'uptime', command: ['uptime', '-p'], periodMs: 60_000 }]);
  });

  test('GIVEN static labels mixed with commands holding commas and quotes WHEN parsed THEN each is split right', () => {
    expect(parseLabelsFlag(`env=prod, team="a b",load=[30s:sh -c 'cut -d" " -f1,2 /proc/loadavg']`)).toEqual({
      labels: { env: 'prod', team: 'a b' },
      commands: [{ name: 'load', command: ['sh', '-c', 'cut -d" " -f1,2 /proc/loadavg'], periodMs: 30_000 }],
    });
  });

  test.each([
    ['env', /expected name=value/],
    ['bad key=x', /invalid label name "bad key"/],
    ['a=1,a=2', /given more than once/],
    ['up=[1m uptime]', /expected \[period:command\]/],
    ['up=[1x:uptime]', /invalid duration "1x"/],
    ['up=[0s:uptime]', /greater than zero/],
    ['up=[1m:]', /the command is empty/],
    ['up=[1m:"uptime]', /unterminated " quote/],
  ])('GIVEN --labels %j WHEN parsed THEN a BadParameterError names the item', (spec, why) => {
    expect(() => parseLabelsFlag(spec)).toThrow(BadParameterError);
    expect(() => parseLabelsFlag(spec)).toThrow(why);
  });
});

describe('splitCommand', () => {
  test('GIVEN commands with quotes WHEN split THEN quoted words stay whole', () => {
    expect(splitCommand('uname -r')).toEqual(['uname', '-r']);
    expect(splitCommand('"uname -r"')).toEqual(['uname', '-r']);
    expect(splitCommand(`sh -c "echo 'a b'"`)).toEqual(['sh', '-c', "echo 'a b'"]);
    expect(splitCommand(`printf '' x`)).toEqual(['printf', '', 'x']);
  });
});

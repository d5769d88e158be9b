/**
 * sim/lambda/pattern.ts: EventBridge pattern matching as EventBridge rules and Lambda event
 * filters use it, and refusal of patterns it does not understand.
 */
import { compilePattern, PatternError } from '../../sim/lambda/pattern';

const event = {
  source: 'aws.autoscaling',
  'detail-type': 'EC2 Instance-terminate Lifecycle Action',
  resources: ['arn:aws:autoscaling:group/a', 'arn:aws:autoscaling:group/b'],
  detail: { AutoScalingGroupName: 'acme-auth', Count: 5, Ip: '10.231.0.7', Missing: null, Items: [{ k: 'x' }, { k: 'y' }] },
  dynamodb: { Keys: { FullPath: { S: 'teleport/authorities/host/acme' } } },
};

describe('event patterns', () => {
  test.each([
    ['exact values in a list', { source: ['aws.ec2', 'aws.autoscaling'] }, true],
    ['an exact value that differs', { source: ['aws.ec2'] }, false],
    ['a nested object', { detail: { AutoScalingGroupName: ['acme-auth'] } }, true],
    ['DynamoDB JSON as Lambda filters it', { dynamodb: { Keys: { FullPath: { S: ['teleport/authorities/host/acme'] } } } }, true],
    ['DynamoDB JSON of another key', { dynamodb: { Keys: { FullPath: { S: ['teleport/authorities/user/acme'] } } } }, false],
    ['any element of an array field', { resources: ['arn:aws:autoscaling:group/b'] }, true],
    ['objects in an array field', { detail: { Items: { k: ['y'] } } }, true],
    ['prefix', { detail: { AutoScalingGroupName: [{ prefix: 'acme-' }] } }, true],
    ['prefix that differs', { detail: { AutoScalingGroupName: [{ prefix: 'web-' }] } }, false],
    ['prefix ignoring case', { detail: { AutoScalingGroupName: [{ prefix: { 'equals-ignore-case': 'ACME-' } }] } }, true],
    ['suffix', { detail: { AutoScalingGroupName: [{ suffix: '-auth' }] } }, true],
    ['equals-ignore-case', { source: [{ 'equals-ignore-case': 'AWS.AutoScaling' }] }, true],
    ['wildcard', { 'detail-type': [{ wildcard: 'EC2 Instance-*-terminate*' }] }, false],
    ['wildcard matching', { 'detail-type': [{ wildcard: 'EC2 Instance-*Action' }] }, true],
    ['anything-but a value', { source: [{ 'anything-but': 'aws.ec2' }] }, true],
    ['anything-but the value', { source: [{ 'anything-but': ['aws.ec2', 'aws.autoscaling'] }] }, false],
    ['anything-but a prefix', { source: [{ 'anything-but': { prefix: 'aws.' } }] }, false],
    ['anything-but on a missing field', { nothing: [{ 'anything-but': 'x' }] }, false],
    ['exists true', { detail: { Count: [{ exists: true }] } }, true],
    ['exists true on a missing field', { detail: { Nope: [{ exists: true }] } }, false],
    ['exists false on a missing field', { detail: { Nope: [{ exists: false }] } }, true],
    ['exists false inside a missing object', { nothing: { at: [{ exists: false }] } }, true],
    ['exists false on a present field', { detail: { Count: [{ exists: false }] } }, false],
    ['null', { detail: { Missing: [null] } }, true],
    ['numeric range', { detail: { Count: [{ numeric: ['>', 0, '<=', 5] }] } }, true],
    ['numeric out of range', { detail: { Count: [{ numeric: ['<', 5] }] } }, false],
    ['cidr', { detail: { Ip: [{ cidr: '10.231.0.0/16' }] } }, true],
    ['cidr outside', { detail: { Ip: [{ cidr: '10.0.0.0/16' }] } }, false],
    ['$or', { $or: [{ source: ['aws.ec2'] }, { detail: { Count: [5] } }] }, true],
    ['every key must match', { source: ['aws.autoscaling'], detail: { Count: [6] } }, false],
  ])('%s', (_name, pattern, expected) => {
    // GIVEN the pattern WHEN it is matched against the event THEN the result is EventBridge's
    expect(compilePattern(pattern)(event)).toBe(expected);
  });

  test('JSON text patterns (FilterCriteria) compile like objects', () => {
    expect(compilePattern('{"eventName":["INSERT","MODIFY"]}')({ eventName: 'MODIFY' })).toBe(true);
    expect(compilePattern('{"eventName":["INSERT","MODIFY"]}')({ eventName: 'REMOVE' })).toBe(false);
  });

  test.each([
    ['not JSON', '{eventName'],
    ['not an object', '["INSERT"]'],
    ['a bare value', { source: 'aws.ec2' }],
    ['an empty list', { source: [] }],
    ['an unknown operator', { source: [{ regex: '.*' }] }],
    ['two operators in one object', { source: [{ prefix: 'a', suffix: 'b' }] }],
    ['a bad numeric', { n: [{ numeric: ['~', 1] }] }],
    ['a bad cidr', { ip: [{ cidr: '10.0.0.0' }] }],
  ])('a pattern with %s is refused', (_name, pattern) => {
    expect(() => compilePattern(pattern)).toThrow(PatternError);
  });
});

/**
 * The cache's ordered key index: range reads walk only their range, in order,
 * however the keys were added and removed.
 */
import { SortedKeys } from '../../../runtime/backend/sortedkeys';

describe('SortedKeys', () => {
  it('GIVEN keys added out of order, twice, and some removed THEN a range is exactly the keys in it, in order', () => {
    // GIVEN
    const index = new SortedKeys(['/b/2', '/a/1']);
    for (const k of ['/c/1', '/b/1', '/b/3', '/b/2', '/a/2']) index.add(k);
    index.delete('/a/1');
    index.delete('/not/there');
    // THEN
    expect(index.size).toBe(5);
    expect(index.range('/b/', '/b/\uffff')).toEqual(['/b/1', '/b/2', '/b/3']);
    expect(index.range('/b/2', '/b/3')).toEqual(['/b/2']);
    expect(index.range('', '\uffff')).toEqual(['/a/2', '/b/1', '/b/2', '/b/3', '/c/1']);
    expect(index.range('/d/', '/d/\uffff')).toEqual([]);
  });
});

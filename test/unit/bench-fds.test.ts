/** The bench's leak line: libuv's reserve fd is named as kept on purpose, every other new fd is a leak. Pure. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fdChanges, leakLine } from '../../bench/lib/fds.js';

const start = new Map([[0, '/dev/null'], [1, '/tmp/out.txt'], [2, '/tmp/err.txt'], [18, 'anon_inode:[eventpoll]']]);
const reserve = new Map([[21, '/dev/null']]);

test('the reserve fd is kept on purpose, not a leak', () => {
  const c = fdChanges(start, new Map([...start, [21, '/dev/null']]), reserve);
  assert.equal(c, { leaked: [], kept: ['21 -> /dev/null'] });
  assert.match(leakLine(c, 0), /^Leaks within the run: 0 fds, 0 netns; 1 fd kept open on purpose: 21 -> \/dev\/null \(libuv's reserve fd/);
});

test('a real leak still shows, next to the reserve fd', () => {
  const c = fdChanges(start, new Map([...start, [21, '/dev/null'], [22, 'socket:[123]'], [23, '/dev/null']]), reserve);
  assert.equal(c, { leaked: ['22 -> socket:[123]', '23 -> /dev/null'], kept: ['21 -> /dev/null'] });
  assert.match(leakLine(c, 2), /^Leaks within the run: 2 fds \(22 -> socket:\[123\], 23 -> \/dev\/null\), 2 netns; 1 fd kept/);
});

test('an fd number reused for another file is a leak; closed fds are not counted', () => {
  const c = fdChanges(start, new Map([[0, '/dev/null'], [1, '/tmp/out.txt'], [21, '/run/x.lock']]), reserve);
  assert.equal(c, { leaked: ['21 -> /run/x.lock'], kept: [] });
  assert.is(leakLine(fdChanges(start, start, new Map()), 0), 'Leaks within the run: 0 fds, 0 netns.');
});

test.run();

/** A user's own link kind, typed by augmenting LinkKindOptions, goes through linkAdd's typed options like a built-in. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { registerLinkKind, linkRequests, attrs, splitMessages, encode } from '../../src/index.js';
import { decodeLink } from '../../src/netlink/route/link.js';

const vcanAttrs = { mtuHint: attrs.attr(7, attrs.u32) } as const;
declare module '../../src/index.js' {
  interface LinkKindOptions {
    xvcan: { mtuHint?: number };
  }
}

test('augmented kind: typed options in, decoded options out', () => {
  registerLinkKind({ kind: 'xvcan', data: vcanAttrs });
  const req = linkRequests.addLinkRequest('xv0', 'xvcan', { mtuHint: 42 });
  const m = splitMessages(encode(req))[0]!;
  assert.equal(decodeLink(m).options, { mtuHint: 42 });
  // The augmentation types the options: a wrong type is a compile error (checked by tsc).
  // @ts-expect-error mtuHint is a number
  assert.ok(() => linkRequests.addLinkRequest('xv1', 'xvcan', { mtuHint: 'x' }));
});

test.run();

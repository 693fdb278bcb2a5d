/** The bench's table and verdict formatting: a missing row (CNI plugins absent, a failed method) prints "n/a", never NaN. Pure. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fmtCount, fmtDelta, fmtRatio, levelRow, missedTargets, ratioOf, sumSteps, verdict, verdictLine } from '../../bench/lib/report.js';
import { fmtMs } from '../../bench/lib/stats.js';

test('fmtMs: precision by size; n/a for a figure that was not measured', () => {
  assert.is(fmtMs(2.8544), '2.854');
  assert.is(fmtMs(63.5), '63.50');
  assert.is(fmtMs(245.04), '245.0');
  assert.is(fmtMs(undefined), 'n/a');
  assert.is(fmtMs(NaN), 'n/a');
  assert.is(fmtMs(Infinity), 'n/a');
});

test('ratioOf and fmtRatio: a missing side gives n/a, not NaNx', () => {
  assert.is(fmtRatio(ratioOf(5.362, 2.854)), '1.88x');
  assert.is(fmtRatio(ratioOf(undefined, 2.854)), 'n/a');
  assert.is(fmtRatio(ratioOf(2.854, undefined)), 'n/a');
  assert.is(fmtRatio(ratioOf(NaN, NaN)), 'n/a');
  assert.is(fmtRatio(ratioOf(1, 0)), 'n/a');
  assert.is(fmtCount(100 / (153.1 / 1000)), '653');
  assert.is(fmtCount(100 / (NaN / 1000)), 'n/a');
});

test('fmtDelta: signed, n/a when a side is missing', () => {
  assert.is(fmtDelta(20.7), '+20.70');
  assert.is(fmtDelta(-59.2), '-59.20');
  assert.is(fmtDelta(0.5), '+0.500');
  assert.is(fmtDelta(NaN - 1), 'n/a');
});

test('levelRow: the scale table row of a skipped method (CNI plugins absent) is all n/a', () => {
  assert.equal(levelRow('CNI bridge ADD', [undefined, undefined, undefined]), ['CNI bridge ADD', 'n/a', 'n/a', 'n/a', 'n/a']);
  assert.equal(levelRow('tsnetlink connect', [2.854, 2.736, 5.362]), ['tsnetlink connect', '2.854', '2.736', '5.362', '1.88x']);
  // A level that failed in the middle keeps the others; a missing first or last level makes the ratio n/a.
  assert.equal(levelRow('x', [2, NaN, 4]), ['x', '2.000', 'n/a', '4.000', '2.00x']);
  assert.equal(levelRow('x', [NaN, 3, 4]), ['x', 'n/a', '3.000', '4.000', 'n/a']);
  assert.ok(!levelRow('x', [undefined, NaN]).some((c) => /NaN/.test(c)));
});

test('sumSteps: the mapping steps that were timed; NaN (printed n/a) when none was', () => {
  const steps = { 'reserve ports': 0.255, 'create veth': 1.372, 'port mappings': 1.474 };
  assert.ok(Math.abs(sumSteps(steps, ['reserve ports', 'port mappings']) - 1.729) < 1e-9);
  // A step this version does not have is left out instead of turning the sum into NaN.
  assert.ok(Math.abs(sumSteps(steps, ['reserve ports', 'start port mappings', 'port mappings']) - 1.729) < 1e-9);
  assert.ok(Number.isNaN(sumSteps({ 'create veth': 1 }, ['reserve ports', 'port mappings'])));
  assert.equal(levelRow('  of which the mapping steps', [sumSteps({}, ['port mappings']), sumSteps({}, ['port mappings'])]), ['  of which the mapping steps', 'n/a', 'n/a', 'n/a']);
});

test('verdict: an unmeasurable figure is N/A, not MISSED; missedTargets counts only misses', () => {
  const met = verdict('ip x8 / tsnetlink connect', 22.2, 15, 'min', 'x');
  const miss = verdict('tsnetlink connect p50', 2.854, 1, 'max', 'ms');
  const na = verdict('CNI bridge ADD / tsnetlink connect', ratioOf(undefined, 2.854), 8, 'min', 'x', 'plugins not installed');
  assert.is(met.met, true);
  assert.is(miss.met, false);
  assert.is(na.met, null);
  assert.match(verdictLine(met), /^ {2}MET {5}ip x8 \/ tsnetlink connect: 22\.20x \(target >= 15\.00x; 48% headroom\)$/);
  assert.match(verdictLine(miss), /MISSED {2}tsnetlink connect p50: 2\.854 ms \(target <= 1\.000 ms; missed by 185%\)/);
  assert.is(verdictLine(na), '  N/A     CNI bridge ADD / tsnetlink connect: not measurable (plugins not installed)');
  assert.equal(missedTargets([met, miss, na]), [miss]);
  assert.equal(missedTargets([met, na]), []);
});

test.run();

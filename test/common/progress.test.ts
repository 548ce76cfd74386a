import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressBar, formatBytes, formatDuration, formatRate, renderProgress } from '../../services/common/progress.ts';

function fakeOutput(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, output: { isTTY, columns: 200, write: (text: string) => writes.push(text) } };
}

test('formatting helpers', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(1024 ** 3), '1.00 GiB');
  assert.equal(formatRate(34512), '34.5k');
  assert.equal(formatRate(2_500_000), '2.50M');
  assert.equal(formatDuration(75), '1:15');
  assert.equal(formatDuration(3725), '1:02:05');
});

test('renderProgress: bar, percentage, amounts, fields, rate and ETA', () => {
  const line = renderProgress({
    label: 'produce J',
    current: 512 * 1024,
    total: 1024 * 1024,
    unit: 'bytes',
    fields: { rows: 12345, bad: 3 },
    rate: 1500,
    rateName: 'rows',
    etaSeconds: 12,
    elapsedSeconds: 12,
  });
  assert.equal(line, 'produce J  [##########----------]   50%  512 KiB/1.00 MiB  rows 12,345  bad 3  1.5k rows/s  ETA 0:12');
});

test('on a terminal the bar redraws in place, throttled; finish prints the average rate', () => {
  let now = 0;
  const { writes, output } = fakeOutput(true);
  const bar = new ProgressBar({ label: 'p', total: 100, rateField: 'rows', output, now: () => now, redrawMs: 100 });
  now = 1000;
  bar.update(10, { rows: 100 });
  now = 1050;
  bar.update(20, { rows: 200 }); // within 100 ms: no redraw
  now = 2000;
  bar.update(50, { rows: 500 });
  assert.equal(writes.length, 2);
  assert.ok(writes.every((w) => w.startsWith('\r') && w.endsWith('\u001b[K')));
  assert.match(writes[1]!, /50%.*rows 500.*250 rows\/s.*ETA 0:02/);
  now = 4000;
  bar.finish({ rows: 1000 });
  assert.ok(writes[2]!.startsWith(`\r\u001b[Kp `));
  assert.match(writes[2]!, /rows 1,000 .*250 rows\/s/);
  assert.ok(writes[2]!.endsWith('\n'));
});

test('without a terminal it logs a line every logEveryMs, and a final line', () => {
  let now = 0;
  const { writes, output } = fakeOutput(false);
  const bar = new ProgressBar({ label: 'p', output, now: () => now, logEveryMs: 10_000 });
  for (now = 1000; now <= 25_000; now += 1000) bar.update(now, {});
  assert.equal(writes.length, 2);
  assert.ok(writes.every((w) => !w.includes('\r') && w.endsWith('\n')));
  bar.finish();
  assert.equal(writes.length, 3);
});

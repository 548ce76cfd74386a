/**
 * The gallery page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no browser
 * download): job list, prompt search, detail view with the full image and its metadata. Screenshots go
 * to test-output/. Without chromium the test fails in CI (CI=true) and is skipped locally.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { chromium } from 'playwright-core';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createTestEnv } from '../helpers/env.ts';
import { completeJobRows, startApp } from './helpers/app-server.ts';
import { sampleRows, writeFixtureJob } from './helpers/fixture-jobs.ts';

/** The page's globals, typed just enough for the functions run in the page below (tsconfig has no DOM lib). */
interface PageElement {
  complete?: boolean;
  naturalWidth?: number;
  textContent: string | null;
}
declare const document: {
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
  querySelector(selector: string): PageElement | null;
};

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const OUT_DIR = path.join(PACKAGE_ROOT, 'test-output');

test('gallery: pick a job, search a prompt, open the detail view with image and metadata', async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    const message = `${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the gallery browser test`;
    if (process.env.CI === 'true') assert.fail(message);
    t.skip(message);
    return;
  }
  const { store } = await createTestEnv();
  await writeFixtureJob(store, {
    jobId: '01JQGALLERY0000000000000000',
    rows: completeJobRows(),
    size: 128,
    badLines: [{ line: 5, error: 'invalid JSON', raw: '{' }],
  });
  await writeFixtureJob(store, { jobId: '01JQGALLERY0000000000000001', rows: sampleRows(3), complete: false, size: 96 });
  const { url } = await startApp(store);

  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 860 },
    // waitForFunction polls by evaluating its predicate inside the page, which the gallery's own strict
    // CSP (script-src 'self', sent by services/query/app.ts) refuses whenever the first check is not
    // already true (a slow machine): so this browser ignores CSP. The page under test is unchanged.
    bypassCSP: true,
  });
  after(async () => {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
  fs.mkdirSync(OUT_DIR, { recursive: true });

  await page.goto(`${url}/`);
  // Both jobs listed with their status; the complete one opens first, all its 15 images as cards.
  await page.locator('.job').nth(1).waitFor();
  assert.deepEqual(await page.locator('.job .badge').allTextContents(), ['complete', 'running']);
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 15);
  await page.waitForFunction(() => [...document.querySelectorAll('.card img')].every((img) => img.complete && (img.naturalWidth ?? 0) > 0));
  assert.match((await page.locator('#job-head').textContent()) ?? '', /12 rows · 15 images · 2 errors · model tiny-flux/);
  await page.screenshot({ path: path.join(OUT_DIR, 'gallery-grid.png') });

  await page.fill('#q', 'LIGHTHOUSE');
  await page.press('#q', 'Enter');
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 2);
  assert.deepEqual(await page.locator('.card').evaluateAll((cards) => cards.map((c) => c.getAttribute('data-row'))), ['2', '9']);
  assert.match((await page.locator('#status').textContent()) ?? '', /2 images matching “LIGHTHOUSE”/);

  await page.locator('.card').first().click();
  await page.locator('#detail').waitFor({ state: 'visible' });
  await page.waitForFunction(
    `(() => { const img = document.querySelector('#detail-img'); return img !== null && img.complete && img.naturalWidth > 0; })()`,
  );
  assert.equal(await page.locator('#detail-img').evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth), 128);
  assert.equal(await page.locator('#detail-prompt').textContent(), 'a lighthouse at dusk #2');
  assert.equal(await page.locator('#detail-title').textContent(), 'Row 2 · image 0');
  await page.waitForFunction(() => document.querySelector('[data-field="model"]')?.textContent === 'tiny-flux');
  const field = (name: string) => page.locator(`[data-field="${name}"]`).textContent();
  assert.equal(await field('seed'), '2000');
  assert.equal(await field('size'), '128 × 128');
  assert.equal(await field('steps'), '4');
  assert.equal(await field('guidance'), '3.5');
  await page.screenshot({ path: path.join(OUT_DIR, 'gallery-detail.png') });

  // A running job: its stored images, with the prompt read from the PNG's own metadata.
  await page.keyboard.press('Escape');
  await page.locator('#detail').waitFor({ state: 'hidden' });
  await page.fill('#q', '');
  await page.press('#q', 'Enter');
  await page.locator('.job').nth(1).click();
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 4);
  await page.locator('.card[data-row="3"][data-k="1"]').click();
  await page.waitForFunction(() => document.querySelector('#detail-prompt')?.textContent === 'a bowl of ramen, studio light, variant #3');
  assert.equal(await field('seed'), '3001');

  // A slow answer never blocks or pollutes what was asked after it: search the complete job and, while
  // that answer is held back, switch to the running job (under load the old page showed it empty forever).
  await page.keyboard.press('Escape');
  await page.locator('#detail').waitFor({ state: 'hidden' });
  await page.locator('.job').nth(0).click();
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 15);
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  let markHeld: () => void = () => {};
  const held = new Promise<void>((resolve) => (markHeld = resolve));
  const isRows = (u: URL) => u.pathname.endsWith('/rows');
  await page.route(
    isRows,
    async (route) => {
      markHeld();
      await gate;
      await route.continue();
    },
    { times: 1 },
  );
  await page.fill('#q', 'ramen');
  await page.press('#q', 'Enter');
  await held;
  await page.locator('.job').nth(1).click();
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 4);
  const staleAnswer = page.waitForEvent('requestfinished', (request) => isRows(new URL(request.url())));
  release();
  await staleAnswer;
  // The page handles the answer in the tasks after it arrived; one more task there, then look.
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 0)));
  assert.equal(await page.locator('.card').count(), 4, 'the held-back search added nothing to the running job');

  assert.deepEqual(problems, []);
});

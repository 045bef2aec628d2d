// A citizen on a 360×800 phone, without an account: the H5 page's grouped matter list filtered by
// pinyin initials, the town's grid map, the phone's position, a photo, the tracking number and query
// code, the progress page, and a word sent to whoever handles the report.
import { test, expect } from '@playwright/test';
import { accessible, photo, placeOfGw001, shoot } from './helpers.mjs';

test('a citizen reports from the H5 page and follows the report', async ({ browser, request }) => {
  const place = await placeOfGw001(request);
  const context = await browser.newContext({
    viewport: { width: 360, height: 800 },
    geolocation: { latitude: place.lat, longitude: place.lon },
    permissions: ['geolocation'],
    isMobile: true,
    hasTouch: true,
    locale: 'zh-CN',
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => { throw e; });
  await page.goto('/h5');
  await accessible(page);
  await shoot(page, 'h5-home');

  await page.click('a[href="/h5/report"]');
  const rendered = Date.now();
  // The town's own grids are drawn on the map (no tile server).
  await expect(page.locator('.map.pick path.leaflet-interactive').first()).toBeVisible();
  // Typing pinyin initials leaves the matching matters and picks the first.
  await page.fill('#matter-search', 'bllj');
  await expect(page.locator('#matter')).toHaveValue('06010');
  await expect(page.locator('#matter option:not([hidden])')).toHaveCount(1);
  await page.fill('#description', '小区东门垃圾堆了三天没人清');
  await page.click('button[data-locate]');
  await expect(page.locator('input[name=lat]')).not.toHaveValue('');
  await page.fill('#address', '东门岗亭旁');
  await page.setInputFiles('#photos', await photo(browser, '垃圾.jpg'));
  await page.fill('input[name=reporter_phone]', '13912345678');
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  await accessible(page);
  await shoot(page, 'h5-report');
  // A person takes a few seconds; a form sent back faster is refused as a bot's.
  await page.waitForTimeout(Math.max(0, 3200 - (Date.now() - rendered)));
  await page.locator('#h5-report button[type=submit]').click();

  const number = (await page.locator('[data-number]').textContent()).trim();
  const code = (await page.locator('[data-code]').textContent()).trim();
  expect(number).toMatch(/^\d{20,}$/);
  expect(code).toMatch(/^[0-9A-F]{10}$/);
  await accessible(page);
  await shoot(page, 'h5-done');

  await page.click('a.h5-action');
  await expect(page.locator('.tag.stage-received')).toBeVisible();
  await expect(page.getByText('139****5678')).toBeVisible();
  await expect(page.getByText('13912345678')).toHaveCount(0);
  await page.fill('#nf-text', '今天又多了两袋');
  await page.locator('#nf-text').locator('xpath=ancestor::form').locator('button[type=submit]').click();
  await expect(page.locator('p.notice[role=status]')).toBeVisible();
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  await accessible(page);
  await shoot(page, 'h5-track');

  // A wrong code shows nothing of the report.
  await page.goto(`/h5/track?number=${number}&code=0000000000`);
  await expect(page.locator('.error[role=alert]')).toBeVisible();
  await expect(page.getByText('东门岗亭旁')).toHaveCount(0);
  await context.close();
});

test('a resident leaves a suggestion for their village without a phone', async ({ browser }) => {
  const context = await browser.newContext({ viewport: { width: 360, height: 800 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  page.on('pageerror', (e) => { throw e; });
  await page.goto('/h5');
  await page.click('a[href="/h5/suggest"]');
  const rendered = Date.now();
  await page.selectOption('#community', { index: 1 });
  await page.fill('#matter-search', 'ljx');
  await expect(page.locator('#matter')).toHaveValue('03005');
  await expect(page.locator('#matter option:not([hidden])').first()).toBeVisible();
  await page.fill('#description', '建议在村口增设分类垃圾桶，方便老人投放');
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  await accessible(page);
  await shoot(page, 'h5-suggest');
  await page.waitForTimeout(Math.max(0, 3200 - (Date.now() - rendered)));
  await page.locator('#h5-suggest button[type=submit]').click();
  await expect(page.locator('[data-number]')).toBeVisible();
  await page.click('a.h5-action');
  await expect(page.locator('.tag.stage-received')).toBeVisible();
  await context.close();
});

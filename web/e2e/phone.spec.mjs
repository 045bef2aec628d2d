// A grid worker on a 360×800 phone: today's tasks as the first tabs, an event reported with a camera
// photo and the phone's position (127.0.0.1 is a secure context, so geolocation fills the place), and
// the report found again under 我的上报.
import { test, expect } from '@playwright/test';
import { accessible, login, photo, placeOfGw001, shoot } from './helpers.mjs';

test('a grid worker reports from the phone and finds it in their own history', async ({ browser, request }) => {
  const place = await placeOfGw001(request);
  const gw = await login(browser, 'gw001', {
    viewport: { width: 360, height: 800 },
    geolocation: { latitude: place.lat, longitude: place.lon },
    permissions: ['geolocation'],
    isMobile: true,
    hasTouch: true,
  });
  await expect(gw.locator('[data-queue="to_check"]')).toBeVisible();
  await expect(gw.locator('[data-queue="to_verify"]')).toBeVisible();
  await accessible(gw);
  await shoot(gw, 'phone-console');
  // Nothing may be wider than the phone.
  expect(await gw.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);

  await gw.click('a[href="/report"]');
  await expect(gw.locator('input[name=lat]')).not.toHaveValue('');
  await expect(gw.locator('#photos')).toHaveAttribute('capture', 'environment');
  await gw.fill('#matter', '06010');
  await expect(gw.locator('select[name=source]')).toHaveValue('grid_patrol');
  await gw.fill('#description', '小区门口垃圾满溢');
  await gw.setInputFiles('#photos', await photo(browser, '拍照.jpg'));
  expect(await gw.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  await accessible(gw);
  await shoot(gw, 'phone-report');
  await gw.locator('.report-form button[type=submit]').click({ timeout: 10_000 });
  await expect(gw).toHaveURL(/\/cases\/\d+$/);
  const caseUrl = new URL(gw.url()).pathname;
  await expect(gw.locator('.thumbs img')).toHaveCount(1);

  await gw.goto('/?q=mine');
  await expect(gw.locator(`a[href="${caseUrl}"]`)).toBeVisible();
  expect(await gw.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  await shoot(gw, 'phone-mine');
});

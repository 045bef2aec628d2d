// The smart components' console: the demo's in-process feed raises alarms from its injected faults
// (a cover knocked open, a hydrant losing pressure, lamps dark at night); the shift leader sees them,
// most severe first, with their cases and the checkpoints' people flow, and acknowledges one. The page
// follows the live feed: an alarm acknowledged at another desk changes the list without a reload.
import { test, expect } from '@playwright/test';
import { accessible, login, shoot, token } from './helpers.mjs';

test('the shift leader sees the live alarms and acknowledges one', async ({ browser }) => {
  test.setTimeout(150_000);
  const page = await login(browser, 'shift', { viewport: { width: 1440, height: 900 } });
  await expect(async () => {
    await page.goto('/alarms');
    await expect(page.locator('table.alarms tbody tr').first()).toBeVisible({ timeout: 1_000 });
  }).toPass({ timeout: 120_000, intervals: [5_000] });
  await expect(page.locator('ul.flow li').first()).toBeVisible();
  await accessible(page);
  await shoot(page, 'alarms');
  const ack = page.locator('table.alarms form button').first();
  const before = await page.locator('table.alarms form').count();
  await ack.click();
  await expect(page).toHaveURL(/\/alarms$/);
  await expect(page.locator('table.alarms form')).toHaveCount(before - 1);
});

test('an alarm acknowledged at another desk leaves the open list without a reload', async ({ browser, request }) => {
  test.setTimeout(150_000);
  const page = await login(browser, 'shift', { viewport: { width: 1440, height: 900 } });
  const headers = { authorization: `Bearer ${await token(request, 'dispatch')}` };
  let alarm;
  await expect(async () => {
    const open = await (await request.get('/api/v1/alarms?open=true&limit=500', { headers })).json();
    alarm = open.find((a) => !a.acked_at);
    expect(alarm).toBeTruthy();
  }).toPass({ timeout: 120_000, intervals: [5_000] });
  await page.goto('/alarms');
  await expect(page.locator('body')).toHaveAttribute('data-live-state', 'open');
  const form = page.locator(`table.alarms form[action="/alarms/${alarm.id}/ack"]`);
  await expect(form).toHaveCount(1);
  // Mark the page: a reload would lose the mark, a live refresh of the list keeps it.
  await page.evaluate(() => { window.notReloaded = true; });
  const acked = await request.post(`/api/v1/alarms/${alarm.id}/ack`, { headers });
  expect(acked.ok()).toBeTruthy();
  await expect(form).toHaveCount(0, { timeout: 10_000 });
  expect(await page.evaluate(() => window.notReloaded)).toBe(true);
});

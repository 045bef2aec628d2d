// The smart components' console: the demo's in-process feed raises alarms from its injected faults
// (a cover knocked open, a hydrant losing pressure, lamps dark at night); the shift leader sees them,
// most severe first, with their cases and the checkpoints' people flow, and acknowledges one.
import { test, expect } from '@playwright/test';
import { accessible, login, shoot } from './helpers.mjs';

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

// The consoles' and phone pages' script: htmx (partial refreshes), the live feed, and the device's
// position for on-site forms.
import './htmx-global.js';
import { startLive } from './live.js';
import { fillPosition } from './geo.js';

document.addEventListener('DOMContentLoaded', () => {
  startLive(document.body);
  fillPosition(document);
});

// The consoles' and phone pages' script: htmx with its server-sent-events extension. htmx is put on
// `window` before the extension loads, as the extension expects.
import './htmx-global.js';
import 'htmx-ext-sse';

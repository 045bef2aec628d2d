// htmx as a global, for its extensions and for inline hx-on handlers.
import htmx from 'htmx.org';
window.htmx = htmx;

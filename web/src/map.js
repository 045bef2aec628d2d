// Leaflet for small maps (a case's place, the phone's map picker).
import L from 'leaflet';
window.L = L;

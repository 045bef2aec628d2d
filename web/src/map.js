// Small maps on the consoles, drawn with Leaflet from the town's own grid GeoJSON (no tile server is
// needed on an intranet; one configured as `map_tiles`, e.g. a 天地图 node, is drawn beneath, from
// `<body data-tiles>`):
// - `data-map-point="lat,lon"`: a case's place among the grids, with a marker;
// - `data-map-pick="<geojson url>"`: click to pick a place; it fills the form's `data-geo` fields.
import L from 'leaflet';

window.L = L;

const gridStyle = { color: '#0b5cad', weight: 1, fillColor: '#0b5cad', fillOpacity: 0.04 };

function drawTiles(map) {
  const tiles = document.body.dataset.tiles;
  if (tiles) L.tileLayer(tiles, { maxZoom: 19 }).addTo(map);
}

async function drawGrids(map, url) {
  drawTiles(map);
  const resp = await fetch(url, { credentials: 'same-origin' });
  if (!resp.ok) return null;
  const layer = L.geoJSON(await resp.json(), { style: gridStyle }).addTo(map);
  return layer;
}

function pointMap(el) {
  const [lat, lon] = el.dataset.mapPoint.split(',').map(Number);
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return;
  const map = L.map(el, { attributionControl: false, zoomControl: true }).setView([lat, lon], 16);
  L.circleMarker([lat, lon], { radius: 8, color: '#c62828', weight: 3, fillOpacity: 0.6 }).addTo(map);
  drawGrids(map, '/api/v1/grids.geojson');
}

function pickMap(el) {
  const form = el.closest('form');
  const input = (name) => form.querySelector(`input[data-geo="${name}"]`);
  const map = L.map(el, { attributionControl: false });
  let marker = null;
  const place = (lat, lon) => {
    if (marker) marker.setLatLng([lat, lon]);
    else marker = L.circleMarker([lat, lon], { radius: 8, color: '#c62828', weight: 3 }).addTo(map);
  };
  drawGrids(map, el.dataset.mapPick).then((layer) => {
    if (layer) map.fitBounds(layer.getBounds());
    const lat = Number(input('lat').value);
    const lon = Number(input('lon').value);
    if (lat && lon) place(lat, lon);
  });
  // A place filled in otherwise (typed, or the phone's position) moves the pin too.
  input('lat').addEventListener('change', () => {
    const lat = Number(input('lat').value);
    const lon = Number(input('lon').value);
    if (!lat || !lon) return;
    place(lat, lon);
    map.setView([lat, lon], Math.max(map.getZoom(), 15));
  });
  map.on('click', (e) => {
    input('lat').value = e.latlng.lat.toFixed(6);
    input('lon').value = e.latlng.lng.toFixed(6);
    place(e.latlng.lat, e.latlng.lng);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('[data-map-point]').forEach(pointMap);
  document.querySelectorAll('[data-map-pick]').forEach(pickMap);
});

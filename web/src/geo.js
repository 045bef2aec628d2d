// Fills the position fields (`data-geo="lat|lon"`) of on-site forms from the device's location,
// where the browser allows it (HTTPS pages only). The server checks the position against the case.
export function fillPosition(root) {
  const fields = root.querySelectorAll('input[data-geo]');
  if (!fields.length || !window.isSecureContext || !navigator.geolocation) return;
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      fields.forEach((input) => {
        if (input.value) return;
        const v = input.dataset.geo === 'lat' ? pos.coords.latitude : pos.coords.longitude;
        input.value = v.toFixed(6);
      });
    },
    () => {},
    { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 },
  );
}

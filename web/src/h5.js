// The citizen H5 page's small helpers, each optional (the form works without script):
// - a search box filtering the grouped matter list by name, pinyin initials or English;
// - "use my location": the browser's position (WGS84) into the form's `data-geo` fields;
// - at most `data-max` photos.

function filterMatters(input) {
  const select = document.getElementById(input.dataset.filter);
  if (!select) return;
  input.addEventListener('input', () => {
    const q = input.value.trim().toLowerCase();
    let first = null;
    select.querySelectorAll('optgroup').forEach((group) => {
      let shown = 0;
      group.querySelectorAll('option').forEach((o) => {
        const hit = !q || o.dataset.search.includes(q);
        o.hidden = !hit;
        if (hit) {
          shown += 1;
          first ??= o;
        }
      });
      group.hidden = shown === 0;
    });
    if (q && first && (select.selectedOptions.length === 0 || select.selectedOptions[0].hidden)) first.selected = true;
  });
}

function locate(button) {
  if (!('geolocation' in navigator)) return;
  const form = button.closest('form');
  const field = (name) => form.querySelector(`input[data-geo="${name}"]`);
  button.hidden = false;
  button.addEventListener('click', () => {
    navigator.geolocation.getCurrentPosition((pos) => {
      field('lat').value = pos.coords.latitude.toFixed(6);
      field('lon').value = pos.coords.longitude.toFixed(6);
      field('crs').value = 'wgs84';
      field('lat').dispatchEvent(new Event('change', { bubbles: true }));
    }, () => {}, { enableHighAccuracy: true, timeout: 10000 });
  });
}

function limitPhotos(input) {
  const max = Number(input.dataset.max);
  input.addEventListener('change', () => {
    input.setCustomValidity(input.files.length > max ? `≤ ${max}` : '');
    input.reportValidity();
  });
}

document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('input[data-filter]').forEach(filterMatters);
  document.querySelectorAll('button[data-locate]').forEach(locate);
  document.querySelectorAll('input[type="file"][data-max]').forEach(limitPhotos);
});

// The live feed on a console page: one EventSource per page (the browser resumes it with
// Last-Event-ID after a dropped connection). Changes are coalesced: elements marked
// `data-live-refresh` get an htmx `live` event at most once a second, and always once after the
// last change of a burst — on a case event or an alarm change. A case page also says when someone
// else changed its case.
export function startLive(body) {
  const url = body.dataset.live;
  if (!url || !window.EventSource) return;
  const caseId = body.dataset.liveCase;
  const version = Number(body.dataset.liveVersion || 0);
  const source = new EventSource(url);
  let timer = null;
  const flush = () => {
    timer = null;
    document.querySelectorAll('[data-live-refresh]').forEach((el) => window.htmx.trigger(el, 'live'));
  };
  const soon = () => {
    if (!timer) timer = setTimeout(flush, 1000);
  };
  source.addEventListener('case', (message) => {
    if (caseId) {
      try {
        const entry = JSON.parse(message.data);
        if (String(entry.case_id) === caseId && entry.event.seq > version) {
          document.getElementById('stale')?.removeAttribute('hidden');
        }
      } catch (e) {
        // A message we cannot read changes nothing on the page.
      }
    }
    soon();
  });
  source.addEventListener('alarm', soon);
  body.dataset.liveState = 'connecting';
  source.addEventListener('open', () => { body.dataset.liveState = 'open'; });
  source.addEventListener('error', () => { body.dataset.liveState = 'retrying'; });
}

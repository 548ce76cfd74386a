/* The gallery page: plain browser JavaScript (no build step, nothing fetched from outside), talking to the query API. */
/* global document, window, sessionStorage, URLSearchParams */

const PAGE = 48;
/** Pages fetched at most per "load" while a search scans a large job (each page scans a bounded slice). */
const SEARCH_PAGES = 20;

const state = {
  token: sessionStorage.getItem('t2i-token') || '',
  job: undefined,
  q: '',
  cursor: undefined,
  loading: false,
  /** Bumped by every reload (another job, another search): answers to an older one are dropped. */
  generation: 0,
  jobsCursor: undefined,
  cards: 0,
};
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === 'className') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== undefined && child !== null) node.append(child);
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const res = await fetch(path, { headers: state.token ? { authorization: `Bearer ${state.token}` } : {} });
  if (res.status === 401) {
    $('auth').hidden = false;
    $('token').focus();
    throw new ApiError(401, 'token required');
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, (body.error && body.error.message) || res.statusText);
  return body;
}

/**
 * An image for <img src>. Without a token, its API path. With one, the image is fetched with the
 * Authorization header and shown from a blob: URL, so the token never appears in a URL (address bar,
 * history, server and proxy logs, Referer).
 */
async function media(path) {
  if (!state.token) return path;
  const res = await fetch(path, { headers: { authorization: `Bearer ${state.token}` } });
  if (!res.ok) throw new ApiError(res.status, res.statusText);
  return URL.createObjectURL(await res.blob());
}

function setMedia(img, path) {
  media(path).then(
    (src) => (img.src = src),
    () => (img.alt = `${img.alt} (image could not be loaded)`),
  );
}

const jobPath = (id) => `/api/jobs/${encodeURIComponent(id)}`;

function setStatus(text) {
  $('status').textContent = text;
}

function fmtDate(iso) {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—';
}

function countText(job) {
  const c = job.counts || {};
  const parts = [];
  if (c.rows !== undefined) parts.push(`${c.rows} rows`);
  if (c.images !== undefined && c.images !== null) parts.push(`${c.images}${job.imagesCapped ? '+' : ''} images`);
  if (c.errors) parts.push(`${c.errors} errors`);
  const pf = job.promptFollowing;
  if (pf && pf.judged > 0) {
    const rates = Object.entries(pf.attributes).map(([name, rate]) => `${name} ${Math.round(rate * 100)}%`);
    parts.push(`prompt-following (${pf.judged} judged): ${rates.join(', ')}`);
  }
  return parts.join(' · ') || 'no counts yet';
}

async function loadJobs(more = false) {
  const query = new URLSearchParams({ limit: '100' });
  if (more && state.jobsCursor) query.set('cursor', state.jobsCursor);
  const page = await api(`/api/jobs?${query}`);
  state.jobsCursor = page.nextCursor;
  $('more-jobs').hidden = !page.nextCursor;
  const list = $('job-list');
  if (!more) list.textContent = '';
  for (const job of page.jobs) {
    list.append(
      el(
        'li',
        {},
        el(
          'button',
          { type: 'button', className: 'job', title: job.jobId, 'data-job': job.jobId, onclick: () => selectJob(job.jobId) },
          el('span', { className: 'job-id' }, job.jobId),
          el('span', { className: `badge ${job.status}` }, job.status),
          el('span', { className: 'job-counts' }, countText(job)),
        ),
      ),
    );
  }
  if (!more && page.jobs.length === 0) {
    $('empty').hidden = false;
    $('empty').textContent = 'No jobs in the bucket yet.';
  }
  return page.jobs;
}

async function selectJob(jobId) {
  state.job = undefined;
  for (const button of document.querySelectorAll('.job')) button.classList.toggle('active', button.dataset.job === jobId);
  const job = await api(jobPath(jobId));
  state.job = job;
  const head = $('job-head');
  head.textContent = '';
  head.append(
    el('h2', {}, job.jobId, ' ', el('span', { className: `badge ${job.status}` }, job.status)),
    el(
      'p',
      { className: 'job-facts' },
      countText(job),
      job.model ? ` · model ${job.model}` : '',
      ` · started ${fmtDate(job.started)}`,
      job.finished ? ` · finished ${fmtDate(job.finished)}` : '',
    ),
  );
  writeHash();
  await reload();
}

async function reload() {
  // A load still in flight for the previous job or search must neither block this one nor add its cards here.
  state.generation++;
  state.loading = false;
  state.cursor = undefined;
  state.cards = 0;
  $('grid').textContent = '';
  $('empty').hidden = true;
  await loadMore();
}

/** One more screenful: output rows of a complete job (filtered), or the stored images of a running one. */
async function loadMore() {
  if (!state.job || state.loading) return;
  state.loading = true;
  const job = state.job;
  const generation = state.generation;
  const stale = () => state.job !== job || state.generation !== generation;
  try {
    let added = 0;
    let pages = 0;
    let scanned = 0;
    do {
      const query = new URLSearchParams({ limit: String(PAGE) });
      if (state.cursor) query.set('cursor', state.cursor);
      if (job.status === 'running') {
        const page = await api(`${jobPath(job.jobId)}/images?${query}`);
        if (stale()) return;
        for (const image of page.images) added += addCard({ row: image.row, k: image.k, prompt: undefined, view: undefined });
        state.cursor = page.nextCursor;
      } else {
        if (state.q) query.set('q', state.q);
        const page = await api(`${jobPath(job.jobId)}/rows?${query}`);
        if (stale()) return;
        for (const row of page.rows) {
          for (const image of row.images) {
            if (image.row === null || image.k === null) continue;
            added += addCard({ row: image.row, k: image.k, prompt: row.prompts[image.k], view: row, image });
          }
        }
        scanned += page.scannedBytes || 0;
        state.cursor = page.nextCursor;
        if (state.q && state.cursor) setStatus(`searching… ${(scanned / 1e6).toFixed(1)} MB scanned`);
      }
      pages++;
    } while (state.cursor && added < PAGE && pages < SEARCH_PAGES);
    $('more').hidden = !state.cursor;
    if (state.cards === 0) {
      $('empty').hidden = false;
      $('empty').textContent = state.q ? `No prompt matches “${state.q}”.` : 'No images in this job yet.';
    }
    setStatus(
      state.q
        ? `${state.cards} image${state.cards === 1 ? '' : 's'} matching “${state.q}”${state.cursor ? ' so far' : ''}`
        : `${state.cards} image${state.cards === 1 ? '' : 's'} shown`,
    );
  } catch (error) {
    if (!stale()) setStatus(`error: ${error.message}`);
  } finally {
    if (state.generation === generation) state.loading = false;
  }
}

function addCard(item) {
  const jobId = state.job.jobId;
  const thumb = el('img', { alt: item.prompt || `row ${item.row}`, loading: 'lazy', decoding: 'async' });
  setMedia(thumb, `${jobPath(jobId)}/thumbs/${item.row}/${item.k}`);
  const card = el(
    'button',
    { type: 'button', className: 'card', 'data-row': String(item.row), 'data-k': String(item.k), onclick: () => openDetail(item) },
    thumb,
    el('span', { className: 'caption' }, el('b', {}, `#${item.row}`, item.k > 0 ? `·${item.k}` : ''), ' ', item.prompt || ''),
  );
  $('grid').append(card);
  state.cards++;
  return 1;
}

async function openDetail(item) {
  const jobId = state.job.jobId;
  const base = `${jobPath(jobId)}/images/${item.row}/${item.k}`;
  $('detail').hidden = false;
  $('detail-img').alt = item.prompt || '';
  $('detail-img').removeAttribute('src');
  setMedia($('detail-img'), base);
  $('detail-open').removeAttribute('href');
  media(base).then(
    (href) => ($('detail-open').href = href),
    () => {},
  );
  $('detail-title').textContent = `Row ${item.row} · image ${item.k}`;
  $('detail-prompt').textContent = item.prompt || '…';
  $('detail-row').textContent = item.view ? JSON.stringify(item.view.data, null, 2) : '';
  $('detail-row-box').hidden = !item.view;
  const meta = Object.assign({}, item.image && item.image.meta);
  renderMeta(meta, item);
  // The PNG's own text chunk: the prompt and parameters for images of running jobs, and anything image_meta lacks.
  try {
    const fromPng = (await api(`${base}/meta`)).meta || {};
    for (const [key, value] of Object.entries(fromPng)) if (meta[key] === undefined) meta[key] = value;
    if (!item.prompt && fromPng.prompt) $('detail-prompt').textContent = fromPng.prompt;
    renderMeta(meta, item);
  } catch (error) {
    if (error.status !== 404) setStatus(`error: ${error.message}`);
  }
  writeHash(item);
  $('close').focus();
}

function renderMeta(meta, item) {
  const size = meta.width && meta.height ? `${meta.width} × ${meta.height}` : undefined;
  const fields = [
    ['seed', meta.seed],
    ['size', size],
    ['steps', meta.steps],
    ['guidance', meta.guidance],
    ['model', meta.model],
    ['uri', item.image ? item.image.uri : undefined],
  ];
  const dl = $('detail-meta');
  dl.textContent = '';
  for (const [name, value] of fields) {
    if (value === undefined || value === null) continue;
    dl.append(el('dt', {}, name), el('dd', { 'data-field': name }, String(value)));
  }
}

function closeDetail() {
  $('detail').hidden = true;
  $('detail-img').removeAttribute('src');
  writeHash();
}

function writeHash(item) {
  const params = new URLSearchParams();
  if (state.job) params.set('job', state.job.jobId);
  if (state.q) params.set('q', state.q);
  if (item) params.set('image', `${item.row}/${item.k}`);
  window.history.replaceState(null, '', `#${params}`);
}

$('search').addEventListener('submit', (event) => {
  event.preventDefault();
  state.q = $('q').value.trim();
  writeHash();
  void reload();
});
$('more').addEventListener('click', () => void loadMore());
$('more-jobs').addEventListener('click', () => void loadJobs(true));
$('close').addEventListener('click', closeDetail);
$('detail').addEventListener('click', (event) => {
  if (event.target === $('detail')) closeDetail();
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && !$('detail').hidden) closeDetail();
});
$('auth-form').addEventListener('submit', (event) => {
  event.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem('t2i-token', state.token);
  $('auth').hidden = true;
  void start();
});

async function start() {
  try {
    const params = new URLSearchParams(window.location.hash.slice(1));
    state.q = params.get('q') || '';
    $('q').value = state.q;
    const jobs = await loadJobs();
    const wanted = params.get('job');
    const first = jobs.find((j) => j.jobId === wanted) || jobs.find((j) => j.status === 'complete') || jobs[0];
    if (first) await selectJob(first.jobId);
  } catch (error) {
    if (error.status !== 401) setStatus(`error: ${error.message}`);
  }
}

void start();

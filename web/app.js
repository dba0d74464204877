// llamactl's web page: GPUs, models and instances of `llamactl serve`, live.
// Plain JS, no framework, no build step. Reads /ui/api/state and the stream
// /ui/api/events (read with fetch, not EventSource, so that it can send the
// API key); loads and unloads through POST /models/load and /models/unload,
// the same Runtime as the CLI.
'use strict';

(() => {
  const KEY = 'llamactl-api-key'; // sessionStorage: for this tab only
  const REFRESH = 'llamactl-refresh'; // localStorage: "live" or a polling interval in ms
  const SPAN_MS = 600000; // history kept: the last 10 minutes
  const KEEP_ALIVES = ['5m', '10m', '30m', '1h', '4h', '24h', '-1'];

  const $ = (id) => document.getElementById(id);
  const S = {
    doc: null, // the last state document
    offset: 0, // server clock - our clock (ms)
    samples: [], // history samples, oldest first
    interval: 1000,
    conn: 'connecting',
    retryAt: 0,
    pending: {}, // model -> text of the action under way
    msgs: {}, // model -> {kind: 'error'|'ok', text}
    needKey: false,
  };
  let gen = 0; // bumps on every (re)start: older loops stop
  let abort = null;
  let pollTimer = 0;
  let lastModelsSig = '';
  let lastInstSig = '';

  // ------------------------------------------------------------ helpers

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k);
    return e;
  }
  const svg = (tag, attrs) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  };
  const num = (n) => (n === null || n === undefined ? '?' : Number(n).toLocaleString('en-US'));
  const mib = (n) => (n === null || n === undefined ? '? MiB' : `${num(n)} MiB`);
  const pct = (a, b) => (a === null || a === undefined || !b ? null : Math.round((100 * a) / b));
  const serverNow = () => Date.now() + S.offset;

  function dur(s) {
    if (s === null || s === undefined || !isFinite(s)) return '—';
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }
  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }
  function expires(inst) {
    if (inst.state === 'dead') return '—';
    if (inst.keep_alive_ms !== undefined && inst.keep_alive_ms < 0) return 'never';
    if (!inst.expires_at) return '—';
    const left = (Date.parse(inst.expires_at) - serverNow()) / 1000;
    return left <= 0 ? 'due now' : `in ${dur(left)}`;
  }
  function uptime(inst) {
    if (inst.state === 'dead' || inst.uptime_s === null || inst.uptime_s === undefined) return '—';
    const age = S.doc ? (Date.now() + S.offset - S.doc.now_ms) / 1000 : 0;
    return dur(inst.uptime_s + Math.max(0, age));
  }
  const gpuList = (g) => (!g || g.length === 0 ? 'CPU' : g.join(','));

  // ------------------------------------------------------------ requests

  class AuthError extends Error {}

  function headers(extra) {
    const h = Object.assign({}, extra);
    const key = sessionStorage.getItem(KEY);
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  async function api(path, opts = {}) {
    const res = await fetch(path, Object.assign({}, opts, { headers: headers(opts.headers), cache: 'no-store' }));
    if (res.status === 401) {
      askKey(!!sessionStorage.getItem(KEY));
      throw new AuthError('unauthorized');
    }
    return res;
  }

  async function errorText(res) {
    let text = '';
    try {
      text = await res.text();
      const j = JSON.parse(text);
      const e = j.error;
      if (typeof e === 'string') return e;
      if (e && e.message) return e.message;
    } catch (_) {
      /* not JSON: the text itself */
    }
    return text.trim() || `HTTP ${res.status}`;
  }

  async function fetchState() {
    try {
      const res = await api('/ui/api/state');
      if (!res.ok) throw new Error(await errorText(res));
      apply(await res.json(), true);
      if (S.conn !== 'live') setConn(pollMs() ? 'polling' : S.conn);
      return true;
    } catch (e) {
      if (!(e instanceof AuthError) && pollMs()) setConn('down', e.message);
      return false;
    }
  }

  // ------------------------------------------------------------ updates

  function pollMs() {
    const v = localStorage.getItem(REFRESH) || 'live';
    return v === 'live' ? 0 : Math.max(1000, Number(v) || 5000);
  }

  function start() {
    gen++;
    if (abort) abort.abort();
    abort = null;
    clearTimeout(pollTimer);
    if (S.needKey) return;
    const my = gen;
    if (pollMs()) poll(my);
    else stream(my, 0);
  }

  async function poll(my) {
    if (my !== gen) return;
    setConn('polling');
    await fetchState();
    if (my === gen && !S.needKey) pollTimer = setTimeout(() => poll(my), pollMs());
  }

  // The stream, parsed by hand (EventSource cannot send Authorization).
  async function stream(my, failures) {
    const ctl = new AbortController();
    abort = ctl;
    let first = true;
    let gotAny = false;
    try {
      const res = await api('/ui/api/events', { signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
      if (!res.ok || !res.body) throw new Error(await errorText(res));
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + (buf[cut] === '\r' ? 4 : 2)).replace(/^\n/, '');
          let event = 'message';
          const data = [];
          for (const line of block.split(/\r?\n/)) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'event') event = val;
            else if (field === 'data') data.push(val);
          }
          if (my !== gen) return;
          if (!gotAny) {
            gotAny = true;
            failures = 0;
          }
          setConn('live');
          if (data.length && (event === 'state' || event === 'message')) {
            apply(JSON.parse(data.join('\n')), first);
            first = false;
          }
        }
      }
    } catch (e) {
      if (my !== gen || e instanceof AuthError) return;
    }
    if (my !== gen || S.needKey) return;
    failures = gotAny ? 1 : failures + 1;
    const wait = Math.min(15000, 1000 * 2 ** (failures - 1));
    S.retryAt = Date.now() + wait;
    setConn('down');
    pollTimer = setTimeout(() => stream(my, failures), wait);
  }

  function setConn(c, why) {
    S.conn = c;
    const e = $('conn');
    e.classList.toggle('bad', c === 'down');
    if (c === 'live') e.textContent = '● live updates';
    else if (c === 'polling') e.textContent = `↻ polling every ${pollMs() / 1000} s`;
    else if (c === 'down') {
      const left = Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000));
      e.textContent = pollMs()
        ? `✖ disconnected${why ? ` (${why})` : ''} — retrying`
        : `✖ disconnected — reconnecting${left ? ` in ${left} s` : ''}`;
    } else e.textContent = c;
  }

  // ------------------------------------------------------------ state

  function apply(doc, full) {
    if (!doc || typeof doc !== 'object') return;
    if (S.doc && full && doc.now_ms < S.doc.now_ms) return; // an older answer arriving late
    S.offset = (doc.now_ms || Date.now()) - Date.now();
    const h = doc.history || {};
    if (h.interval_ms) S.interval = h.interval_ms;
    const incoming = Array.isArray(h.samples) ? h.samples : [];
    if (full) S.samples = incoming.slice();
    else {
      const last = S.samples.length ? S.samples[S.samples.length - 1].t_ms : -Infinity;
      for (const s of incoming) if (s.t_ms > last) S.samples.push(s);
    }
    const from = (doc.now_ms || Date.now()) - (h.span_ms || SPAN_MS);
    while (S.samples.length && S.samples[0].t_ms < from) S.samples.shift();
    S.doc = doc;
    render();
  }

  // ------------------------------------------------------------ render

  function render() {
    const d = S.doc;
    if (!d) return;
    const st = d.status || {};
    const g = st.gpus || {};
    const gpus = g.gpu_status || [];
    const cpu = g.mode === 'cpu' || gpus.length === 0;
    $('summary').textContent = cpu
      ? `CPU Mode (No GPU Detected)${g.reason ? ` — ${g.reason}` : ''}`
      : `Total GPUs: ${g.total_gpus ?? gpus.length}`;
    $('summary').classList.toggle('cpu', cpu);
    $('version').textContent = d.version ? `llamactl ${d.version}` : 'llamactl';
    tick();

    const notes = [].concat(g.warnings || [], st.notices || []);
    if (g.restricted_by) notes.push(`Only the GPUs of ${g.restricted_by} are ours to use.`);
    $('notices').replaceChildren(...notes.map((n) => el('li', { text: `⚠ ${n}` })));

    const insts = st.instances || [];
    renderGpus(gpus, insts);
    renderModels(d.models || [], gpus, insts);
    renderInstances(insts);
  }

  // The "ago" parts, once a second.
  function tick() {
    const d = S.doc;
    if (d) {
      const r = $('reading');
      if (d.reading_at_ms) {
        const age = Math.max(0, Math.round((serverNow() - d.reading_at_ms) / 1000));
        r.textContent = `Last reading ${clock(d.reading_at_ms)} (${age} s ago)`;
        r.classList.toggle('bad', age > 30);
      } else r.textContent = 'No GPU reading yet';
    }
    if (S.conn === 'down') setConn('down');
    for (const e of document.querySelectorAll('[data-exp]')) {
      const inst = findInst(e.dataset.exp);
      if (inst) e.textContent = expires(inst);
    }
    for (const e of document.querySelectorAll('[data-up]')) {
      const inst = findInst(e.dataset.up);
      if (inst) e.textContent = uptime(inst);
    }
  }
  const findInst = (pid) => ((S.doc && S.doc.status && S.doc.status.instances) || []).find((i) => String(i.pid) === pid);

  const STATES = {
    idle: ['○', 'idle'],
    model_loaded: ['⚡', 'ours'],
    occupied_by_others: ['🔒', 'occupied by others'],
    unavailable: ['⚠', 'unavailable'],
    not_ours_to_use: ['⛔', 'not ours to use'],
    not_ours: ['⛔', 'not ours to use'],
  };
  const stateOf = (s) => STATES[s] || ['?', String(s || 'unknown').replace(/_/g, ' ')];

  const live = (insts) => insts.filter((i) => i.state !== 'dead');
  const onGpu = (insts, idx) => live(insts).filter((i) => (i.gpus || []).includes(idx));

  function renderGpus(gpus, insts) {
    const cards = gpus.map((g) => {
      const [icon, word] = stateOf(g.state);
      const p = pct(g.memory_used_mib, g.memory_total_mib);
      const bar = el('div', { class: 'fill' });
      bar.style.width = `${Math.min(100, p || 0)}%`; // CSSOM: allowed by the page's CSP
      const body = [];
      for (const i of onGpu(insts, g.index)) {
        body.push(
          el(
            'dl',
            { class: 'kv ours' },
            kv('model', i.model),
            (i.gpus || []).length > 1 ? kv('GPUs', gpuList(i.gpus)) : null,
            kv('port', i.port),
            kv('pid', i.pid),
            kv('state', `${instIcon(i.state)} ${i.state}`),
            kv('uptime', el('span', { 'data-up': i.pid, text: uptime(i) })),
            kv('in flight', `${i.in_flight ?? 0}${i.queued ? ` (+${i.queued} queued)` : ''}`),
            kv('reaped', el('span', { 'data-exp': i.pid, text: expires(i) })),
          ),
        );
      }
      if (g.state === 'model_loaded' && body.length === 0 && g.model_name)
        body.push(el('p', { class: 'small', text: `model ${g.model_name}` }));
      const others = (g.process_info || []).filter((p) => !p.ours);
      if (others.length)
        body.push(
          el(
            'ul',
            { class: 'procs', 'aria-label': `Other processes on GPU ${g.index}` },
            others.map((p) => el('li', { text: procText(p) })),
          ),
        );
      // A Windows desktop GPU's apps that only draw: on it, not occupying it.
      const apps = [...new Set((g.desktop_apps || []).map((p) => baseName(p.process_name)))];
      if (apps.length)
        body.push(el('p', { class: 'small', text: `desktop apps (they draw, not occupants): ${apps.join(', ')}` }));
      if (g.error) body.push(el('p', { class: 'small bad', text: g.error }));
      const title =
        g.state === 'model_loaded' && g.model_name ? `${word}: ${g.model_name}` : g.state === 'occupied_by_others' ? 'occupied by others' : word;
      return el(
        'article',
        { class: `card s-${g.state}`, 'aria-labelledby': `gpu-h-${g.index}`, 'data-gpu': g.index },
        el(
          'header',
          {},
          el('h3', { id: `gpu-h-${g.index}` }, `GPU ${g.index}`, el('span', { class: 'gname', text: ` ${g.name || ''}` })),
          el('p', { class: `badge b-${g.state}` }, el('span', { 'aria-hidden': 'true', text: `${icon} ` }), title),
        ),
        el(
          'div',
          {
            class: 'bar',
            role: 'meter',
            'aria-label': `GPU ${g.index} memory used`,
            'aria-valuemin': 0,
            'aria-valuemax': 100,
            'aria-valuenow': p ?? 0,
            'aria-valuetext': `${p ?? '?'}%`,
          },
          bar,
        ),
        el(
          'p',
          { class: 'mem' },
          el('span', { class: 'used', text: `${mib(g.memory_used_mib)} / ${mib(g.memory_total_mib)}` }),
          el('span', { text: p === null ? '' : ` (${p}%)` }),
          el('span', { class: 'util', text: ` · util ${g.utilization_pct ?? '?'}%` }),
        ),
        chart(g),
        body,
      );
    });
    $('gpus').replaceChildren(...cards);
    if (!cards.length) $('gpus').append(el('p', { class: 'small', text: 'No GPU: models run on the CPU.' }));
  }

  // "C:\Program Files\…\msedge.exe" -> "msedge.exe".
  function baseName(name) {
    return String(name || '?').split(/[\\/]/).pop();
  }

  // "pid 4242 python3 · 20,000 MiB · user alice"; memory with no visible process (a container's, a
  // graphics app's) says so instead of showing blanks.
  function procText(p) {
    const name = p.process_name || 'unknown';
    if ((p.pid === null || p.pid === undefined) && name === 'unknown')
      return 'memory in use by a process nvidia-smi does not show (a container? a graphics app?)';
    return [
      p.pid === null || p.pid === undefined ? name : `pid ${p.pid} ${name}`,
      p.used_memory_mib === null || p.used_memory_mib === undefined ? null : mib(p.used_memory_mib),
      p.user ? `user ${p.user}` : null,
    ]
      .filter(Boolean)
      .join(' · ');
  }

  const kv = (k, v) => [el('dt', { text: k }), el('dd', {}, v instanceof Node ? v : String(v ?? '—'))];

  // A memory trend of the last minutes: inline SVG, no library.
  function chart(g) {
    const W = 300;
    const H = 48;
    const now = serverNow();
    // The last 10 minutes; a young serve's chart starts at its first reading and grows from the left.
    const oldest = S.samples.length ? S.samples[0].t_ms : now;
    const from = Math.max(now - SPAN_MS, oldest);
    const span = Math.max(60000, now - from);
    const pts = [];
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of S.samples) {
      const r = (s.gpus || []).find((x) => x.index === g.index);
      if (!r || r.used_mib === null || r.used_mib === undefined || !r.total_mib) continue;
      const x = ((s.t_ms - from) / span) * W;
      const y = H - (r.used_mib / r.total_mib) * (H - 2) - 1;
      pts.push(`${x.toFixed(1)},${y.toFixed(1)}`);
      lo = Math.min(lo, r.used_mib);
      hi = Math.max(hi, r.used_mib);
    }
    const label = pts.length
      ? `Memory of GPU ${g.index} over the last ${dur(span / 1000)}: between ${mib(lo)} and ${mib(hi)}`
      : `Memory of GPU ${g.index}: no history yet`;
    const s = svg('svg', { class: 'trend', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
    const t = svg('title');
    t.textContent = label;
    s.append(t, svg('line', { class: 'axis', x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 }));
    if (pts.length === 1) pts.push(`${W},${pts[0].split(',')[1]}`);
    if (pts.length) {
      const first = pts[0].split(',')[0];
      const last = pts[pts.length - 1].split(',')[0];
      s.append(svg('polygon', { class: 'area', points: `${first},${H} ${pts.join(' ')} ${last},${H}` }));
      s.append(svg('polyline', { class: 'line', points: pts.join(' ') }));
    }
    return el('figure', { class: 'chart' }, s, el('figcaption', { class: 'small', text: `memory, last ${dur(span / 1000).replace(/ 0s$/, '')}` }));
  }

  const instIcon = (s) => ({ running: '✔', starting: '⏳', unhealthy: '⚠', dead: '✖' })[s] || '•';

  // Why a GPU cannot take a new model; null when it can.
  function blocked(g, insts) {
    if (!g) return { short: 'no such GPU', long: 'no such GPU' };
    const mine = onGpu(insts, g.index);
    const multi = mine.find((i) => (i.gpus || []).length > 1);
    if (multi)
      return {
        short: `⚡ part of ${multi.model} (GPUs ${gpuList(multi.gpus)})`,
        long: `GPU ${g.index} belongs to the multi-GPU instance of ${multi.model} on GPUs ${gpuList(multi.gpus)}`,
      };
    if (g.state === 'model_loaded' || mine.length) {
      const m = g.model_name || (mine[0] && mine[0].model) || 'a model';
      return { short: `⚡ runs ${m}`, long: `GPU ${g.index} already runs ${m}` };
    }
    if (g.state === 'occupied_by_others') {
      const who = (g.process_info || [])
        .filter((p) => !p.ours)
        .map(procText)
        .join(', ');
      return { short: '🔒 occupied by others', long: `GPU ${g.index} is occupied by others${who ? `: ${who}` : ''}` };
    }
    if (g.state === 'not_ours_to_use' || g.state === 'not_ours' || g.ours_to_use === false)
      return { short: '⛔ not ours to use', long: `GPU ${g.index} is not ours to use${S.doc.status.gpus.restricted_by ? ` (only ${S.doc.status.gpus.restricted_by})` : ''}` };
    if (g.state === 'unavailable') return { short: '⚠ unavailable', long: `GPU ${g.index} is unavailable${g.error ? `: ${g.error}` : ''}` };
    if (g.loadable === false) return { short: 'not loadable', long: `GPU ${g.index} cannot take a model now` };
    return null;
  }

  function renderModels(models, gpus, insts) {
    const box = $('models');
    const choices = gpus.map((g) => ({ label: `GPU ${g.index}`, gpu: String(g.index), why: blocked(g, insts) }));
    if (gpus.length >= 2) {
      const idx = gpus.map((g) => g.index);
      const bad = gpus.map((g) => [g, blocked(g, insts)]).find(([, b]) => b);
      const pair = gpus.length === 2;
      choices.push({
        label: pair ? `GPU ${idx.join(',')}` : 'all GPUs',
        gpu: pair ? idx.join(',') : 'all',
        why: bad ? { short: `GPU ${bad[0].index}: ${bad[1].short}`, long: bad[1].long } : null,
      });
    }
    if (gpus.length) choices.push({ label: 'auto', gpu: 'auto', why: null });
    choices.push({ label: 'CPU', gpu: 'cpu', why: null });

    // Rebuilt only when something it shows changed: an open keep-alive list stays open.
    const sig = JSON.stringify([
      models,
      choices,
      live(insts).map((i) => [i.model, i.gpus, i.state, i.keep_alive_ms, i.pid]),
      S.pending,
      S.msgs,
    ]);
    if (sig === lastModelsSig) return;
    lastModelsSig = sig;
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;

    const rows = models.map((m) => {
      const running = live(insts).filter((i) => i.model === m.name);
      const busy = !!S.pending[m.name];
      const status = m.status || (running.length ? 'loaded' : 'unloaded');
      const shown = m.failed && status === 'unloaded' ? 'failed' : status; // its last start failed
      // A model runs in one place: loading it elsewhere is refused until it is unloaded.
      const own = running.find((i) => i.model === m.name);
      const ownGpu = own ? (own.gpus && own.gpus.length ? own.gpus.join(',') : 'cpu') : null;
      const btns = choices.map((choice) => {
        let c = choice;
        const same = c.gpu === ownGpu || (c.gpu === 'all' && ownGpu === gpus.map((g) => g.index).join(','));
        if (own && !c.why && c.gpu !== 'auto' && !same) {
          const at = ownGpu === 'cpu' ? 'the CPU' : `GPU ${gpuList(own.gpus)}`;
          c = { ...c, why: { short: `runs on ${at}`, long: `${m.name} already runs on ${at}; unload it before loading it elsewhere` } };
        }
        const id = `why-${m.name}-${c.gpu}`.replace(/[^A-Za-z0-9_-]/g, '_');
        const dis = !!c.why || busy;
        const b = el('button', {
          type: 'button',
          class: 'load',
          'data-key': `load:${m.name}:${c.gpu}`,
          'data-gpu': c.gpu,
          disabled: dis,
          title: c.why ? c.why.long : `Load ${m.name} on ${c.label}`,
          'aria-label': c.why ? `Load ${m.name} on ${c.label}: unavailable, ${c.why.long}` : `Load ${m.name} on ${c.label}`,
          'aria-describedby': c.why ? id : null,
          text: c.label,
          onclick: () => load(m.name, c.gpu, c.label),
        });
        return el('span', { class: 'choice' }, b, c.why ? el('small', { id, class: 'why', text: c.why.short }) : null);
      });
      const ctl = [];
      if (running.length || status === 'loaded' || status === 'loading') {
        const ka = running.length ? running[0].keep_alive_ms : null;
        const sel = el('select', {
          'data-key': `ka:${m.name}`,
          'aria-label': `Keep-alive of ${m.name}`,
          disabled: busy,
          onchange: (e) => keepAlive(m.name, e.target.value),
        });
        const cur = kaText(ka);
        const opts = KEEP_ALIVES.includes(cur) || cur === null ? KEEP_ALIVES : [cur, ...KEEP_ALIVES];
        if (cur === null) sel.append(el('option', { value: '', text: '—', selected: true }));
        for (const o of opts) sel.append(el('option', { value: o, selected: o === cur, text: o === '-1' ? 'forever' : o }));
        ctl.push(
          el('label', { class: 'ka' }, 'keep alive ', sel),
          el('button', {
            type: 'button',
            class: 'unload',
            'data-key': `unload:${m.name}`,
            disabled: busy,
            'aria-label': `Unload ${m.name}`,
            text: 'Unload',
            onclick: () => unload(m.name),
          }),
        );
      }
      const msg = S.pending[m.name]
        ? el('p', { class: 'msg pending', role: 'status' }, el('span', { class: 'spin', 'aria-hidden': 'true' }), S.pending[m.name])
        : S.msgs[m.name]
          ? el('p', { class: `msg ${S.msgs[m.name].kind}`, role: S.msgs[m.name].kind === 'error' ? 'alert' : 'status', text: S.msgs[m.name].text })
          : null;
      const where = running.map((i) => `${instIcon(i.state)} ${i.state} on ${i.gpus && i.gpus.length ? `GPU ${gpuList(i.gpus)}` : 'CPU'} (port ${i.port})`);
      return el(
        'div',
        { class: 'model', 'data-model': m.name, role: 'group', 'aria-labelledby': `m-${m.name}` },
        el(
          'div',
          { class: 'mhead' },
          el('h3', { id: `m-${m.name}`, text: m.name }),
          el('span', { class: `mstatus st-${shown}`, text: `${statusIcon(shown)} ${shown}` }),
          m.aliases && m.aliases.length ? el('span', { class: 'small', text: `aliases: ${m.aliases.join(', ')}` }) : null,
          m.gpu ? el('span', { class: 'small', text: `configured gpu: ${m.gpu}` }) : null,
          where.length ? el('span', { class: 'small', text: where.join('; ') }) : null,
        ),
        el('div', { class: 'choices', role: 'group', 'aria-label': `Load ${m.name} on` }, btns),
        ctl.length ? el('div', { class: 'ctl' }, ctl) : null,
        msg,
      );
    });
    box.replaceChildren(...rows);
    if (!models.length) box.append(el('p', { class: 'small', text: 'No model is configured.' }));
    if (focused) {
      const again = box.querySelector(`[data-key="${CSS.escape(focused)}"]`);
      if (again && !again.disabled) again.focus();
    }
  }
  const statusIcon = (s) => ({ loaded: '✔', loading: '⏳', unloading: '⏳', unloaded: '○', failed: '✖' })[s] || '•';

  function kaText(ms) {
    if (ms === null || ms === undefined) return null;
    if (ms < 0) return '-1';
    const table = { 300000: '5m', 600000: '10m', 1800000: '30m', 3600000: '1h', 14400000: '4h', 86400000: '24h' };
    if (table[ms]) return table[ms];
    return ms % 60000 === 0 ? `${ms / 60000}m` : `${Math.round(ms / 1000)}s`;
  }

  function renderInstances(insts) {
    const box = $('instances');
    // Rebuilt only when what it shows changed (uptime and expiry tick on their own): focus stays put.
    const sig = JSON.stringify(insts.map((i) => [i.model, i.gpus, i.port, i.pid, i.state, i.exit_code, i.memory_used_mib, i.in_flight, i.queued, i.expires_at]));
    if (sig === lastInstSig) return;
    lastInstSig = sig;
    if (!insts.length) {
      box.replaceChildren(el('p', { class: 'small', text: 'No instance is running.' }));
      return;
    }
    const cols = ['model', 'GPUs', 'port', 'pid', 'state', 'uptime', 'memory', 'in flight', 'queued', 'expires', 'log'];
    const rows = insts.map((i) => {
      const cells = [
        i.model,
        i.gpus && i.gpus.length ? gpuList(i.gpus) : 'CPU',
        i.port,
        i.pid,
        el(
          'span',
          {},
          `${instIcon(i.state)} ${i.state}`,
          i.state === 'dead' && i.exit_code !== null && i.exit_code !== undefined ? ` (exit ${i.exit_code})` : '',
          i.state === 'dead' && i.log ? el('span', { class: 'log' }, ' log: ', el('code', { text: i.log })) : null,
        ),
        el('span', { 'data-up': i.pid, text: uptime(i) }),
        i.memory_used_mib === null || i.memory_used_mib === undefined ? '—' : mib(i.memory_used_mib),
        i.in_flight ?? 0,
        i.queued ?? 0,
        el('span', { 'data-exp': i.pid, text: expires(i) }),
        el('button', {
          type: 'button',
          class: 'ghost',
          'aria-label': `show the last lines of ${i.model}'s log`,
          onclick: () => showLog(i.model),
          text: 'log tail',
        }),
      ];
      return el(
        'tr',
        { class: `i-${i.state}` },
        cells.map((c, k) => el(k === 0 ? 'th' : 'td', { 'data-label': cols[k], scope: k === 0 ? 'row' : null }, c instanceof Node ? c : String(c))),
      );
    });
    box.replaceChildren(
      el(
        'table',
        { class: 'insts' },
        el('thead', {}, el('tr', {}, cols.map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, rows),
      ),
    );
  }

  // ------------------------------------------------------------ log tail

  async function showLog(model) {
    const box = $('logview');
    $('log-title').textContent = `Log of ${model}`;
    $('log-text').textContent = 'reading…';
    box.hidden = false;
    try {
      const res = await api(`/ui/api/log/${encodeURIComponent(model)}`);
      if (!res.ok) {
        $('log-text').textContent = await errorText(res);
      } else {
        const j = await res.json();
        $('log-title').textContent = `Log of ${model} (${j.log}), last lines`;
        $('log-text').textContent = j.tail || '(empty)';
      }
    } catch (e) {
      if (!(e instanceof AuthError)) $('log-text').textContent = String(e.message || e);
    }
    $('log-text').focus();
  }

  // ------------------------------------------------------------ actions

  async function post(path, body) {
    const res = await api(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(await errorText(res));
    return res.json().catch(() => ({}));
  }

  async function act(model, pendingText, fn) {
    const back = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    S.pending[model] = pendingText;
    delete S.msgs[model];
    render();
    try {
      const text = await fn();
      S.msgs[model] = { kind: 'ok', text };
    } catch (e) {
      S.msgs[model] = e instanceof AuthError ? { kind: 'error', text: 'the API key is needed' } : { kind: 'error', text: `✖ ${e.message}` };
    }
    delete S.pending[model];
    render();
    await fetchState(); // a fresh reading at once
    // Keyboard users keep their place: the button they pressed, or the next one of the row that still works.
    if (back && (!document.activeElement || document.activeElement === document.body)) {
      const row = document.querySelector(`[data-model="${CSS.escape(model)}"]`);
      const same = document.querySelector(`[data-key="${CSS.escape(back)}"]`);
      const next =
        same && !same.disabled
          ? same
          : row && (row.querySelector('button.unload:not(:disabled)') || row.querySelector('button:not(:disabled)'));
      if (next) next.focus();
    }
  }

  function load(model, gpu, label) {
    return act(model, `loading ${model} on ${label}…`, async () => {
      const r = await post('/models/load', { model, gpu });
      const i = r.instance || r;
      const where = i.gpus && i.gpus.length ? `GPU ${gpuList(i.gpus)}` : i.gpus ? 'CPU' : label;
      return `✔ ${model} ${r.instance && r.instance.already_running ? 'was already running' : 'runs'} on ${where}${i.port ? ` (port ${i.port}, pid ${i.pid})` : ''}`;
    });
  }

  function unload(model) {
    return act(model, `unloading ${model}…`, async () => {
      await post('/models/unload', { model });
      return `✔ ${model} unloaded`;
    });
  }

  function keepAlive(model, value) {
    if (!value) return;
    return act(model, `setting keep-alive of ${model} to ${value === '-1' ? 'forever' : value}…`, async () => {
      await post('/models/load', { model, keep_alive: value === '-1' ? -1 : value });
      return `✔ keep-alive of ${model}: ${value === '-1' ? 'forever' : value}`;
    });
  }

  // ------------------------------------------------------------ API key

  function askKey(refused) {
    if (S.needKey) return;
    S.needKey = true;
    gen++;
    if (abort) abort.abort();
    clearTimeout(pollTimer);
    if (refused) sessionStorage.removeItem(KEY);
    $('auth').hidden = false;
    $('auth-why').textContent = refused
      ? 'That API key was refused. Enter the key serve was started with (--api-key).'
      : 'This serve was started with --api-key. Enter the key once; it is kept for this tab only.';
    setConn('key needed');
    $('auth-key').focus();
  }

  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('auth-key').value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $('auth-key').value = '';
    $('auth').hidden = true;
    S.needKey = false;
    start();
    fetchState();
  });

  $('log-close').addEventListener('click', () => {
    $('logview').hidden = true;
  });

  // ------------------------------------------------------------ start

  const sel = $('refresh');
  sel.value = localStorage.getItem(REFRESH) || 'live';
  if (!sel.value) sel.value = 'live';
  sel.addEventListener('change', () => {
    localStorage.setItem(REFRESH, sel.value);
    start();
  });
  setInterval(tick, 1000);
  start();
})();

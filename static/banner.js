/* ConsentGate consent banner */
(() => {
  'use strict';
  const W = window, D = document, HASH = '#consentgate-settings';
  if (W.__consentgate) return; // loaded twice
  W.__consentgate = 1;

  let cfg, S, state, cats, root, back, live, first, settings, reopen;
  let layer = null, ret = null, acted = false, busy = false, gcmOn = false, loading = null;
  const subs = [];

  const t = (k, v) => {
    let s = S[k] != null ? String(S[k]) : k;
    for (const x in v || {}) s = s.split('{' + x + '}').join(v[x]);
    return s;
  };
  const list = s => String(s || '').split(/[\s,]+/).filter(Boolean);
  const valid = s => !!s && typeof s == 'object' && Array.isArray(s.granted);
  const cat = n => cats.find(c => c.name === n);
  const has = n => state.granted.indexOf(n) >= 0 || !!(cat(n) || {}).required;
  const allowed = el => list(el.getAttribute('data-consent')).every(has);
  const title = n => (cat(n) || {}).title || n;
  const copy = () => JSON.parse(JSON.stringify(state));

  // h('tag.class', {attr, onevent}, ...children)
  function h(tag, attrs, ...kids) {
    const p = tag.split('.'), el = D.createElement(p[0]);
    if (p.length > 1) el.className = p.slice(1).join(' ');
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k.slice(0, 2) == 'on') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of [].concat(...kids)) if (c != null && c !== false) el.append(c);
    return el;
  }
  const btn = (label, fn, cls) => h('button.cg-btn' + (cls || ''), { type: 'button', onclick: fn }, label);
  const msgBox = () => h('p.cg-msg', { role: 'alert' });
  const focusables = el => [...el.querySelectorAll('button,a[href],input,summary,[tabindex]')]
    .filter(x => !x.disabled && x.tabIndex >= 0 && x.getClientRects().length);
  const focus = el => el && el.focus({ preventScroll: true });
  const policyLink = () => cfg.policy_url ? h('a.cg-link', { href: cfg.policy_url }, t('policy_link')) : null;

  // show one layer, or none (then the reopen button)
  function show(el) {
    for (const l of [first, settings]) if (l && l !== el) { l.hidden = true; l.removeAttribute('aria-modal'); }
    layer = el || null;
    back.hidden = !modal();
    if (el) {
      el.hidden = false;
      if (modal()) el.setAttribute('aria-modal', 'true');
      el.querySelector('.cg-msg').textContent = '';
    }
    reopen.hidden = !!el || !state.decided;
  }

  function grab() {
    const a = D.activeElement;
    if (!layer || !root.contains(a)) ret = a && a !== D.body && !root.contains(a) ? a : null;
  }

  function restore() {
    if (ret && ret.isConnected && ret.getClientRects().length) focus(ret);
    else if (!reopen.hidden) focus(reopen);
    ret = null;
  }

  const needFirst = () => !!cfg.show && !acted;
  const modal = () => layer && layer.getAttribute('role') == 'dialog';
  const unhash = () => { if (location.hash == HASH) history.replaceState(null, '', location.pathname + location.search); };

  // first layer: modal dialog, or a bar (opt-out/notice)
  function buildFirst() {
    const reg = !state.decided && state.regime, bar = reg == 'opt-out' || reg == 'notice', link = policyLink();
    const changed = cfg.reconsent ? h('p.cg-changed', { id: 'cg-changed' }, t('policy_changed'), link && [' ', link]) : null;
    const main = reg == 'opt-out'
      ? [t('optout_text'), btn(t('optout_button'), () => send({ granted: cats.filter(c => !c.required && !c.sale).map(c => c.name) }))]
      : reg == 'notice' ? [t('notice_text'), btn(t('notice_ok'), () => send({ all: true }))]
        : [t('description'), btn(t('accept_all'), () => send({ all: true })), btn(t('reject_all'), () => send({ none: true }))];
    const el = h('div.cg-layer.' + (bar ? 'cg-bar' : 'cg-dialog'), bar
      ? { role: 'region', 'aria-label': t('banner_label'), hidden: true }
      : { role: 'dialog', 'aria-labelledby': 'cg-title', 'aria-describedby': (changed ? 'cg-changed ' : '') + 'cg-desc', hidden: true },
    h('div.cg-text', null,
      bar ? null : h('h2.cg-title', { id: 'cg-title' }, t('title')),
      changed,
      h('p.cg-desc', { id: 'cg-desc' }, main[0], !changed && link ? [' ', link] : null)),
    h('div.cg-btns', null, main.slice(1), btn(t('settings'), open, '.cg-open')),
    msgBox());
    root.append(el);
    return el;
  }

  function showFirst() {
    if (!first) first = buildFirst();
    grab();
    show(first);
    focus(first.querySelector('.cg-btn'));
  }

  function buildSettings() {
    const boxes = [];
    const rows = cats.map((c, i) => {
      const id = 'cg-c' + i, req = !!c.required;
      const st = h('span.cg-state', { 'aria-hidden': req ? null : 'true' });
      const box = h('input.cg-sw', {
        type: 'checkbox', role: 'switch', id, value: c.name,
        'aria-describedby': c.description ? id + 'd' : null
      });
      box.checked = req || has(c.name);
      box.disabled = req;
      const upd = () => { st.textContent = t(req ? 'always_on' : box.checked ? 'on' : 'off'); };
      box.addEventListener('change', upd);
      upd();
      boxes.push(box);
      const svc = (cfg.services || []).filter(s => s && s.category === c.name);
      return h('div.cg-cat', null,
        h('div.cg-row', null, h('label.cg-name', { for: id }, c.title || c.name), st, box),
        c.description ? h('p.cg-small', { id: id + 'd' }, c.description) : null,
        svc.length ? h('details.cg-svcs', null,
          h('summary', null, t('services') + ' (' + svc.length + ')'),
          h('ul', null, svc.map(s => h('li', null, h('strong', null, s.title || s.name), s.purpose ? ' – ' + s.purpose : '')))) : null);
    });
    const el = h('div.cg-layer.cg-dialog.cg-settings', {
      role: 'dialog', 'aria-labelledby': 'cg-stitle', 'aria-describedby': 'cg-sintro', hidden: true
    },
    h('div.cg-head', null,
      h('h2.cg-title', { id: 'cg-stitle' }, t('settings_title')),
      btn(t(needFirst() ? 'back' : 'close'), close, '.cg-x')),
    h('p.cg-small', { id: 'cg-sintro' }, t('settings_intro'), cfg.policy_url ? [' ', policyLink()] : null),
    state.gpc ? h('p.cg-small', null, t('gpc_honored')) : null,
    rows,
    h('div.cg-btns', null,
      btn(t('save'), () => send({ granted: boxes.filter(b => b.checked).map(b => b.value) })),
      btn(t('accept_all'), () => send({ all: true })),
      btn(t('reject_all'), () => send({ none: true })),
      state.decided ? btn(t('withdraw'), () => send(null, 'DELETE')) : null),
    msgBox());
    return el;
  }

  // a decided visitor's page carries a small config: the rest comes from
  // config_url when needed (settings, embeds); failing that, the settings
  // open as the no-JS page
  function load() {
    if (!cfg.config_url) return Promise.resolve();
    return loading = loading || fetch(cfg.config_url, { credentials: 'omit' }).then(r => r.json()).then(f => {
      if (!f || !Array.isArray(f.categories)) throw 0;
      for (const k of ['state', 'show', 'reconsent']) delete f[k];
      Object.assign(cfg, f, { config_url: '' });
      S = cfg.strings || {};
      cats = cfg.categories.filter(c => c && typeof c.name == 'string');
    }).catch(e => { loading = null; throw e; });
  }

  function open() {
    if (!root || reopen.hasAttribute('aria-busy')) return;
    if (!cfg.config_url) return build();
    reopen.setAttribute('aria-busy', 'true');
    load().then(() => { reopen.removeAttribute('aria-busy'); build(); },
      () => { location.href = cfg.api + 'settings'; });
  }

  function build() {
    grab();
    const opener = D.activeElement;
    if (settings) settings.remove();
    settings = buildSettings();
    settings.opener = opener;
    root.append(settings);
    show(settings);
    focus(settings.querySelector('.cg-btn'));
  }

  function close() {
    unhash();
    if (needFirst()) {
      const o = settings.opener;
      if (!first) first = buildFirst();
      show(first);
      focus(first.contains(o) ? o : first.querySelector('.cg-open'));
    } else {
      show(null);
      restore();
    }
  }

  async function send(body, method, where) {
    if (busy) return;
    busy = true;
    const box = (where || layer || root).querySelector('.cg-msg') || live;
    box.textContent = '';
    root.setAttribute('aria-busy', 'true');
    let ns = null;
    try {
      const r = await fetch(cfg.api + 'state', {
        method: method || 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined
      });
      ns = r.ok ? await r.json() : null;
    } catch (e) { /* offline */ }
    busy = false;
    root.removeAttribute('aria-busy');
    if (!valid(ns)) {
      box.textContent = S.error || 'Could not save your choice. Please try again.';
      return;
    }
    apply(ns);
  }

  function apply(ns, quiet) {
    const old = state.granted;
    state = ns;
    acted = true;
    cfg.reconsent = false;
    unhash();
    show(null);
    if (!quiet) { restore(); live.textContent = t('saved'); }
    gcm(true);
    activate().then(() => gcm());
    const st = copy();
    for (const fn of subs.slice()) try { fn(st); } catch (e) { console.error(e); }
    D.dispatchEvent(new CustomEvent('consentgate:change', { detail: st }));
    // running scripts can't be stopped: reload on revocation
    if (old.some(n => !has(n))) setTimeout(() => location.reload(), 50);
  }

  const SKIP = ['type', 'data-cg-type', 'data-cg-src', 'data-src', 'src'];
  const plain = s => s.isConnected && (s.getAttribute('type') || '').trim().toLowerCase() == 'text/plain';

  function loadFrame(f) {
    const src = f.getAttribute('data-cg-src') || f.getAttribute('data-src');
    if (!src) return;
    f.removeAttribute('data-cg-src');
    f.removeAttribute('data-src');
    f.src = src;
    f.hidden = false;
    const p = f.nextElementSibling;
    if (p && p.classList.contains('cg-embed')) p.remove();
  }

  async function activate() {
    for (const f of D.querySelectorAll('iframe[data-consent][data-cg-src],iframe[data-consent][data-src]')) {
      if (allowed(f)) loadFrame(f);
    }
    const todo = [...D.querySelectorAll('script[data-consent]')].filter(s => plain(s) && allowed(s));
    let pending = [];
    for (const old of todo) {
      if (!plain(old)) continue;
      const s = D.createElement('script');
      for (const a of old.attributes) if (SKIP.indexOf(a.name) < 0) s.setAttribute(a.name, a.value);
      if (old.nonce) s.nonce = old.nonce;
      const type = old.getAttribute('data-cg-type');
      if (type) s.type = type;
      const src = old.getAttribute('data-cg-src') || old.getAttribute('data-src') || old.getAttribute('src');
      if (src) {
        s.async = false;
        pending.push(new Promise(res => { s.addEventListener('load', res); s.addEventListener('error', res); }));
        s.src = src;
      } else {
        // inline code runs at once: wait for earlier external scripts
        await Promise.all(pending);
        pending = [];
        if (!plain(old)) continue;
        s.text = old.text;
      }
      // a held-back Google tag must find the consent state queued before its own commands
      if (!gcmOn && /gtag|dataLayer|googletagmanager/.test((src || '') + old.text)) { W.dataLayer = W.dataLayer || []; gcm(); }
      old.replaceWith(s);
    }
    await Promise.all(pending);
  }

  function embeds() {
    for (const p of D.querySelectorAll('.cg-embed[data-consent]')) {
      if (p.childNodes.length) continue;
      const names = list(p.getAttribute('data-consent')), f = p.previousElementSibling;
      const src = f && f.tagName == 'IFRAME' && (f.getAttribute('data-cg-src') || f.getAttribute('data-src'));
      const frame = src ? f : null;
      const svc = p.getAttribute('data-cg-service') || (src ? src.split('/')[2] || '' : '');
      const c = names.map(title).join(', ');
      if (cfg.lang) p.lang = cfg.lang;
      if (cfg.dir) p.dir = cfg.dir;
      p.append(h('p', null, t('embed_text', { service: svc, category: c })),
        h('div.cg-btns', null,
          frame ? btn(t('embed_load'), () => loadFrame(frame)) : null,
          btn(t('embed_allow', { category: c }), () => send({ granted: state.granted.concat(names) }, 0, p))),
        msgBox());
    }
  }

  // Google Consent Mode v2, mapped by the gateway's table (consent type:
  // category, '' always granted). The gateway queues the default right
  // after <head> and sets __consentgateGCM; if that inline script was
  // blocked (an upstream CSP), the banner queues the default itself.
  function queue() {
    if (typeof W.gtag == 'function') W.gtag.apply(W, arguments);
    else W.dataLayer.push(arguments); // an arguments object, as gtag() pushes
  }
  function gcm(update) {
    if (typeof W.gtag != 'function' && !W.dataLayer) return;
    const types = cfg.consent_mode || {}, m = {};
    for (const k in types) m[k] = !types[k] || has(types[k]) ? 'granted' : 'denied';
    try {
      if (!gcmOn) { gcmOn = true; if (!W.__consentgateGCM) queue('consent', 'default', m); } else if (update) queue('consent', 'update', m);
    } catch (e) { console.warn('consentgate: gtag', e); }
  }

  function init() {
    try {
      const el = D.getElementById('consentgate-config');
      cfg = el && JSON.parse(el.textContent);
    } catch (e) { cfg = null; }
    if (!cfg || typeof cfg.api != 'string' || !valid(cfg.state) || !Array.isArray(cfg.categories)) {
      console.warn('consentgate: missing or invalid #consentgate-config');
      return;
    }
    S = cfg.strings || {};
    state = cfg.state;
    cats = cfg.categories.filter(c => c && typeof c.name == 'string');

    root = h('div.cg-root', { id: 'consentgate', lang: cfg.lang || null, dir: cfg.dir || S.dir || null });
    back = h('div.cg-backdrop', { hidden: true });
    live = h('div.cg-sr', { role: 'status' });
    reopen = h('button.cg-reopen', { type: 'button', hidden: true, onclick: open }, t('reopen'));
    root.append(back, live, reopen);
    D.body.prepend(root);

    W.consentgate = {
      get: copy,
      open,
      on(ev, fn) {
        if (ev == 'change' && typeof fn == 'function') subs.push(fn);
        return () => { const i = subs.indexOf(fn); if (i >= 0) subs.splice(i, 1); };
      }
    };

    D.addEventListener('keydown', e => {
      if (!modal()) return;
      if (e.key == 'Escape') {
        if (layer === settings) { e.preventDefault(); close(); }
      } else if (e.key == 'Tab') {
        const f = focusables(layer), a = f[0], z = f[f.length - 1], cur = D.activeElement;
        if (!a) return;
        if (!layer.contains(cur) || (e.shiftKey ? cur === a : cur === z)) {
          e.preventDefault();
          focus(e.shiftKey && layer.contains(cur) ? z : a);
        }
      }
    });
    D.addEventListener('focusin', e => {
      if (modal() && !layer.contains(e.target)) focus(focusables(layer)[0]);
    });
    D.addEventListener('click', e => {
      const a = e.target.closest && e.target.closest('a[href*="' + HASH + '"]');
      if (a && a.hash == HASH) { e.preventDefault(); open(); }
    });
    W.addEventListener('hashchange', () => { if (location.hash == HASH) open(); });
    // back/forward cache: the choice may have changed on another page
    W.addEventListener('pageshow', e => {
      if (e.persisted) fetch(cfg.api + 'state', { credentials: 'same-origin' }).then(r => r.json()).then(ns => {
        const key = x => [x.decided, x.policy_version, x.granted].join();
        if (valid(ns) && ns.decided && key(ns) != key(state)) apply(ns, 1);
      }).catch(() => {});
    });

    if (cfg.config_url && D.querySelector('.cg-embed[data-consent]:empty')) load().then(embeds, () => {}); else embeds();
    gcm();
    activate().catch(e => console.warn('consentgate', e));
    if (cfg.show) showFirst(); else show(null);
    if (location.hash == HASH) open();
  }

  const start = () => { try { init(); } catch (e) { console.warn('consentgate: not started', e); } };
  if (D.readyState == 'loading') D.addEventListener('DOMContentLoaded', start); else start();
})();

// adapterd status page: keeps the server-rendered page live without a
// reload. Every second it fetches the live part (/ui/live with the same
// query) and patches it in: elements that did not change since the last
// fetch stay as they are, so focus, an opened error and text selection
// survive; a progress bar that moved glides from its old value to its new
// one. Without this script the page is a snapshot.
"use strict";

(function () {
  const live = document.getElementById("live");
  const conn = document.getElementById("conn");
  const form = document.getElementById("filters");
  if (!live) return;

  const pollEvery = 1000; // ms; a merge moves visibly between polls
  const retryEvery = 5000;
  let prev = parse(live.innerHTML); // the last fetched fragment, untouched
  let prevHTML = null;
  let timer = 0;
  let inFlight = null;

  function parse(html) {
    const t = document.createElement("template");
    t.innerHTML = html;
    return t.content;
  }

  function kids(el) {
    const m = new Map();
    for (const c of el.children) {
      const id = c.getAttribute("data-id");
      if (id !== null) m.set(id, c);
    }
    return m;
  }

  // morph makes livEl's children those of next. A child whose data-id has
  // the same markup in prev (the fragment livEl was built from) is kept;
  // one marked data-morph is patched in turn; any other is replaced.
  function morph(liveEl, prevEl, nextEl) {
    const before = Array.from(liveEl.children);
    const liveBy = kids(liveEl), prevBy = prevEl ? kids(prevEl) : new Map();
    const out = [];
    for (const n of Array.from(nextEl.children)) {
      const id = n.getAttribute("data-id");
      const l = id !== null ? liveBy.get(id) : undefined;
      const p = id !== null ? prevBy.get(id) : undefined;
      if (l && p && p.isEqualNode(n)) { out.push(l); continue; }
      if (l && p && n.hasAttribute("data-morph") && l.tagName === n.tagName) {
        morph(l, p, n);
        copyAttrs(l, n);
        out.push(l);
        continue;
      }
      const fresh = document.importNode(n, true);
      carry(l, fresh);
      ages(fresh);
      out.push(fresh);
    }
    // Same children in the same places: replace only what changed, so the
    // rest is never detached (detaching drops focus).
    if (out.length === before.length && out.every((o, i) => o === before[i] || o.getAttribute("data-id") === before[i].getAttribute("data-id"))) {
      out.forEach((o, i) => { if (o !== before[i]) before[i].replaceWith(o); });
    } else {
      liveEl.replaceChildren(...out);
    }
  }

  function copyAttrs(to, from) {
    for (const a of Array.from(from.attributes)) {
      if (to.getAttribute(a.name) !== a.value) to.setAttribute(a.name, a.value);
    }
  }

  // carry moves what the reader did to an element onto its replacement:
  // opened errors stay open, focus stays, progress bars glide.
  // old is undefined for a row that is new: only its bars start gliding.
  function carry(old, fresh) {
    // A bar that just appeared glides too, from the rate served with it,
    // so a step shorter than three polls still moves between them.
    for (const f of fresh.querySelectorAll("progress[data-id]")) {
      const p = old && find(old, f.getAttribute("data-id"));
      glide(f, p && p.max === f.max ? p.value : f.value, f.value);
    }
    if (!old) return;
    for (const d of old.querySelectorAll("details[open][data-id]")) {
      const f = find(fresh, d.getAttribute("data-id"));
      if (f) f.open = true;
    }
    const a = document.activeElement;
    if (a && old.contains(a)) {
      const holder = a.closest("[data-id]");
      const f = holder && find(fresh, holder.getAttribute("data-id"));
      requestAnimationFrame(() => {
        const target = f && (f.tagName === "DETAILS" ? f.querySelector("summary") : f);
        if (target && target.focus) target.focus({ preventScroll: true });
      });
    }
  }

  function find(root, id) {
    if (root.getAttribute && root.getAttribute("data-id") === id) return root;
    for (const e of root.querySelectorAll("[data-id]")) {
      if (e.getAttribute("data-id") === id) return e;
    }
    return null;
  }

  // A bar does not wait for the next poll: from the value just served it
  // moves on at the rate of the last two, toward where the next poll should
  // find it, so it neither lags the numbers beside it nor stands still. It
  // never moves back: after an overshoot it waits for the served value.
  const still = window.matchMedia("(prefers-reduced-motion: reduce)");
  const seen = new Map(); // data-id -> {v, t}: the last value served and when
  function glide(bar, drawn, served) {
    const id = bar.getAttribute("data-id") + " " + bar.max, now = performance.now(); // a new step starts afresh
    const last = seen.get(id);
    // The rate is measured between served values that differ: a poll that
    // brought the same value (the text beside it changed) is no sample.
    if (!last || served !== last.v) {
      if (seen.size > 1000) seen.clear(); // a page left open for weeks
      seen.set(id, { v: served, t: now });
    }
    if (still.matches) return;
    const from = Math.max(drawn, served);
    bar.value = from;
    // On a bar's first sighting the daemon's own average rate (bytes per
    // second, served beside the value) stands in, so a step shorter than
    // three polls still moves; after that only a served value that moved
    // does, so a stalled step stands still.
    let rate = Number(bar.getAttribute("data-rate")) / 1000; // per ms
    if (last) rate = served > last.v ? (served - last.v) / (now - last.t) : 0;
    if (!(rate > 0)) return;
    const to = Math.min(bar.max, served + rate * pollEvery);
    if (to <= from) return;
    const start = now;
    function step(t) {
      // A frame's time can be a little before start: never go back.
      const k = Math.min(1, Math.max(0, (t - start) / pollEvery));
      bar.value = from + (to - from) * k;
      if (k < 1 && bar.isConnected) requestAnimationFrame(step);
    }
    requestAnimationFrame(step);
  }

  // Times are rendered as UTC by the server; here they read as "12 s ago",
  // with the exact time kept in the tooltip.
  function ago(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  let skew = 0; // the daemon's clock minus ours, from each answer's Date
  function ages(root) {
    const now = Date.now() + skew;
    for (const t of root.querySelectorAll("time[data-ago]")) {
      const when = Date.parse(t.getAttribute("datetime"));
      if (isNaN(when)) continue;
      if (!t.title) t.title = t.textContent;
      t.textContent = ago(now - when);
    }
  }

  function say(msg) {
    if (conn.textContent !== msg) conn.textContent = msg;
  }

  async function poll() {
    clearTimeout(timer);
    if (document.hidden) { timer = setTimeout(poll, pollEvery); return; }
    if (inFlight) inFlight.abort();
    const ctl = new AbortController();
    inFlight = ctl;
    let wait = pollEvery;
    try {
      // no-cache: the browser revalidates with the ETag it has, and a
      // 304 hands back the same text, which needs no patching.
      const r = await fetch(live.getAttribute("data-live"), { cache: "no-cache", signal: ctl.signal, headers: { Accept: "text/html" } });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const date = Date.parse(r.headers.get("Date") || "");
      // Date has whole seconds: only a real skew counts.
      if (!isNaN(date)) skew = Math.abs(date - Date.now()) > 2000 ? date - Date.now() : 0;
      const html = await r.text();
      if (html !== prevHTML) {
        const next = parse(html);
        morph(live, prev, next);
        prev = next;
        prevHTML = html;
      }
      say("");
    } catch (e) {
      if (ctl.signal.aborted) return; // a newer poll took over
      say("adapterd is not answering (" + (e && e.message ? e.message : "no connection") + "); this page shows the last state it saw and keeps trying.");
      wait = retryEvery;
    } finally {
      if (inFlight === ctl) inFlight = null;
    }
    timer = setTimeout(poll, wait);
  }

  // go shows the page for another query (filter, state, page) without a
  // reload: the address changes, so reload and back still work.
  function go(search, push) {
    const url = location.pathname + search;
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
    live.setAttribute("data-live", "/ui/live" + search);
    poll();
  }

  function formSearch() {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (typeof v === "string" && v.trim() !== "") p.set(k, v.trim());
    }
    const s = p.toString();
    return s ? "?" + s : "";
  }

  if (form) {
    let debounce = 0;
    form.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => go(formSearch(), false), 200);
    });
    form.addEventListener("submit", (e) => { e.preventDefault(); go(formSearch(), false); });
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a[data-nav]");
    if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    const u = new URL(a.href);
    go(u.search, true);
    syncForm(u.searchParams);
  });
  window.addEventListener("popstate", () => {
    live.setAttribute("data-live", "/ui/live" + location.search);
    syncForm(new URLSearchParams(location.search));
    poll();
  });
  function syncForm(params) {
    if (!form) return;
    const q = form.elements.namedItem("q"), st = form.elements.namedItem("state");
    if (q && document.activeElement !== q) q.value = params.get("q") || "";
    if (st) st.value = params.get("state") || "";
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });

  ages(live);
  setInterval(() => ages(live), 1000);
  timer = setTimeout(poll, pollEvery);
})();

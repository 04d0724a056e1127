// Formcheck labeller: the Label page's clip player, verdict keys and next clips, in the browser (a Streamlit
// components.v2 module). A key shows the next clip at once (its player page loaded ahead in a hidden frame) and
// puts the verdict in an outbox kept in localStorage; the whole outbox goes to the server in the background
// (setStateValue), which saves what it has not recorded yet (dedup by request id) and answers, in the next
// `data`, which request ids are saved. See curation/labeller.py for the server side.
//
// Untrusted text (criteria titles, notes, captions) only ever goes through textContent.

const MODELS = new Map();  // storage prefix -> outbox, undo stack, counts: one per project and coach, kept across reruns
const SEQUENCE_MS = 700;   // digits typed this close together form one criterion number ("1", "2" -> 12)
const RESEND_MS = 5000;   // an outbox not acknowledged this long after it went is sent again
const KEEP_PLAYERS = 8;    // player frames kept: the window plus a few just judged (undo shows them again)

function model(prefix) {
  if (MODELS.has(prefix)) return MODELS.get(prefix);
  const m = {prefix: prefix, outbox: [], undo: [], judged: new Set(), saved: 0, counted: new Set(), refused: [],
             sent: new Map()};
  for (let i = 0; i < localStorage.length; i++) {  // a reload or a reopened tab: what never reached the server
    const k = localStorage.key(i);
    if (!k || !k.startsWith(prefix)) continue;
    try { m.outbox.push(JSON.parse(localStorage.getItem(k))); } catch (err) { localStorage.removeItem(k); }
  }
  m.outbox.sort(function (a, b) { return a.t - b.t || (a.rid < b.rid ? -1 : 1); });
  const undone = new Set(m.outbox.map(function (e) { return e.undoes; }));
  m.outbox.forEach(function (e) {
    m.sent.set(e.rid, e);
    if (e.type !== "undo" && !undone.has(e.rid)) { m.judged.add(e.clip_id); m.undo.push(e.rid); }
  });
  MODELS.set(prefix, m);
  return m;
}

function rid() {
  const a = new Uint8Array(12);
  crypto.getRandomValues(a);
  return Array.from(a, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

class Labeller {
  constructor(root) {
    this.root = root;
    this.cards = new Map();    // clip id -> card (every clip seen in this page: undo shows one again)
    this.players = new Map();  // player key -> iframe
    this.queue = [];           // cards ready after the one on screen
    this.current = null;       // the card on screen
    this.jump = null;          // the last jump token applied
    this.pending = null;       // a digit waiting for a second one
    this.exhausted = false;
    this.build();
    this.onKey = this.onKey.bind(this);
    if (window.__formcheckLabeller) window.removeEventListener("keydown", window.__formcheckLabeller.onKey, true);
    window.__formcheckLabeller = this;
    window.addEventListener("keydown", this.onKey, true);
  }

  destroy() {
    clearTimeout(this.retry);
    window.removeEventListener("keydown", this.onKey, true);
    if (window.__formcheckLabeller === this) window.__formcheckLabeller = null;
  }

  build() {
    const r = this.root;  // holds Streamlit's <style> of labeller.css too: added to, never emptied
    const wrap = el("div", "fc-labeller");
    this.screen = el("div", "fc-screen");
    this.screen.setAttribute("data-testid", "labeller-screen");
    this.caption = el("div", "fc-caption");
    this.stage = el("div", "fc-stage");
    this.message = el("div", "fc-message");
    this.screen.append(this.caption, this.stage, this.message);
    const side = el("div", "fc-side");
    this.counter = el("div", "fc-counter");
    this.counter.setAttribute("data-testid", "labeller-counter");
    this.opinionBox = el("div", "fc-opinion");
    this.feedback = el("div", "fc-feedback");
    this.errors = el("div", "fc-errors");
    this.criteriaBox = el("div", "fc-criteria");
    this.complexity = el("details", "fc-complexity");
    this.noteBox = el("textarea", "fc-note");
    this.noteBox.maxLength = 10000;
    this.noteBox.placeholder = "Note";
    this.noteBox.setAttribute("aria-label", "Note");
    const buttons = el("div", "fc-buttons");
    const self = this;
    const button = function (text, cls, act) {
      const b = el("button", "fc-button " + cls, text);
      b.type = "button";
      // The second click of a double click (detail 2) would judge the next clip: it is ignored.
      b.addEventListener("click", function (e) { if (e.detail <= 1) act(); b.blur(); });
      buttons.appendChild(b);
      return b;
    };
    this.bCorrect = button("Correct (Y)", "fc-primary", function () { self.verdict("correct"); });
    this.bIncorrect = button("Incorrect (N)", "fc-primary", function () { self.verdict("incorrect"); });
    this.bSkip = button("Skip (S)", "", function () { self.verdict("skip"); });
    this.bUndo = button("Undo last verdict (U)", "", function () { self.undo(); });
    this.bAccept = button("Accept the model's verdict (A)", "fc-accept", function () { self.accept(); });
    side.append(this.counter, this.opinionBox, this.criteriaBox, this.complexity, this.noteBox, buttons,
                this.feedback, this.errors);
    wrap.append(this.screen, side);
    r.appendChild(wrap);
  }

  // ---------------------------------------------------------------- data from the server
  update(data, setState) {
    this.setState = setState;
    this.data = data;
    const answered = this.inflight && data.echo === this.inflight;  // the run that read our last message is done
    const m = this.m = model(data.store);
    this.kind = data.kind || "verdict";
    const modeChanged = this.mode !== undefined && this.mode !== (data.assist || "off");
    this.mode = data.assist || "off";
    let changed = false;
    // Saved: drop acknowledged entries; refused ones are dropped too and said once.
    const acked = data.acked || {}, refused = data.refused || {};
    const keep = [];
    for (const e of m.outbox) {
      if (e.rid in acked || e.rid in refused) {
        localStorage.removeItem(m.prefix + e.rid);
        if (e.rid in refused) {
          m.refused.push((e.clip_id ? "clip " + e.clip_id + ": " : "") + refused[e.rid]);
          if (e.type !== "undo") m.judged.delete(e.clip_id);
        } else if (e.type !== "undo" && !m.counted.has(e.rid)) { m.counted.add(e.rid); m.saved += 1; }
        else if (e.type === "undo" && !m.counted.has(e.rid)) { m.counted.add(e.rid); m.saved = Math.max(0, m.saved - 1); }
      } else keep.push(e);
    }
    m.outbox = keep;
    for (const c of data.queue || []) this.cards.set(c.id, c);
    for (const key in data.players || {}) this.loadPlayer(key, data.players[key]);
    this.exhausted = !!data.exhausted;
    let fresh = (data.queue || []).filter(function (c) { return !m.judged.has(c.id); });
    if (data.jump && data.jump !== this.jump) {  // the page moved the coach (another queue, an edit of the clip)
      this.jump = data.jump;
      // A new queue: only the verdicts still on their way keep a clip out of it (a lead may settle a clip
      // judged a minute ago in another queue).
      m.judged = new Set(m.outbox.filter(function (e) { return e.type !== "undo"; }).map(function (e) { return e.clip_id; }));
      fresh = (data.queue || []).filter(function (c) { return !m.judged.has(c.id); });
      this.queue = fresh.slice(1);
      this.show(fresh[0] || null);
      changed = true;
    } else {
      const cur = this.current;
      if (cur && this.cards.get(cur.id) && this.cards.get(cur.id).player !== cur.player) {
        this.show(this.cards.get(cur.id));  // e.g. the skeleton turned off: the same clip, another page
      }
      this.queue = fresh.filter(function (c) { return !cur || c.id !== cur.id; });
      if (!cur && this.queue.length) { this.show(this.queue.shift()); changed = true; }
    }
    if (modeChanged && this.current) this.fillPanel(this.current);  // the model's opinion shown or hidden now
    this.evictPlayers();
    this.render();
    // Tell the server what is on screen after a jump or the first clip, and ask once for a player it did not send.
    const missing = this.missingPlayers();
    if (answered) this.inflight = null;
    if (changed || !this.started || (missing && missing !== this.asked)) {
      this.started = true;
      this.asked = missing;
      this.dirty = true;
    }
    if (this.dirty && !this.inflight) this.send();
  }

  missingPlayers() {
    const self = this;
    return [this.current].concat(this.queue).filter(function (c) { return c && !self.players.has(c.player); })
      .map(function (c) { return c.player; }).join("|");
  }

  // ---------------------------------------------------------------- players: one hidden frame per clip, loaded ahead
  loadPlayer(key, html) {
    if (this.players.has(key)) return;
    const f = el("iframe", "fc-player");
    f.setAttribute("title", "clip player");
    f.setAttribute("data-player", key);
    f.srcdoc = html;
    const self = this;
    f.addEventListener("load", function () {
      const v = f.contentDocument && f.contentDocument.getElementById("video");
      self.fit(f);
      if (!v) return;
      const park = function () {  // loaded and decoded, waiting at its first frame
        if (!f.classList.contains("fc-on")) { v.pause(); v.currentTime = 0; }
      };
      if (v.readyState >= 2) park(); else v.addEventListener("loadeddata", park, {once: true});
    });
    this.players.set(key, f);
    this.stage.appendChild(f);
  }

  fit(f) {
    try {
      const h = f.contentDocument.documentElement.scrollHeight;
      if (h > 0) f.style.height = h + "px";
    } catch (err) { /* not loaded yet */ }
  }

  evictPlayers() {
    const wanted = new Set([this.current].concat(this.queue).filter(Boolean).map(function (c) { return c.player; }));
    const extra = Array.from(this.players.keys()).filter(function (k) { return !wanted.has(k); });
    while (this.players.size > KEEP_PLAYERS && extra.length) {
      const k = extra.shift();
      this.players.get(k).remove();
      this.players.delete(k);
    }
  }

  show(card) {
    const prev = this.current && this.players.get(this.current.player);
    this.current = card;
    this.shownAt = performance.now();
    const next = card && this.players.get(card.player);
    if (prev && prev !== next) {
      prev.classList.remove("fc-on");
      const v = prev.contentDocument && prev.contentDocument.getElementById("video");
      if (v) v.pause();
    }
    if (next) {
      next.classList.add("fc-on");
      const v = next.contentDocument && next.contentDocument.getElementById("video");
      if (v) {
        if (v.currentTime > 0.05) v.currentTime = 0;  // parked at its first frame already: no seek to wait for
        v.play().catch(function () {});
      }
      this.fit(next);
    }
    if (card) this.screen.setAttribute("data-clip-id", card.id); else this.screen.removeAttribute("data-clip-id");
    this.fillPanel(card);
  }

  // ---------------------------------------------------------------- the verdict panel of the clip on screen
  fillPanel(card) {
    const self = this;
    this.criteriaBox.textContent = "";
    this.complexity.textContent = "";
    this.noteBox.value = "";
    this.boxes = [];
    this.sliders = [];
    this.opinionBox.textContent = "";
    this.opinion = null;
    if (!card) return;
    const op = card.opinion;
    this.opinion = op || null;
    if (card.criteria.length) {
      const keys = card.criteria.length <= 9 ? "1-9" : "type the number, 1-" + card.criteria.length;
      this.criteriaBox.appendChild(el("div", "fc-heading", "Criteria that failed (keys " + keys + ")"));
    }
    card.criteria.forEach(function (c, i) {
      const label = el("label", "fc-criterion");
      const box = el("input");
      box.type = "checkbox";
      box.setAttribute("data-criterion", c.name);
      box.checked = self.mode === "on" && !!op && op.failed.indexOf(c.name) >= 0;
      label.append(box, el("span", "", (i + 1) + " · " + c.title));
      if (c.description) label.title = c.description;
      self.criteriaBox.appendChild(label);
      self.boxes.push(box);
    });
    this.complexity.appendChild(el("summary", "", "Complexity (automatic estimate, adjust if needed)"));
    this.complexity.appendChild(el("div", "fc-hint", "Only the components you move are saved as yours."));
    card.components.forEach(function (c) {
      const row = el("label", "fc-slider");
      const start = c.auto === null || c.auto === undefined ? 0.5 : Number(c.auto);
      const s = el("input");
      s.type = "range"; s.min = "0"; s.max = "1"; s.step = "0.05"; s.value = String(start);
      s.setAttribute("data-component", c.name);
      const shown = el("span", "fc-value", start.toFixed(2));
      s.addEventListener("input", function () { shown.textContent = Number(s.value).toFixed(2); });
      row.append(el("span", "", c.title), s, shown);
      self.complexity.appendChild(row);
      self.sliders.push({name: c.name, input: s, start: start});
    });
    if (this.mode === "on" && op) {
      this.opinionBox.appendChild(el("div", "fc-heading", "The model's opinion"));
      this.opinionBox.appendChild(el("div", "", op.verdict + " (p(incorrect) " + op.p_incorrect.toFixed(2)
        + ", confidence " + Math.round(op.confidence * 100) + " %)"));
      if (op.failed.length) this.opinionBox.appendChild(el("div", "", "failed: " + op.failed.join(", ")));
      this.opinionBox.appendChild(el("div", "fc-hint", "A accepts it; the ticks above are its failed criteria."));
    }
  }

  render() {
    const m = this.m;
    const card = this.current;
    this.caption.textContent = card ? card.caption : "";
    let msg = "";
    if (!card) msg = this.exhausted ? "No clip left in this queue." : "Loading the next clip…";
    else if (!this.players.has(card.player)) msg = "Loading the clip…";
    this.message.textContent = msg;
    const onWay = m.outbox.length;
    this.counter.textContent = m.saved + " saved · " + onWay + " on their way";
    this.bSkip.disabled = this.kind !== "verdict" || !card;
    this.bCorrect.disabled = this.bIncorrect.disabled = !card;
    this.bUndo.disabled = !m.undo.length;
    this.bAccept.style.display = this.mode === "on" && this.opinion ? "" : "none";
    this.errors.textContent = m.refused.length ? "Not saved: " + m.refused.slice(-3).join("; ") : "";
  }

  // ---------------------------------------------------------------- verdicts, undo, transport
  failed() {
    return this.boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.getAttribute("data-criterion"); });
  }

  verdict(verdict, failedOverride) {
    const card = this.current, m = this.m;
    if (!card) { this.feedback.textContent = "No clip on screen yet: that key did nothing."; return; }
    if (verdict === "skip" && this.kind !== "verdict") return;
    const components = {};
    for (const s of this.sliders) {
      const v = Number(s.input.value);
      if (Math.abs(v - s.start) > 1e-9) components[s.name] = v;  // an untouched slider is no judgement
    }
    const op = card.opinion;
    const entry = {
      rid: rid(), type: "verdict", t: Date.now(), kind: this.kind, clip_id: card.id, verdict: verdict,
      names: card.criteria.map(function (c) { return c.name; }),
      failed: failedOverride || this.failed(), components: components, note: this.noteBox.value,
      seconds: Math.round((performance.now() - this.shownAt) / 10) / 100,
      start_frame: card.start_frame, end_frame: card.end_frame, exercise: card.exercise,
      prediction: op ? {run_id: op.run_id, p_incorrect: op.p_incorrect, verdict: op.verdict, failed: op.failed} : null,
      prediction_shown: this.mode === "on" && !!op,
    };
    m.outbox.push(entry);
    localStorage.setItem(m.prefix + entry.rid, JSON.stringify(entry));
    m.undo.push(entry.rid);
    m.judged.add(card.id);
    this.lastEntry = entry;
    if (this.mode === "decide first" && op && verdict !== "skip") {
      this.feedback.textContent = "Clip " + card.id + ": you said " + verdict + ", the model said " + op.verdict
        + " (p(incorrect) " + op.p_incorrect.toFixed(2) + ")" + (op.failed.length ? ", failed: " + op.failed.join(", ") : "");
    } else this.feedback.textContent = "";
    this.show(this.queue.shift() || null);
    this.render();
    this.sendSoon();
  }

  accept() {
    const op = this.current && this.current.opinion;
    if (this.mode !== "on" || !op) return;
    this.verdict(op.verdict, this.failed());
  }

  undo() {
    const m = this.m;
    const last = m.undo.pop();
    if (!last) return;
    const i = m.outbox.findIndex(function (e) { return e.rid === last; });
    const entry = i >= 0 ? m.outbox[i] : this.findSent(last);
    if (i >= 0 && !m.outbox[i].sent) {  // never left this page: it simply goes
      m.outbox.splice(i, 1);
      localStorage.removeItem(m.prefix + last);
    } else {  // sent (saved or on its way): an undo event follows it, in order
      const u = {rid: "undo-" + last, type: "undo", t: Date.now(), undoes: last, clip_id: entry ? entry.clip_id : null};
      m.outbox.push(u);
      localStorage.setItem(m.prefix + u.rid, JSON.stringify(u));
    }
    this.feedback.textContent = "Last verdict taken back: label that clip again.";
    if (entry) {
      m.judged.delete(entry.clip_id);
      const card = this.cards.get(entry.clip_id);
      if (card) {
        if (this.current) this.queue.unshift(this.current);
        this.show(card);
      }
    }
    this.render();
    this.sendSoon();
  }

  // The entry is in localStorage already; the message to the server waits until the next clip is painted, so the
  // work of sending it (Streamlit's widget state, the websocket) never delays the clip on screen.
  // One message at a time: a new message while the server's run for the last one is going would stop that run
  // (Streamlit reruns at once), and keys faster than a run under load would then starve the refill of clips. What
  // changes meanwhile goes with the next message, sent when the answer arrives (or after RESEND_MS).
  sendSoon() {
    const self = this;
    this.dirty = true;
    requestAnimationFrame(function () { setTimeout(function () { if (!self.inflight) self.send(); }, 0); });
  }

  findSent(id) {
    return this.m.sent.get(id) || null;
  }

  send() {
    const m = this.m;
    for (const e of m.outbox) {
      if (!e.sent) { e.sent = true; localStorage.setItem(m.prefix + e.rid, JSON.stringify(e)); }
      m.sent.set(e.rid, e);
    }
    const have = Array.from(this.players.keys());
    const sent = Date.now() + Math.random();
    this.inflight = sent;
    this.dirty = false;
    this.setState("sync", {outbox: m.outbox, showing: this.current ? this.current.id : null, have: have,
                           jump: this.jump, sent: sent});
    // Until every entry is acknowledged, the outbox goes again now and then: a message lost with a dropped
    // connection, or a run that ended before saving it, cannot leave a verdict waiting for the next key.
    clearTimeout(this.retry);
    const self = this;
    this.retry = setTimeout(function () {
      if ((self.m.outbox.length || self.dirty) && self.root.isConnected) self.send();
      else self.inflight = null;
    }, RESEND_MS);
  }

  // ---------------------------------------------------------------- keys
  onKey(e) {
    if (e.ctrlKey || e.altKey || e.metaKey || e.repeat) return;
    if (!this.root.isConnected) { this.destroy(); return; }
    const t = e.target, tag = (t && t.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "select" || (tag === "input" && !["checkbox", "radio", "range"].includes(t.type)) ||
        (t && t.isContentEditable)) return;
    const k = e.key.toLowerCase();
    const n = this.boxes ? this.boxes.length : 0;
    if (/^[0-9]$/.test(k)) {
      e.preventDefault(); e.stopPropagation();
      let seq = k;
      if (this.pending) {
        clearTimeout(this.pending.timer);
        const joined = this.pending.seq + k;
        if (Number(joined) <= n) seq = joined; else this.tick(this.pending.seq);
        this.pending = null;
      }
      if (Number(seq + "0") <= n && seq.length === 1) {  // "1" with 10+ criteria: wait for a second digit
        const self = this;
        this.pending = {seq: seq, timer: setTimeout(function () { self.pending = null; self.tick(seq); }, SEQUENCE_MS)};
        return;
      }
      this.tick(seq);
      return;
    }
    const acts = {y: "correct", n: "incorrect", s: "skip", u: "undo", a: "accept", " ": "space"};
    if (!(k in acts)) return;
    e.preventDefault(); e.stopPropagation();
    if (this.pending) { clearTimeout(this.pending.timer); this.tick(this.pending.seq); this.pending = null; }
    const act = acts[k];
    if (act === "undo") this.undo();
    else if (act === "accept") this.accept();
    else if (act === "space") this.togglePlay();
    else this.verdict(act);
  }

  tick(seq) {
    const i = Number(seq) - 1;
    if (this.boxes && i >= 0 && i < this.boxes.length) this.boxes[i].checked = !this.boxes[i].checked;
  }

  togglePlay() {
    const f = this.current && this.players.get(this.current.player);
    const v = f && f.contentDocument && f.contentDocument.getElementById("video");
    if (v) { if (v.paused) v.play().catch(function () {}); else v.pause(); }
  }
}

export default function (component) {
  const data = component.data;
  const root = component.parentElement;
  if (!data || !data.store) return;
  let view = root.__formcheckLabeller;
  if (!view) { view = new Labeller(root); root.__formcheckLabeller = view; }
  view.update(data, component.setStateValue);
  return function () { view.destroy(); };
}

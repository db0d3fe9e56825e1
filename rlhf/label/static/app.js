// Preference labeling page. Model text is untrusted: it is placed with textContent (raw view), or as the HTML the
// server rendered from it (rlhf/label/render.py escapes everything first and writes only its own tags). The
// Content-Security-Policy forbids inline script either way. Who is labeling comes from the token (the link's
// cookie), never from this page. State changes are JSON POSTs carrying the CSRF token from /api/session.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    csrf: null, annotator: null, item: null, busy: false, raw: false, strength: null,
    pending: null, ranking: [],
  };
  const PAIR_KEYS = { "1": "A", "2": "B", "3": "tie" };
  const NAMES = { A: "A is better", B: "B is better", tie: "Tie", skip: "Skip", rank: "Ranking" };

  function requestId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b); // works on plain-http LAN hosts too (randomUUID needs a secure context)
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text || "";
    s.className = kind || "";
  }

  function setBusy(busy) {
    state.busy = busy;
    document.body.dataset.busy = busy ? "1" : "0";
    document.querySelectorAll(".buttons button").forEach((b) => { b.disabled = busy; });
  }

  function showOnly(id) {
    for (const s of ["work", "done", "admin"]) $(s).hidden = s !== id;
  }

  function isRank() { return state.item && state.item.responses.length > 2; }

  function fill(el, text, html) {
    if (state.raw || html === undefined) {
      el.textContent = text; // never innerHTML for raw text: responses may contain <script>, <img onerror=...>
      el.className = "text";
    } else {
      el.innerHTML = html; // the server's sanitised markdown (see the comment at the top)
      el.className = "md";
    }
    el.classList.toggle("empty", text === "");
  }

  function slotName(k) { return isRank() ? String(k + 1) : "AB"[k]; }

  function paintTexts() {
    const it = state.item;
    if (!it) return;
    fill($("prompt"), it.prompt, it.prompt_html);
    it.responses.forEach((text, k) => fill($("resp-" + k), text, it.responses_html[k]));
    $("btn-raw").textContent = state.raw ? "show formatted" : "show raw text";
  }

  function paintRanking() {
    if (!state.item) return;
    state.item.responses.forEach((_, k) => {
      const badge = $("rank-" + k);
      const at = state.ranking.indexOf(k);
      badge.textContent = at < 0 ? "" : "#" + (at + 1);
      badge.parentElement.parentElement.classList.toggle("ranked", at >= 0);
    });
    $("btn-submit-rank").disabled = state.busy || state.ranking.length !== state.item.responses.length;
  }

  function clearPending() {
    state.pending = null;
    $("strength-row").hidden = true;
    document.querySelectorAll(".response").forEach((c) => c.classList.remove("picked"));
  }

  function render(data) {
    const p = data.progress;
    $("progress").max = Math.max(p.total, 1);
    $("progress").value = p.done;
    $("progress-text").textContent = p.done + " / " + p.total;
    state.item = data.item;
    state.ranking = [];
    clearPending();
    if (!data.item) {
      $("work").dataset.itemId = "";
      showOnly("done");
      document.body.dataset.state = "done";
      return;
    }
    const box = $("responses");
    box.replaceChildren();
    box.className = data.item.responses.length > 2 ? "ranked-list" : "pair";
    data.item.responses.forEach((_, k) => {
      const card = document.createElement("div");
      card.className = "card response";
      const title = document.createElement("div");
      title.className = "card-title";
      title.textContent = "Response " + slotName(k) + " ";
      const badge = document.createElement("span");
      badge.id = "rank-" + k;
      badge.className = "rank-badge";
      title.appendChild(badge);
      const body = document.createElement("div");
      body.id = "resp-" + k;
      card.append(title, body);
      box.appendChild(card);
    });
    $("pair-buttons").hidden = isRank();
    $("rank-buttons").hidden = !isRank();
    $("rank-help").hidden = !isRank();
    $("heading").textContent = isRank() ? "Rank the responses, best first" : "Which response is better?";
    paintTexts();
    paintRanking();
    $("work").dataset.itemId = data.item.item_id;
    showOnly("work");
    document.body.dataset.state = "ready";
  }

  async function api(method, path, body, retries) {
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        const opts = { method, credentials: "same-origin", headers: {} };
        if (body !== undefined) {
          opts.headers["Content-Type"] = "application/json";
          opts.headers["X-CSRF-Token"] = state.csrf;
          opts.body = JSON.stringify(body); // the same body (same request_id) on a retry: never a double label
        }
        res = await fetch(path, opts);
      } catch (err) {
        if (attempt < (retries || 0)) {
          setStatus("Connection lost; retrying…", "error");
          await new Promise((r) => setTimeout(r, 400 * (attempt + 1)));
          continue;
        }
        throw new Error("cannot reach the server (" + err.message + ")");
      }
      let data = null;
      try { data = await res.json(); } catch (e) { data = null; }
      if (!res.ok) {
        const d = data && data.detail;
        const err = new Error(d ? (typeof d === "string" ? d : JSON.stringify(d)) : "HTTP " + res.status);
        err.status = res.status;
        throw err;
      }
      return data;
    }
  }

  async function loadNext() {
    render(await api("GET", "/api/next"));
  }

  async function submit(choice, extra) {
    if (state.busy || !state.item) return;
    setBusy(true);
    const body = Object.assign(
      { item_id: state.item.item_id, choice, reason: $("reason").value, request_id: requestId() }, extra || {});
    try {
      const data = await api("POST", "/api/label", body, 5);
      $("reason").value = "";
      setStatus("Saved: " + NAMES[choice] + (body.strength ? " (" + body.strength + ")" : ""), "ok");
      render({ item: data.next, progress: data.progress });
    } catch (err) {
      if (err.status === 409) {
        setStatus("That comparison already has your label (another tab?); showing the next one.", "error");
        await loadNext().catch(() => {});
      } else {
        setStatus("Not saved: " + err.message + ". Press the key again.", "error");
      }
    } finally {
      setBusy(false);
      paintRanking();
    }
  }

  function pickPair(choice) {
    if (choice === "tie" || !state.strength) { submit(choice); return; }
    state.pending = choice; // ask how much better; 1/2/3 then pick the strength, Esc cancels
    document.querySelectorAll(".response").forEach((c, k) => c.classList.toggle("picked", "AB"[k] === choice));
    $("strength-side").textContent = choice;
    $("strength-row").hidden = false;
  }

  function pickRank(k) {
    if (k >= state.item.responses.length || state.ranking.includes(k)) return;
    state.ranking.push(k);
    const n = state.item.responses.length;
    if (state.ranking.length === n - 1) { // the last one is implied
      for (let j = 0; j < n; j++) if (!state.ranking.includes(j)) state.ranking.push(j);
    }
    paintRanking();
  }

  function submitRanking() {
    if (isRank() && state.ranking.length === state.item.responses.length) {
      submit("rank", { ranking: state.ranking.slice() });
    }
  }

  async function undo() {
    if (state.busy || !state.annotator) return;
    setBusy(true);
    try {
      const data = await api("POST", "/api/undo", {}, 2);
      render({ item: data.next, progress: data.progress });
      if (data.undone) {
        $("reason").value = data.undone.reason || "";
        setStatus("Undone (was: " + NAMES[data.undone.choice] + "). Label this one again.", "ok");
      } else {
        setStatus("Nothing to undo.", "");
      }
    } catch (err) {
      setStatus("Undo failed: " + err.message, "error");
    } finally {
      setBusy(false);
      paintRanking();
    }
  }

  function toggleRaw() {
    state.raw = !state.raw;
    paintTexts();
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT")) {
      if (ev.key === "Escape") t.blur();
      return; // typing a reason must not label anything
    }
    if (ev.repeat || !state.annotator) return;
    const key = ev.key;
    if (key === "u" || key === "U") { ev.preventDefault(); clearPending(); undo(); return; }
    if (key === "g" || key === "G") { ev.preventDefault(); $("guidelines-box").open = !$("guidelines-box").open; return; }
    if (key === "m" || key === "M") { ev.preventDefault(); toggleRaw(); return; }
    if (!state.item || state.busy) return;
    if (key === "s" || key === "S") { ev.preventDefault(); clearPending(); submit("skip"); return; }
    if ((key === "r" || key === "R")) { ev.preventDefault(); $("reason").focus(); return; }
    if (state.pending) {
      const idx = "123".indexOf(key);
      if (idx >= 0 && idx < state.strength.length) {
        ev.preventDefault();
        const choice = state.pending;
        clearPending();
        submit(choice, { strength: state.strength[idx] });
      } else if (key === "Escape") { clearPending(); }
      return;
    }
    if (isRank()) {
      if (/^[1-9]$/.test(key)) { ev.preventDefault(); pickRank(Number(key) - 1); }
      else if (key === "Backspace") { ev.preventDefault(); state.ranking = []; paintRanking(); }
      else if (key === "Enter") { ev.preventDefault(); submitRanking(); }
      return;
    }
    if (PAIR_KEYS[key]) { ev.preventDefault(); pickPair(PAIR_KEYS[key]); }
  });

  async function init() {
    document.querySelectorAll("#pair-buttons button[data-choice]").forEach((b) => {
      b.addEventListener("click", () => pickPair(b.dataset.choice));
    });
    $("btn-skip").addEventListener("click", () => { clearPending(); submit("skip"); });
    $("btn-undo").addEventListener("click", undo);
    $("btn-raw").addEventListener("click", toggleRaw);
    $("btn-submit-rank").addEventListener("click", submitRanking);
    let s;
    try {
      s = await api("GET", "/api/session");
    } catch (err) {
      setStatus(err.message, "error");
      return;
    }
    state.csrf = s.csrf;
    state.strength = s.strength;
    (s.strength || []).forEach((name, k) => {
      const b = document.createElement("button");
      const kbd = document.createElement("kbd");
      kbd.textContent = String(k + 1);
      b.append(kbd, document.createTextNode(" " + name));
      b.dataset.strength = name;
      b.addEventListener("click", () => {
        if (!state.pending) return;
        const choice = state.pending;
        clearPending();
        submit(choice, { strength: name });
      });
      $("strength-row").appendChild(b);
    });
    if (s.guidelines_html) {
      $("guidelines").innerHTML = s.guidelines_html; // rendered and sanitised by the server
      $("guidelines-box").hidden = false;
      let seen = null;
      try { seen = localStorage.getItem("label.guidelines-seen"); } catch (e) { seen = null; }
      $("guidelines-box").open = !seen;
      try { localStorage.setItem("label.guidelines-seen", "1"); } catch (e) { /* private mode */ }
    }
    if (!s.annotator) {
      showOnly("admin");
      document.body.dataset.state = "admin";
      return;
    }
    state.annotator = s.annotator;
    $("who").textContent = "Labeling as " + s.annotator;
    loadNext().catch((err) => setStatus(err.message, "error"));
  }

  init();
})();

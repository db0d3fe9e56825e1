// Preference labeling page. Model text is untrusted: it is only ever placed with textContent, never parsed
// as HTML. State changes are JSON POSTs carrying the CSRF token from /api/session.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { csrf: null, annotators: [], annotator: null, item: null, busy: false };
  const KEYS = { "1": "A", "2": "B", "3": "tie", "s": "skip", "S": "skip" };
  const NAMES = { A: "A is better", B: "B is better", tie: "Tie", skip: "Skip" };

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
    for (const s of ["picker", "work", "done"]) $(s).hidden = s !== id;
  }

  function setText(el, text) {
    el.textContent = text; // never innerHTML: responses may contain <script>, <img onerror=...>, ...
    el.classList.toggle("empty", text === "");
  }

  function render(data) {
    const p = data.progress;
    $("progress").max = Math.max(p.total, 1);
    $("progress").value = p.done;
    $("progress-text").textContent = p.done + " / " + p.total;
    state.item = data.item;
    if (!data.item) {
      $("work").dataset.itemId = "";
      showOnly("done");
      document.body.dataset.state = "done";
      return;
    }
    setText($("prompt"), data.item.prompt);
    setText($("resp-a"), data.item.left);
    setText($("resp-b"), data.item.right);
    $("work").dataset.itemId = data.item.item_id;
    showOnly("work");
    document.body.dataset.state = "ready";
    $("resp-a").scrollTop = 0;
    $("resp-b").scrollTop = 0;
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
        const err = new Error((data && data.detail) ? String(data.detail) : "HTTP " + res.status);
        err.status = res.status;
        throw err;
      }
      return data;
    }
  }

  async function loadNext() {
    render(await api("GET", "/api/next?annotator=" + encodeURIComponent(state.annotator)));
  }

  async function submit(choice) {
    if (state.busy || !state.item) return;
    setBusy(true);
    const body = {
      annotator: state.annotator, item_id: state.item.item_id, choice,
      reason: $("reason").value, request_id: requestId(),
    };
    try {
      const data = await api("POST", "/api/label", body, 5);
      $("reason").value = "";
      setStatus("Saved: " + NAMES[choice], "ok");
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
    }
  }

  async function undo() {
    if (state.busy || !state.annotator) return;
    setBusy(true);
    try {
      const data = await api("POST", "/api/undo", { annotator: state.annotator }, 2);
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
    }
  }

  function choose(name) {
    state.annotator = name;
    try { localStorage.setItem("label.annotator", name); } catch (e) { /* private mode */ }
    const url = new URL(window.location.href);
    url.searchParams.set("annotator", name);
    history.replaceState(null, "", url.pathname + url.search);
    $("who").textContent = "Labeling as " + name;
    $("switch").hidden = state.annotators.length < 2;
    loadNext().catch((err) => setStatus(err.message, "error"));
  }

  function showPicker() {
    const box = $("picker-names");
    box.replaceChildren();
    for (const name of state.annotators) {
      const b = document.createElement("button");
      b.textContent = name;
      b.addEventListener("click", () => choose(name));
      box.appendChild(b);
    }
    state.annotator = null;
    state.item = null;
    $("who").textContent = "";
    $("switch").hidden = true;
    showOnly("picker");
    document.body.dataset.state = "picker";
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT")) {
      if (ev.key === "Escape") t.blur();
      return; // typing a reason must not label anything
    }
    if (ev.repeat || !state.annotator) return;
    if (KEYS[ev.key]) { ev.preventDefault(); submit(KEYS[ev.key]); }
    else if (ev.key === "u" || ev.key === "U") { ev.preventDefault(); undo(); }
    else if ((ev.key === "r" || ev.key === "R") && state.item) { ev.preventDefault(); $("reason").focus(); }
  });

  async function init() {
    document.querySelectorAll(".buttons button[data-choice]").forEach((b) => {
      b.addEventListener("click", () => submit(b.dataset.choice));
    });
    $("btn-undo").addEventListener("click", undo);
    $("switch").addEventListener("click", () => {
      try { localStorage.removeItem("label.annotator"); } catch (e) { /* private mode */ }
      history.replaceState(null, "", window.location.pathname);
      setStatus("", "");
      showPicker();
    });
    try {
      const s = await api("GET", "/api/session");
      state.csrf = s.csrf;
      state.annotators = s.annotators;
    } catch (err) {
      setStatus(err.message, "error");
      return;
    }
    const asked = new URLSearchParams(window.location.search).get("annotator");
    let saved = null;
    try { saved = localStorage.getItem("label.annotator"); } catch (e) { saved = null; }
    if (asked && state.annotators.includes(asked)) choose(asked);
    else if (asked) { setStatus("Unknown annotator " + JSON.stringify(asked) + "; pick your name.", "error"); showPicker(); }
    else if (state.annotators.length === 1) choose(state.annotators[0]);
    else if (saved && state.annotators.includes(saved)) choose(saved);
    else showPicker();
  }

  init();
})();

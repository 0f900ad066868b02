// The ocsched dashboard's script: times in the reader's zone, live pages, and decisions
// sent with the CSRF header. Every page works without it (reload to see changes; the
// decision forms post with their csrf_token field and come back).
"use strict";

(() => {
  const STREAM = "/api/v1/events/stream";
  const REFRESH_MS = 120; // gather a burst of events into one fetch
  const CATCH_UP_MS = 250; // the read models behind the newest event: look again
  const CATCH_UP_TRIES = 20;
  const FLASH_MS = 10000; // how long a decision's outcome stays shown

  let seen = Number(document.body.dataset.head || 0); // the newest event this page knows
  let timer = null;
  let busy = false;
  let again = false;
  let tries = 0;

  // Times: <time datetime="…Z">2026-12-05 08:38:28 UTC</time> becomes the local time
  // (without the date when it is today) and how long ago or ahead; the title keeps UTC.
  const pad = (n) => String(n).padStart(2, "0");

  function local(when, now) {
    const clock = `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
    if (when.toDateString() === now.toDateString()) return clock;
    const day = `${pad(when.getMonth() + 1)}-${pad(when.getDate())}`;
    return when.getFullYear() === now.getFullYear()
      ? `${day} ${clock}`
      : `${when.getFullYear()}-${day} ${clock}`;
  }

  function relative(when, now) {
    const seconds = (when - now) / 1000;
    const size = Math.abs(seconds);
    let text;
    if (size < 45) return seconds < 0 ? "just now" : "in a moment";
    if (size < 90 * 60) text = `${Math.round(size / 60)} min`;
    else if (size < 36 * 3600) text = `${Math.round(size / 3600)} h`;
    else text = `${Math.round(size / 86400)} d`;
    return seconds < 0 ? `${text} ago` : `in ${text}`;
  }

  function showTimes(root) {
    const now = new Date();
    for (const element of root.querySelectorAll("time[datetime]")) {
      const when = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) continue;
      if (!element.dataset.utc) element.dataset.utc = element.textContent;
      element.textContent = `${local(when, now)} · ${relative(when, now)}`;
      element.title = element.dataset.utc;
    }
  }

  // Live: each event of the stream fetches this page again and swaps its content.
  function setLive(on) {
    const dot = document.getElementById("live");
    if (!dot) return;
    dot.classList.toggle("on", on);
    dot.title = on ? "live: changes show as they happen" : "reconnecting…";
  }

  function schedule(delay) {
    if (timer === null) timer = setTimeout(refresh, delay);
  }

  function editing() {
    const active = document.activeElement;
    return (
      active !== null &&
      active.closest("main") !== null &&
      ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName) &&
      active.value !== ""
    );
  }

  function swap(fresh) {
    const open = new Set(
      [...document.querySelectorAll("main details[open][data-key]")].map((d) => d.dataset.key),
    );
    const main = document.getElementById("main");
    main.replaceChildren(...document.adoptNode(fresh.getElementById("main")).childNodes);
    const nav = document.querySelector("header nav");
    const freshNav = fresh.querySelector("header nav");
    if (nav && freshNav) nav.replaceWith(document.adoptNode(freshNav));
    document.title = fresh.title;
    for (const details of main.querySelectorAll("details[data-key]")) {
      if (open.has(details.dataset.key)) details.open = true;
    }
    showTimes(main);
  }

  async function refresh() {
    timer = null;
    if (busy) {
      again = true;
      return;
    }
    if (editing()) {
      schedule(500);
      return;
    }
    busy = true;
    try {
      const answer = await fetch(location.href, {
        headers: { Accept: "text/html" },
        cache: "no-store",
        credentials: "same-origin",
      });
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      if (fresh.getElementById("main")) swap(fresh);
      const position = Number(fresh.body.dataset.position || 0);
      if (position < seen && tries < CATCH_UP_TRIES) {
        tries += 1;
        schedule(CATCH_UP_MS);
      } else {
        tries = 0;
      }
    } catch (error) {
      schedule(2000);
    } finally {
      busy = false;
      if (again) {
        again = false;
        schedule(REFRESH_MS);
      }
    }
  }

  function follow() {
    if (!window.EventSource) return;
    const source = new EventSource(`${STREAM}?after=${seen}`);
    source.onopen = () => setLive(true);
    source.onerror = () => setLive(false);
    source.onmessage = (event) => {
      seen = Math.max(seen, Number(event.lastEventId) || 0);
      schedule(REFRESH_MS);
    };
    window.addEventListener("pagehide", () => source.close());
  }

  // Decisions: the form's fields, with the header that proves this page sent them.
  let flashTimer = null;

  function flash(text, failed) {
    const place = document.getElementById("flash");
    if (!place) return;
    place.textContent = text;
    place.className = failed ? "flash bad" : "flash good";
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => {
      place.textContent = "";
    }, FLASH_MS);
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.write) return;
    event.preventDefault();
    const fields = new URLSearchParams(new FormData(form));
    fields.delete("next"); // answer with JSON instead of going back to the page
    const row = form.closest("tr");
    const name = row?.querySelector("td a")?.textContent ?? "the job";
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    try {
      const answer = await fetch(form.action, {
        method: "POST",
        body: fields,
        headers: { "X-Requested-By": "ocsched-dashboard", Accept: "application/json" },
        credentials: "same-origin",
      });
      const result = await answer.json().catch(() => ({ ok: false, error: answer.statusText }));
      if (result.ok) flash(`${name}: ${form.dataset.write}`, false);
      else flash(`${name}: ${result.error}`, true);
    } catch (error) {
      flash(`${name}: ${error}`, true);
    } finally {
      for (const button of form.querySelectorAll("button")) button.disabled = false;
    }
    refresh();
  });

  showTimes(document);
  setInterval(() => showTimes(document), 20000);
  follow();
})();

// Sando's pages read fine without this script; it only keeps a run's page
// current. It long-polls the run's JSON view, GET /runs/{id}?wait=30s with
// If-None-Match (the same request a CI client makes), and on a change
// fetches the page again and swaps in the parts marked data-live. A
// running step's log is followed from where the page's tail ends.
"use strict";
(() => {
  const root = document.getElementById("run");
  if (!root || !window.fetch) return;
  const runURL = root.dataset.run;
  let etag = root.dataset.etag;
  const followed = new Set();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function followLogs() {
    for (const pre of document.querySelectorAll("pre[data-follow]")) {
      const url = pre.dataset.follow;
      if (followed.has(url)) continue;
      followed.add(url);
      follow(pre, url);
    }
  }

  async function follow(pre, url) {
    try {
      const resp = await fetch(url, { cache: "no-store" });
      if (!resp.ok || !resp.body) return;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(value);
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
    } catch (e) {
      return; // the page still links the full log
    }
    const running = pre.parentElement.querySelector("h3 .status");
    if (running) running.remove();
  }

  async function refresh() {
    const resp = await fetch(runURL, { headers: { Accept: "text/html" }, cache: "no-store" });
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    for (const fresh of doc.querySelectorAll("[data-live]")) {
      const old = document.getElementById(fresh.id);
      if (old) old.replaceWith(document.adoptNode(fresh));
    }
    const logs = document.getElementById("logs");
    for (const sec of doc.querySelectorAll("#logs > section.log")) {
      if (document.getElementById(sec.id)) continue; // kept: maybe being followed
      const empty = logs.querySelector(":scope > p");
      if (empty) empty.remove();
      logs.append(document.adoptNode(sec));
    }
    document.title = doc.title;
    followLogs();
  }

  async function poll() {
    for (;;) {
      let resp;
      try {
        resp = await fetch(runURL + "?wait=30s", {
          headers: { Accept: "application/json", "If-None-Match": etag }, cache: "no-store",
        });
      } catch (e) {
        await sleep(5000);
        continue;
      }
      if (resp.status === 304) continue;
      if (!resp.ok) {
        await sleep(5000);
        continue;
      }
      etag = resp.headers.get("ETag") || etag;
      const view = await resp.json();
      try {
        await refresh();
      } catch (e) {
        await sleep(1000);
      }
      if (view.result !== "building") return;
    }
  }

  followLogs();
  if (root.querySelector("#head").classList.contains("building")) poll();
})();

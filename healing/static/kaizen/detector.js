/*! Kaizen browser detector. One tag:
 * <script src="https://KAIZEN/static/kaizen/detector.js" data-key="KEY" async></script>
 * Optional: data-stream (the event stream's origin), data-slow-ms (5000), data-silent-ms (3000),
 * data-capture-headers (request headers a replay needs to name the user, e.g. "X-Demo-User"),
 * data-release, data-environment.
 * It reports what the user runs into, shows them what Kaizen does about it, and never reads a
 * typed value: inputs are recorded as "typed", password and card fields not at all. */
(function () {
  "use strict";
  if (window.Kaizen && window.Kaizen.version) return; // loaded twice: the first copy wins

  var script = document.currentScript || document.querySelector("script[data-key][src*='detector.js']");
  if (!script) return;
  var data = script.dataset;
  var KEY = data.key || "";
  var API = new URL(script.src, location.href).origin;
  var STREAM = (data.stream || "").replace(/\/+$/, "");
  var SLOW_MS = +data.slowMs || 5000;
  var SILENT_MS = +data.silentMs || 3000;
  var HEADERS = (data.captureHeaders || "").split(",").map(function (h) { return h.trim().toLowerCase(); }).filter(Boolean);
  var WINDOW_MS = 60000; // the timeline keeps the last minute of actions
  var DEDUPE_MS = 30000;
  var STORE = "kaizen:" + KEY.slice(0, 12) + ":";
  var STEPS = ["Detected", "Diagnosing", "Root cause found", "Fixing", "Verifying", "Fixed"];
  var RRWEB = API + "/static/kaizen/vendor/rrweb/rrweb.umd.min.cjs";
  // Field names and keys that carry secrets: never read, never sent.
  var SECRET = /pass|pwd|secret|token|auth|card|cvc|cvv|csc|ccnum|cc[-_]?(num|exp)|iban|ssn|otp|\bpin\b/i;
  var CLICKABLE = "button,a[href],input[type=submit],input[type=button],[role=button]";

  var nativeFetch = window.fetch && window.fetch.bind(window);
  var nativeConsoleError = console.error;
  var now = Date.now;
  var iso = function (t) { return new Date(t || now()).toISOString(); };

  function store(name, value) {
    try {
      if (value === undefined) return JSON.parse(localStorage.getItem(STORE + name) || "null");
      if (value === null) localStorage.removeItem(STORE + name);
      else localStorage.setItem(STORE + name, JSON.stringify(value));
    } catch (e) { /* storage full or disabled: the detector still works for this page */ }
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
      return (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }

  function cap(text, n) { text = String(text == null ? "" : text); return text.length > n ? text.slice(0, n - 1) + "\u2026" : text; }

  // A card number typed into a free-text field still never leaves the page: Luhn-valid runs of
  // 13-19 digits become [card].
  function scrub(text) {
    return String(text).replace(/\b\d(?:[ -]?\d){12,18}\b/g, function (run) {
      var digits = run.replace(/\D/g, ""), sum = 0;
      for (var i = 0; i < digits.length; i++) {
        var d = +digits[digits.length - 1 - i];
        if (i % 2) { d *= 2; if (d > 9) d -= 9; }
        sum += d;
      }
      return sum % 10 ? run : "[card]";
    });
  }

  function scrubValue(value, depth) {
    if (typeof value === "string") return scrub(value);
    if (!value || typeof value !== "object" || depth > 6) return value;
    var out = Array.isArray(value) ? [] : {};
    Object.keys(value).forEach(function (k) { out[k] = SECRET.test(k) ? "[masked]" : scrubValue(value[k], depth + 1); });
    return out;
  }

  function isSensitive(el) {
    if (!el || !el.getAttribute) return false;
    var type = (el.getAttribute("type") || "").toLowerCase();
    var auto = (el.getAttribute("autocomplete") || "").toLowerCase();
    return type === "password" || /^cc-|\scc-/.test(auto) || SECRET.test((el.name || "") + " " + (el.id || ""));
  }

  // ---------------------------------------------------------------- what happened: the timeline
  var timeline = [], consoleLog = [], network = [];
  var lastClick = null;

  function push(list, entry, max) { list.push(entry); if (list.length > max) list.shift(); }
  function track(action, target, detail) {
    push(timeline, { at: iso(), t: now(), action: action, target: cap(target, 500), detail: cap(scrub(detail || ""), 2000) }, 200);
  }
  function recent(list) {
    var since = now() - WINDOW_MS;
    return list.filter(function (e) { return e.t >= since; }).map(function (e) {
      var copy = {}; for (var k in e) if (k !== "t") copy[k] = e[k]; return copy;
    });
  }

  function selector(el) {
    var parts = [];
    for (var depth = 0; el && el.nodeType === 1 && el !== document.body && depth < 6; depth++) {
      var tag = el.localName;
      if (el.id) { parts.unshift(tag + "#" + CSS.escape(el.id)); break; }
      var parent = el.parentElement, part = tag;
      if (parent) {
        var same = [].filter.call(parent.children, function (c) { return c.localName === tag; });
        if (same.length > 1) part += ":nth-of-type(" + (same.indexOf(el) + 1) + ")";
      }
      parts.unshift(part);
      el = parent;
    }
    return parts.join(">") || "body";
  }

  function label(el) {
    var text = el.getAttribute("aria-label") || (/^(submit|button)$/.test(el.type) && el.localName === "input" ? el.value : el.textContent);
    return cap((text || "").replace(/\s+/g, " ").trim(), 60);
  }

  // A path a verification replay can use: same-origin requests as /path?query, others in full;
  // query values with secret names masked.
  function pathOf(url) {
    var u;
    try { u = new URL(url, location.href); } catch (e) { return cap(url, 2048); }
    u.searchParams.forEach(function (v, k) { if (SECRET.test(k)) u.searchParams.set(k, "[masked]"); });
    return cap(u.origin === location.origin ? u.pathname + u.search : u.href, 2048);
  }

  function bodyOf(body) {
    if (typeof body !== "string" || body.length > 16384) return null; // FormData, blobs, big bodies: not captured
    try { return scrubValue(JSON.parse(body), 0); } catch (e) { /* not JSON */ }
    if (/^[^=&\s]+=[^&]*(&[^=&\s]+=[^&]*)*$/.test(body)) {
      var form = {};
      new URLSearchParams(body).forEach(function (v, k) { form[k] = v; });
      return scrubValue(form, 0);
    }
    return null;
  }

  function headersOf(headers) {
    var out = {}, any = false;
    if (!headers || !HEADERS.length) return null;
    var read = function (v, k) {
      k = String(k);
      if (HEADERS.indexOf(k.toLowerCase()) >= 0 && !SECRET.test(k)) { out[k] = cap(v, 2000); any = true; }
    };
    if (headers instanceof Headers) headers.forEach(read);
    else if (Array.isArray(headers)) headers.forEach(function (p) { read(p[1], p[0]); });
    else Object.keys(headers).forEach(function (k) { read(headers[k], k); });
    return any ? out : null;
  }

  // ---------------------------------------------------------------- the session and its stream
  var session = store("session"); // {id, token, expires, stream_url, last_event_id, user}
  var user = store("user");
  var ready = null, source = null, backoff = 1000, seenEvents = {};

  function api(path, body) {
    return nativeFetch(API + path + (path.indexOf("?") < 0 ? "?" : "&") + "key=" + encodeURIComponent(KEY), {
      method: "POST", headers: { "Content-Type": "text/plain" }, body: JSON.stringify(body), credentials: "omit",
    });
  }

  function sessionSave(answer) {
    session = {
      id: answer.session_id, token: answer.token, expires: now() + (answer.expires_in || 900) * 1000,
      stream_url: answer.stream_url, last_event_id: session && session.id === answer.session_id ? session.last_event_id : null,
    };
    store("session", session);
    return session;
  }

  function userBody() { return user ? { user: user } : {}; }

  function sessionOpen() {
    if (ready) return ready;
    ready = (session ? tokenRefresh() : Promise.reject()).catch(function () {
      return api("/api/v1/sessions", userBody()).then(function (r) {
        if (r.status !== 201) throw new Error("session refused " + r.status);
        return r.json().then(sessionSave);
      });
    }).then(function (s) { streamOpen(); return s; }, function () {
      session = null;
      ready = null; // the next report or the browser coming back online tries again
      return null;
    });
    return ready;
  }

  function tokenRefresh(withUser) {
    if (!session) return Promise.reject(new Error("no session"));
    var body = { token: session.token };
    if (withUser && user) body.user = user;
    return api("/api/v1/sessions/" + encodeURIComponent(session.id) + "/token", body).then(function (r) {
      if (r.status !== 200) throw new Error("token refused " + r.status);
      return r.json().then(sessionSave);
    });
  }

  // The session with a token still good for a while: the stream only refreshes it when refused.
  function authed() {
    if (!session) return sessionOpen();
    return session.expires - now() > 5000 ? Promise.resolve(session) : tokenRefresh().catch(function () { return session; });
  }

  function streamUrl() {
    var base = STREAM ? STREAM + "/api/v1/sessions/" + encodeURIComponent(session.id) + "/events" : session.stream_url;
    var url = new URL(base, API);
    url.searchParams.set("token", session.token);
    if (session.last_event_id) url.searchParams.set("last_event_id", session.last_event_id);
    return url.href;
  }

  function streamOpen() {
    if (!session || !window.EventSource) return;
    if (source) source.close();
    // EventSource reconnects by itself, sending Last-Event-ID, when the server ends the stream; it
    // gives up only on a refused connection (an expired token): then refresh and reopen.
    source = new EventSource(streamUrl());
    source.onopen = function () { backoff = 1000; };
    source.onerror = function () {
      if (source.readyState !== 2) return;
      source = null;
      setTimeout(function () {
        tokenRefresh().then(streamOpen, function () { ready = null; session = null; store("session", null); sessionOpen(); });
      }, backoff);
      backoff = Math.min(backoff * 2, 60000);
    };
    ["status", "message", "command"].forEach(function (kind) {
      source.addEventListener(kind, function (event) {
        if (event.lastEventId) {
          if (seenEvents[event.lastEventId]) return; // a resumed stream may repeat the last one
          seenEvents[event.lastEventId] = 1;
          session.last_event_id = event.lastEventId;
          store("session", session);
        }
        var payload;
        try { payload = JSON.parse(event.data); } catch (e) { return; }
        if (kind === "status") statusShow(payload);
        else if (kind === "message") messageShow(payload);
        else dispatch(payload, true);
      });
    });
  }

  // ---------------------------------------------------------------- reports: dedupe, queue, send
  var sent = {}, byEvent = {}; // signature -> {t, issue id, local issue}; event id -> local issue
  var FIELDS = ["type", "message", "fingerprint", "exception", "request", "state", "description", "tags", "release", "environment", "event_id"];

  function report(problem, local) {
    local = local || {};
    var body = {};
    FIELDS.forEach(function (k) { if (problem[k] !== undefined) body[k] = problem[k]; });
    body.message = cap(scrub(body.message || body.type || "Problem"), 8192);
    if (body.description) body.description = cap(scrub(body.description), 5000);
    if (body.state) body.state = scrubValue(body.state, 0);
    var signature = [body.type, body.message, location.pathname, body.request ? body.request.method + " " + body.request.path : ""].join("|");
    var previous = sent[signature];
    if (previous && now() - previous.t < DEDUPE_MS) {
      // Already reported: show its popup again rather than send it twice.
      var known = previous.local;
      if (known && known.last && !known.quiet && !local.quiet) { current = known; statusRender(known, known.last); }
      return Promise.resolve(null);
    }
    var entry = sent[signature] = { t: now() };
    body.event_id = body.event_id || uuid();
    body.url = cap(location.origin + pathOf(location.href), 2048); // the page's own address, secret parameters masked
    body.route = cap(location.pathname, 500);
    body.timestamp = iso();
    body.timeline = recent(timeline);
    body.console = recent(consoleLog);
    body.network = recent(network);
    if (data.release) body.release = cap(data.release, 200);
    if (data.environment) body.environment = cap(data.environment, 64);
    if (user && (user.id || user.email)) body.user = { id: user.id || undefined, email: user.email || undefined };
    var issue = entry.local = byEvent[body.event_id] = { type: body.type, target: problem.retry || local.target || null, quiet: problem.quiet || local.quiet };
    if (!issue.quiet) popupDetected(issue, local.text);
    return Promise.race([sessionOpen(), new Promise(function (done) { setTimeout(done, 1500); })]).then(function () {
      if (session) body.session_id = session.id;
      return send(JSON.stringify(body));
    }).then(function (answer) {
      linked(issue, answer);
      return answer;
    });
  }

  // The ingest answer names the issue the report joined: its status events from now on are ours.
  function linked(issue, answer) {
    if (!issue || !answer || !answer.issue_id) return;
    issue.id = answer.issue_id;
    issues[answer.issue_id] = issue;
    for (var s in sent) if (sent[s].local === issue) sent[s].issue = issue.id;
    if (pendingStatus[answer.issue_id]) statusShow(pendingStatus[answer.issue_id]);
  }

  function send(text) {
    if (navigator.onLine === false) { enqueue(text); return Promise.resolve(null); }
    return api("/api/v1/issues", JSON.parse(text)).then(function (r) {
      if (r.status === 429 || r.status >= 500) { enqueue(text); return null; }
      flush();
      return r.status === 202 ? r.json() : null; // any other 4xx: a report this server refuses; resending won't help
    }, function () { enqueue(text); return null; });
  }

  function enqueue(text) {
    var queue = (store("queue") || []).filter(function (q) { return now() - q.t < 86400000 && q.body !== text; });
    queue.push({ t: now(), body: text });
    store("queue", queue.slice(-30));
  }

  var flushing = false;
  function flush() {
    var queue = store("queue");
    if (flushing || !queue || !queue.length || navigator.onLine === false) return;
    flushing = true;
    store("queue", null);
    // Each queued report keeps its event_id, so a resend that did arrive before is stored once.
    Promise.all(queue.map(function (q) {
      var body = JSON.parse(q.body);
      if (!body.session_id && session) body.session_id = session.id;
      return send(JSON.stringify(body)).then(function (answer) { linked(byEvent[body.event_id], answer); });
    })).then(function () { flushing = false; }, function () { flushing = false; });
  }
  window.addEventListener("online", function () { sessionOpen().then(function () { flush(); if (!source && session) streamOpen(); }); });

  // ---------------------------------------------------------------- capture
  window.addEventListener("error", function (event) {
    if (!event.error && !event.message) return; // a resource failing to load
    var err = event.error || {};
    errorReport(err.name || "Error", err.message || event.message, err.stack);
  });
  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason || {};
    errorReport(reason.name || "UnhandledRejection", reason.message || String(event.reason), reason.stack);
  });

  function frames(stack) {
    return String(stack || "").split("\n").map(function (line) {
      var m = /at (?:(.+?) \()?(.+?):(\d+):\d+\)?$/.exec(line) || /^(.*?)@(.+?):(\d+):\d+$/.exec(line);
      return m && { function: cap(m[1] || "?", 200), filename: cap(m[2], 500), lineno: +m[3], in_app: m[2].indexOf(location.origin) === 0 };
    }).filter(Boolean).reverse().slice(-50);
  }

  function errorReport(type, message, stack) {
    track("error", "", type + ": " + message);
    report({ type: "ERROR", message: cap(message, 8192), exception: { type: cap(type, 200), value: cap(message, 8192), stacktrace: frames(stack) } },
      { quiet: !actedRecently(5000), target: lastClick && lastClick.target });
  }

  function actedRecently(ms) { return lastClick && now() - lastClick.t < ms; }

  console.error = function () {
    var text = [].map.call(arguments, function (a) { return a && a.stack ? a.stack : typeof a === "object" ? safeJson(a) : String(a); }).join(" ");
    push(consoleLog, { at: iso(), t: now(), level: "error", message: cap(scrub(text), 8192) }, 100);
    report({ type: "ERROR", message: cap("Console error: " + text, 8192) }, { quiet: true });
    return nativeConsoleError.apply(console, arguments);
  };
  function safeJson(value) { try { return JSON.stringify(value); } catch (e) { return String(value); } }

  // Every request: timeline and network log; a failed one (4xx/5xx, or no answer) is reported, a
  // slow one too; a click waiting to see whether anything happens keeps its requests.
  function requestDone(req, status, detail) {
    req.status = status;
    req.duration_ms = Math.round(performance.now() - req.started);
    var path = pathOf(req.url);
    push(network, { at: iso(req.t), t: req.t, method: req.method, url: path, status: status, duration_ms: req.duration_ms }, 100);
    track("request", req.method + " " + path, String(status || "no answer"));
    var captured = { method: req.method, path: path, body: req.body, status: status, duration_ms: req.duration_ms };
    if (req.headers) captured.headers = req.headers;
    req.captured = captured;
    var click = req.click, failed = !status || status >= 400;
    if (failed) {
      if (click) click.reported = true; // the click's failure is this report; no silent-failure one after it
      var type = status === 401 || status === 403 ? "AUTH_ISSUE" : status === 402 ? "BILLING_ISSUE" : "ERROR";
      var what = status ? "answered " + status : "got no answer";
      report({ type: type, message: req.method + " " + path.split("?")[0] + " " + what + (detail ? ": " + detail : ""), request: captured },
        { quiet: !click && !actedRecently(10000), target: click ? click.target : lastClick && now() - lastClick.t < 10000 ? lastClick.target : null });
    } else if (req.duration_ms >= SLOW_MS) {
      report({ type: "SLOW_RESPONSE", message: req.method + " " + path.split("?")[0] + " took " + req.duration_ms + " ms", request: captured }, { quiet: true });
    }
  }

  function requestStart(method, url, body, headers) {
    var req = { method: String(method || "GET").toUpperCase().slice(0, 10), url: String(url), t: now(), started: performance.now(), body: bodyOf(body), headers: headersOf(headers) };
    if (pending && !pending.done) { req.click = pending; pending.requests.push(req); }
    return req;
  }

  function ownCall(url) { return String(url).indexOf(API + "/api/v1/") === 0 || /^\/api\/v1\/(issues|sessions)/.test(String(url)); }

  // The server's own words for a failed JSON answer ("Your session has expired"), which tell the
  // diagnosis what the user was shown. Error answers only, capped.
  function errorDetail(response) {
    if (!/json/.test(response.headers.get("content-type") || "")) return Promise.resolve("");
    return response.clone().json().then(function (d) {
      var text = d && (d.detail || d.message || d.error);
      return typeof text === "string" ? cap(text, 200) : "";
    }, function () { return ""; });
  }

  if (nativeFetch) {
    window.fetch = function (input, init) {
      var url = input && input.url ? input.url : String(input);
      if (ownCall(url)) return nativeFetch(input, init);
      init = init || {};
      var req = requestStart(init.method || (input && input.method), url, init.body, init.headers || (input && input.headers));
      return nativeFetch(input, init).then(function (response) {
        if (response.status >= 400) errorDetail(response).then(function (d) { requestDone(req, response.status, d); });
        else requestDone(req, response.status);
        return response;
      }, function (err) {
        if (!(err && err.name === "AbortError")) requestDone(req, 0);
        throw err;
      });
    };
  }

  var xhrOpen = XMLHttpRequest.prototype.open, xhrSend = XMLHttpRequest.prototype.send, xhrHeader = XMLHttpRequest.prototype.setRequestHeader;
  XMLHttpRequest.prototype.open = function (method, url) { this._kz = { method: method, url: url, headers: {} }; return xhrOpen.apply(this, arguments); };
  XMLHttpRequest.prototype.setRequestHeader = function (name, value) { if (this._kz) this._kz.headers[name] = value; return xhrHeader.apply(this, arguments); };
  XMLHttpRequest.prototype.send = function (body) {
    var meta = this._kz, xhr = this;
    if (meta && !ownCall(meta.url)) {
      var req = requestStart(meta.method, meta.url, body, meta.headers);
      xhr.addEventListener("loadend", function () {
        var detail = "";
        if (xhr.status >= 400 && /json/.test(xhr.getResponseHeader("content-type") || "") && (!xhr.responseType || xhr.responseType === "text")) {
          try { var d = JSON.parse(xhr.responseText); detail = typeof (d.detail || d.message || d.error) === "string" ? cap(d.detail || d.message || d.error, 200) : ""; } catch (e) { /* not JSON */ }
        }
        requestDone(req, xhr.status, detail);
      });
    }
    return xhrSend.apply(this, arguments);
  };

  // Clicks: the timeline, rage clicks, and silent failures (a button or link after which nothing
  // visible happens: no DOM change, no navigation).
  var pending = null, burst = [];
  document.addEventListener("click", function (event) {
    if (host && event.composedPath().indexOf(host) >= 0) return; // the overlay's own buttons
    var el = event.target.closest ? event.target.closest(CLICKABLE) || event.target : event.target;
    var target = selector(el);
    lastClick = { t: now(), target: target };
    track("click", target, el.matches && el.matches(CLICKABLE) ? label(el) : "");
    burst = burst.filter(function (c) { return now() - c.t < 1000 && c.target === target; });
    burst.push(lastClick);
    if (burst.length === 3) {
      var name = el.matches && el.matches(CLICKABLE) && label(el);
      report({ type: "UX_CONFUSION", message: "Rage clicks on " + (name ? "\u201c" + name + "\u201d" : target) }, { target: target });
    }
    if (!el.matches || !el.matches(CLICKABLE) || el.disabled || el.target === "_blank" || el.hasAttribute("download")) return;
    var click = pending = { t: now(), target: target, label: label(el), requests: [], done: false };
    setTimeout(function () {
      click.done = true;
      if (click.changed || click.reported || burst.length >= 3) return;
      var failed = click.requests.filter(function (r) { return r.captured && (!r.status || r.status >= 400); });
      var behind = failed[0] || click.requests[click.requests.length - 1];
      report({ type: "SILENT_FAILURE", message: "Clicked " + (click.label ? "\u201c" + click.label + "\u201d" : target) + " and nothing happened",
               request: behind && (behind.captured || { method: behind.method, path: pathOf(behind.url), body: behind.body }) }, { target: target });
    }, SILENT_MS);
  }, true);

  function changed() { if (pending && !pending.done) pending.changed = true; }
  new MutationObserver(function (records) {
    for (var i = 0; i < records.length; i++) if (records[i].target !== host && !(records[i].addedNodes[0] === host && records[i].addedNodes.length === 1)) return changed();
  }).observe(document.documentElement, { childList: true, subtree: true, attributes: true, characterData: true });
  ["pagehide", "hashchange", "popstate"].forEach(function (name) { window.addEventListener(name, function () { changed(); track("navigation", pathOf(location.href)); }); });

  // Typing: where and when, never what. Password and card fields are not even named.
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (!el || isSensitive(el) || (host && el === host)) return;
    track("input", selector(el), "[masked]");
  }, true);

  // ---------------------------------------------------------------- commands to the page
  var COMMANDS = {
    retry: function (cmd) {
      var target = cmd.target || (current && current.target);
      var el = target && document.querySelector(target);
      if (!el) throw new Error("nothing to retry at " + (target || "(no target)"));
      el.click();
    },
    refresh_token: function () { return tokenRefresh().then(streamOpen); },
    reload: function () { location.reload(); },
    show_message: function (cmd) { messageShow({ message: cmd.payload.message }); },
  };

  function dispatch(cmd, fromStream) {
    var reason = !cmd || typeof cmd !== "object" || Array.isArray(cmd) ? "not an object"
      : typeof cmd.type !== "string" ? "no type"
      : !Object.prototype.hasOwnProperty.call(COMMANDS, cmd.type) ? "unknown type"
      : cmd.target != null && (typeof cmd.target !== "string" || cmd.target.length > 500) ? "target must be a selector"
      : cmd.payload != null && (typeof cmd.payload !== "object" || Array.isArray(cmd.payload)) ? "payload must be an object"
      : cmd.type === "show_message" && typeof (cmd.payload || {}).message !== "string" ? "show_message needs payload.message"
      : cmd.type === "retry" && cmd.target && !clickable(cmd.target) ? "retry target is not a button or link" : "";
    if (reason) { commandReport(cmd, "ignored", reason); return false; }
    var clean = { type: cmd.type, target: cmd.target || null, payload: cmd.payload || {} };
    try {
      Promise.resolve(COMMANDS[cmd.type](clean)).then(function () { if (fromStream) commandReport(clean, "done", ""); },
        function (e) { commandReport(clean, "failed", e.message); });
    } catch (e) { commandReport(clean, "failed", e.message); return false; }
    return true;
  }

  // Only a button or link the page has may be clicked on command: never an arbitrary element.
  function clickable(target) {
    try { var el = document.querySelector(target); return !el || el.matches(CLICKABLE); } catch (e) { return false; }
  }

  function commandReport(cmd, outcome, reason) {
    var shown;
    try { shown = JSON.parse(JSON.stringify(cmd === undefined ? null : cmd)); } catch (e) { shown = String(cmd); }
    if (!shown || typeof shown !== "object" || Array.isArray(shown)) shown = { value: shown }; // the server keeps objects
    authed().then(function (s) {
      if (!s) return;
      api("/api/v1/sessions/" + encodeURIComponent(s.id) + "/commands", { token: s.token, command: shown, outcome: outcome, reason: cap(reason, 500) })
        .catch(function () { /* the page goes on; the refusal is logged here only */ });
    });
  }

  // ---------------------------------------------------------------- the overlay
  var host, root, panel, live, current = null, issues = {}, pendingStatus = {}, opener = null;
  var shown = null; // the issue whose status the open panel shows
  var CSS_TEXT =
    ":host{all:initial}*{box-sizing:border-box;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif}" +
    ".help{position:fixed;right:16px;bottom:16px;z-index:2147483646;padding:8px 14px;border-radius:999px;border:1px solid rgba(245,165,36,.6);" +
    "background:rgba(24,26,32,.72);color:#fbd38d;backdrop-filter:blur(10px);-webkit-backdrop-filter:blur(10px);cursor:pointer;box-shadow:0 4px 18px rgba(0,0,0,.25)}" +
    ".help:hover{background:rgba(24,26,32,.88)}button:focus-visible,textarea:focus-visible,input:focus-visible,a:focus-visible{outline:2px solid #f5a524;outline-offset:2px}" +
    ".panel{position:fixed;right:16px;bottom:64px;z-index:2147483647;width:min(380px,calc(100vw - 32px));max-height:calc(100vh - 96px);overflow:auto;padding:16px 18px;" +
    "border-radius:14px;color:#f3f4f6;background:rgba(22,24,30,.74);border:1px solid rgba(255,255,255,.14);backdrop-filter:blur(16px) saturate(1.4);" +
    "-webkit-backdrop-filter:blur(16px) saturate(1.4);box-shadow:0 12px 40px rgba(0,0,0,.35);transition:opacity .18s ease,transform .18s ease}" +
    ".panel[hidden]{display:none}h2{margin:0 0 6px;font-size:16px;font-weight:600;color:#fff}.msg p{margin:0 0 8px}.msg a{color:#fbd38d}" +
    ".msg code{font-family:ui-monospace,monospace;background:rgba(255,255,255,.08);padding:0 3px;border-radius:3px}" +
    "ol{display:flex;gap:4px;list-style:none;margin:10px 0 4px;padding:0}li{flex:1;height:4px;border-radius:2px;background:rgba(255,255,255,.18)}" +
    "li.done{background:#f5a524}li.now{background:#fbd38d}.meta{font-size:12px;color:#cbd5e1;margin:0 0 10px}" +
    ".row{display:flex;flex-wrap:wrap;gap:8px;margin-top:10px}button{cursor:pointer;border-radius:8px;padding:7px 12px;border:1px solid rgba(255,255,255,.2);background:rgba(255,255,255,.08);color:#f3f4f6}" +
    "button.primary{background:#f5a524;border-color:#f5a524;color:#1a1205;font-weight:600}.close{position:absolute;top:8px;right:8px;padding:4px 8px;border:0;background:none;color:#cbd5e1}" +
    "textarea{width:100%;min-height:80px;margin-top:6px;padding:8px;border-radius:8px;border:1px solid rgba(255,255,255,.2);background:rgba(0,0,0,.25);color:#fff;resize:vertical}" +
    "label{display:block;margin-top:6px}.note{font-size:12px;color:#fbd38d;margin-top:6px}.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}" +
    "@media (max-width:480px){.panel{right:8px;left:8px;bottom:60px;width:auto}.help{right:8px;bottom:8px}}" +
    "@media (prefers-reduced-motion:reduce){.panel{transition:none}}";

  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") el.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== false && attrs[k] != null) el.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return el;
  }

  // Markdown from Kaizen's messages, built as DOM nodes (never innerHTML): paragraphs, **bold**,
  // *emphasis*, `code` and [links](https://...).
  function markdown(text) {
    var box = h("div", { class: "msg" });
    String(text || "").split(/\n{2,}/).forEach(function (para) {
      var p = h("p"), re = /\*\*(.+?)\*\*|\*(.+?)\*|`(.+?)`|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, last = 0, m;
      while ((m = re.exec(para))) {
        p.appendChild(document.createTextNode(para.slice(last, m.index)));
        p.appendChild(m[1] ? h("strong", { text: m[1] }) : m[2] ? h("em", { text: m[2] }) : m[3] ? h("code", { text: m[3] })
          : h("a", { href: m[5], target: "_blank", rel: "noopener noreferrer", text: m[4] }));
        last = re.lastIndex;
      }
      p.appendChild(document.createTextNode(para.slice(last)));
      box.appendChild(p);
    });
    return box;
  }

  function overlay() {
    if (host) return;
    host = h("div", { id: "kaizen-overlay" });
    root = host.attachShadow({ mode: "open" });
    root.appendChild(h("style", { text: CSS_TEXT }));
    var help = h("button", { class: "help", type: "button", "aria-haspopup": "dialog", "aria-expanded": "false", text: "Help", onclick: function () {
      if (panel.hidden) { opener = help; helpForm(); } else close();
    } });
    live = h("div", { class: "sr", "aria-live": "polite", role: "status" });
    panel = h("div", { class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "kz-title", hidden: true });
    panel.addEventListener("keydown", trap);
    root.appendChild(help);
    root.appendChild(panel);
    root.appendChild(live);
    (document.body || document.documentElement).appendChild(host);
  }

  // Keyboard: Escape closes the panel, Tab cycles inside it while it is open.
  function trap(event) {
    if (event.key === "Escape") { event.stopPropagation(); close(); return; }
    if (event.key !== "Tab") return;
    var items = [].filter.call(panel.querySelectorAll("button,textarea,input,a[href]"), function (el) { return !el.disabled; });
    if (!items.length) return;
    var first = items[0], last = items[items.length - 1], active = root.activeElement;
    if (event.shiftKey && (active === first || !panel.contains(active))) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && (active === last || !panel.contains(active))) { event.preventDefault(); first.focus(); }
  }

  function show(title, body, focus, announce) {
    overlay();
    shown = null;
    panel.textContent = "";
    panel.appendChild(h("button", { class: "close", type: "button", "aria-label": "Close", text: "Close", onclick: close }));
    panel.appendChild(h("h2", { id: "kz-title", text: title }));
    body.forEach(function (el) { if (el) panel.appendChild(el); });
    panel.hidden = false;
    root.querySelector(".help").setAttribute("aria-expanded", "true");
    if (announce !== false) {
      // The words may begin with the title ("Fixed. Your balance…"): a screen reader hears it once.
      var words = (panel.querySelector(".msg") || panel).textContent.slice(0, 300);
      live.textContent = words.lastIndexOf(title, 0) === 0 ? words : title + ". " + words;
    }
    if (focus) (panel.querySelector("textarea,button.primary") || panel.querySelector("button")).focus();
  }

  function close() {
    if (!panel || panel.hidden) return;
    panel.hidden = true;
    shown = null;
    root.querySelector(".help").setAttribute("aria-expanded", "false");
    if (opener) opener.focus();
    opener = null;
  }

  function helpForm() {
    var box = h("textarea", { id: "kz-describe", "aria-describedby": "kz-hint" });
    show("Tell us what went wrong", [
      h("p", { id: "kz-hint", class: "meta", text: "Describe what you were doing and what you expected. We read every message." }),
      h("label", { for: "kz-describe", text: "What went wrong?" }), box,
      h("div", { class: "row" }, [h("button", { class: "primary", type: "button", text: "Send", onclick: function () {
        var text = box.value.trim();
        if (!text) { box.focus(); return; }
        report({ type: "USER_REPORTED", message: "Help button: " + cap(text, 120), description: text }, { text: "Thanks, we got your message and are looking into it." });
      } })]),
    ], true);
  }

  var TITLES = { detected: "We noticed a problem", diagnosing: "Looking into it", root_cause_found: "Found the cause", needs_input: "A quick question",
    fixing: "Fixing it", verifying: "Checking the fix", deployed: "Fixed", mitigated: "Fixed", resolved: "Fixed", escalated: "Passed to our team", aborted: "Still on it" };
  var NOTICED = { SILENT_FAILURE: "That click didn\u2019t do anything.", AUTH_ISSUE: "Your sign-in ran into a problem.", BILLING_ISSUE: "Something is off with your billing.",
    UX_CONFUSION: "That didn\u2019t respond the way it should.", USER_REPORTED: "Thanks, we got your message.", ERROR: "Something went wrong on this page." };

  function progress(step, steps) {
    var list = h("ol", { "aria-hidden": "true" });
    for (var i = 1; i <= steps; i++) list.appendChild(h("li", { class: i < step ? "done" : i === step ? "now" : "" }));
    return list;
  }

  function popupDetected(issue, text) {
    current = issue;
    statusRender(issue, { stage: "detected", step: 1, steps: 6, message: text || (NOTICED[issue.type] || NOTICED.ERROR) + " We noticed, and we\u2019re on it." });
  }

  function statusShow(status) {
    if (!status || typeof status.issue_id !== "string") return;
    var issue = issues[status.issue_id];
    if (!issue) {
      // Another tab's issue, or one whose ingest answer is still on its way: keep the latest.
      pendingStatus[status.issue_id] = status;
      if (!status.needs_input && !status.reproduce) return;
      issue = issues[status.issue_id] = { id: status.issue_id };
    }
    if (issue.quiet && !status.needs_input && !status.reproduce) return;
    delete pendingStatus[status.issue_id];
    current = issue;
    if (status.final) {
      // Fixed: the same problem may now be reported again if it comes back.
      for (var s in sent) if (sent[s].issue === issue.id) delete sent[s];
    }
    // The stage already told, told again (the page's own notice, then the server's words for
    // it): the open panel takes the new words, but a panel the user hid, or that shows something
    // else since, is left as it is.
    var again = !!issue.last && issue.last.stage === status.stage && !status.final && !status.needs_input && !status.reproduce && !issue.asking;
    if (again && shown !== issue) { issue.last = status; return; }
    statusRender(issue, status, again);
  }

  // `quietly`: the panel already shows this stage of the issue; it takes the new words without
  // telling a screen reader (or the page's kaizen:status listeners) again.
  function statusRender(issue, status, quietly) {
    // A question stays up until the user answers it: later progress must not wipe what they type.
    if (status.final) issue.asking = null;
    else if (issue.asking) status = Object.assign({}, status, issue.asking);
    if (status.needs_input) issue.asking = { needs_input: true, question: status.question };
    else if (status.reproduce) issue.asking = { reproduce: true };
    issue.last = status;
    var step = Math.max(1, Math.min(+status.step || 1, 6)), steps = +status.steps || 6;
    var eta = status.eta_seconds > 0 ? (status.eta_seconds < 90 ? "About " + status.eta_seconds + " s left" : "About " + Math.round(status.eta_seconds / 60) + " min left") : "";
    var meta = h("p", { class: "meta" }, ["Step " + step + " of " + steps + ": " + (status.final ? "Fixed" : STEPS[step - 1] || status.stage) + (eta && !status.final ? " \u00b7 " + eta : "")]);
    var row = h("div", { class: "row" });
    var extra = null;
    if (status.final) {
      if (issue.target) row.appendChild(h("button", { class: "primary", type: "button", text: "Try again", onclick: function () { close(); dispatch({ type: "retry", target: issue.target }); } }));
    } else if (status.needs_input) {
      extra = answerForm(issue, status.question);
    } else if (status.reproduce) {
      extra = consentForm(issue);
    }
    row.appendChild(h("button", { type: "button", text: status.final ? "Done" : "Hide", onclick: close }));
    show(TITLES[status.stage] || "Working on it", [
      progress(status.final ? steps + 1 : step, steps), meta, markdown(status.message), extra, row,
    ], false, !quietly);
    panel.setAttribute("data-stage", status.stage);
    panel.setAttribute("data-issue", issue.id || "");
    shown = issue;
    if (quietly) return;
    try { window.dispatchEvent(new CustomEvent("kaizen:status", { detail: { issue_id: issue.id || null, stage: status.stage, step: step, final: !!status.final } })); } catch (e) { /* old browsers */ }
  }

  function answerForm(issue, question) {
    var box = h("textarea", { id: "kz-answer" });
    return h("div", null, [
      h("label", { for: "kz-answer", text: question || "Can you tell us a bit more?" }), box,
      h("div", { class: "row" }, [h("button", { class: "primary", type: "button", text: "Send answer", onclick: function () {
        var text = box.value.trim();
        if (!text || !session) return;
        issue.asking = null;
        authed().then(function (s) {
          return api("/api/v1/sessions/" + encodeURIComponent(s.id) + "/reply", { token: s.token, issue_id: issue.id, text: cap(scrub(text), 4000) });
        }).then(function (r) { return r.status === 202; }, function () { return false; }).then(function (ok) {
          if (!ok) issue.asking = { needs_input: true, question: question };
          show("Thanks", [markdown(ok ? "That helps. We\u2019ll keep you posted here." : "We couldn\u2019t send that. Please try again in a moment.")], true);
        });
      } })]),
    ]);
  }

  // Assisted reproduction: recording starts only after the user ticks the box and clicks.
  function consentForm(issue) {
    var box = h("input", { type: "checkbox", id: "kz-consent", onchange: function () { issue.consent = box.checked; } });
    box.checked = !!issue.consent;
    var note = h("p", { class: "note" });
    var form = h("div", null, [
      h("label", { for: "kz-consent" }, [box, " Record this attempt so we can see what happens (typed text stays hidden, only this page)"]), note,
      h("div", { class: "row" }, [h("button", { class: "primary", type: "button", text: "Try again", onclick: function () {
        issue.asking = null;
        (box.checked ? recordRetry(issue) : Promise.resolve(dispatch({ type: "retry", target: issue.target }))).then(function () {
          note.textContent = box.checked ? "Thanks, your recording was sent." : "Thanks, we\u2019re watching for it.";
        }, function (e) { note.textContent = e.message; });
      } })]),
    ]);
    // Whether recording is possible, without loading the recorder before the user agrees.
    (window.rrweb ? Promise.resolve(true) : nativeFetch(RRWEB, { method: "HEAD" }).then(function (r) { return r.ok; }, function () { return false; })).then(function (ok) {
      if (ok) return;
      box.disabled = true;
      note.textContent = "Recording is off on this site. You can still try again.";
    });
    return form;
  }

  var rrwebPromise = null;
  function rrwebLoad() {
    if (window.rrweb && window.rrweb.record) return Promise.resolve(window.rrweb);
    rrwebPromise = rrwebPromise || new Promise(function (ok, fail) {
      var tag = h("script", { src: RRWEB, async: true });
      tag.onload = function () { window.rrweb && window.rrweb.record ? ok(window.rrweb) : fail(new Error("Recording is off on this site.")); };
      tag.onerror = function () { rrwebPromise = null; fail(new Error("Recording is off on this site.")); };
      document.head.appendChild(tag);
    });
    return rrwebPromise;
  }

  function recordRetry(issue) {
    return rrwebLoad().then(function (rrweb) {
      var events = [];
      var stop = rrweb.record({ emit: function (e) { events.push(e); }, maskAllInputs: true, blockSelector: "#kaizen-overlay", maskTextSelector: "[type=password]" });
      dispatch({ type: "retry", target: issue.target });
      return new Promise(function (done) { setTimeout(done, 6000); }).then(function () {
        stop();
        return authed().then(function (s) {
          var body = { token: s && s.token, issue_id: issue.id, events: events };
          if (!s || JSON.stringify(body).length > 4.5e6) throw new Error("The recording was too large to send.");
          return api("/api/v1/sessions/" + encodeURIComponent(s.id) + "/recording", body);
        });
      });
    });
  }

  function messageShow(message) {
    if (!message || typeof message.message !== "string") return;
    show(message.from === "owner" ? "A message from the team" : "Message", [markdown(message.message)], false);
  }

  // ---------------------------------------------------------------- public API
  window.Kaizen = {
    version: "1",
    identify: function (who) {
      who = who || {};
      user = { id: who.id == null ? null : cap(who.id, 200), name: who.name == null ? null : cap(who.name, 200), email: who.email == null ? null : cap(who.email, 254) };
      store("user", user);
      sessionOpen().then(function (s) { if (s) tokenRefresh(true).catch(function () { /* attached on the next refresh */ }); });
    },
    report: function (problem) { return report(problem || {}); },
    open: function () { opener = null; helpForm(); },
  };
  window.KAIZEN_DISPATCH = function (cmd) { return dispatch(cmd, false); };

  function start() {
    overlay();
    sessionOpen().then(flush);
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();

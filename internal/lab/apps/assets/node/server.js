'use strict';
// Lab HTTP app for rampart's application-layer DoS tests: one process, one
// event loop, plain `http`. Its dependencies are pinned on purpose to
// versions with published ReDoS CVEs (see package.json); each vulnerable
// library sits behind its own route, which also serves ordinary inputs fast.
// Never deploy this.
//
// Usage: node server.js HOST PORT   (prints "listening HOST:PORT" when ready)

const http = require('http');
const crypto = require('crypto');

const UAParser = require('ua-parser-js'); // 0.7.21: CVE-2020-7733
const ms = require('ms'); // 0.7.0: CVE-2015-8315
const validator = require('validator'); // 13.6.0: CVE-2021-3765
const marked = require('marked'); // 4.0.9: CVE-2022-21680
const moment = require('moment'); // 2.29.1: CVE-2022-31129
const { XMLParser } = require('fast-xml-parser'); // 4.2.3: CVE-2023-34104

moment.suppressDeprecationWarnings = true;

const maxBody = 1 << 20;
const maxText = 200000;

// Deterministic filler text for /text: lorem-like words, 200 kB.
const words = ('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod ' +
  'tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis ' +
  'nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat').split(' ');
const filler = (() => {
  const parts = [];
  let n = 0;
  for (let i = 0; n < maxText; i++) {
    const w = words[(i * 7919) % words.length] + ((i % 13) === 12 ? '.\n' : ' ');
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('').slice(0, maxText));
})();

const index = Buffer.from(`<!doctype html>
<html><head><title>rampart lab shop</title></head>
<body><h1>rampart lab shop</h1>
<p>A small application used to test application-layer DoS detection.</p>
<ul>
<li><a href="/text?size=2000">/text?size=N</a> text of N bytes</li>
<li><a href="/api/items?n=20">/api/items?n=N</a> JSON list</li>
<li><a href="/compute?n=200">/compute?n=N</a> N hash rounds</li>
<li>POST /echo</li>
<li><a href="/ua">/ua</a> parse your User-Agent (ua-parser-js)</li>
<li><a href="/duration?d=2h">/duration?d=</a> parse a duration (ms)</li>
<li>POST /signup name=&amp;email= (validator)</li>
<li>POST /render markdown (marked)</li>
<li><a href="/date?d=2024-03-01T12:00:00Z">/date?d=</a> parse a date (moment)</li>
<li>POST /xml (fast-xml-parser)</li>
</ul></body></html>
`);

function send(res, status, type, body) {
  if (typeof body === 'string') body = Buffer.from(body);
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': body.length });
  res.end(body);
}

function json(res, status, v) {
  send(res, status, 'application/json', JSON.stringify(v) + '\n');
}

function intParam(q, name, def, min, max) {
  const v = parseInt(q.get(name), 10);
  if (Number.isNaN(v)) return def;
  return Math.min(Math.max(v, min), max);
}

// readBody collects the request body (at most maxBody bytes) as a string.
function readBody(req, cb) {
  const chunks = [];
  let n = 0;
  let over = false;
  req.on('data', (c) => {
    n += c.length;
    if (n > maxBody) over = true;
    else chunks.push(c);
  });
  req.on('end', () => cb(over ? null : Buffer.concat(chunks).toString('utf8')));
  req.on('error', () => cb(null));
}

// input is the query parameter name, else the raw body of a POST.
function input(req, q, name, cb) {
  if (req.method === 'POST') return readBody(req, cb);
  cb(q.get(name) || '');
}

const routes = {
  '/': (req, res) => send(res, 200, 'text/html; charset=utf-8', index),
  '/healthz': (req, res) => send(res, 200, 'text/plain', 'ok\n'),

  // Static-ish text of ?size= bytes (100 B - 200 kB).
  '/text': (req, res, q) => {
    const size = intParam(q, 'size', 1000, 100, maxText);
    send(res, 200, 'text/plain; charset=utf-8', filler.subarray(0, size));
  },

  // A JSON list of ?n= items (at most 1000).
  '/api/items': (req, res, q) => {
    const n = intParam(q, 'n', 10, 0, 1000);
    const items = [];
    for (let i = 0; i < n; i++) {
      items.push({ id: i + 1, name: `item-${i + 1}`, price: ((i * 37) % 1000) / 10, tags: [words[i % words.length]] });
    }
    json(res, 200, { count: n, items });
  },

  // ?n= rounds of SHA-256 (at most 20000): a small, bounded compute route.
  '/compute': (req, res, q) => {
    const n = intParam(q, 'n', 100, 1, 20000);
    let h = Buffer.from('rampart');
    for (let i = 0; i < n; i++) h = crypto.createHash('sha256').update(h).digest();
    json(res, 200, { rounds: n, digest: h.toString('hex') });
  },

  '/echo': (req, res) => {
    if (req.method !== 'POST') return send(res, 405, 'text/plain', 'POST only\n');
    readBody(req, (body) => {
      if (body === null) return send(res, 413, 'text/plain', 'too large\n');
      send(res, 200, req.headers['content-type'] || 'application/octet-stream', body);
    });
  },

  // ua-parser-js: the User-Agent header, or ?ua=.
  '/ua': (req, res, q) => {
    const ua = q.get('ua') || req.headers['user-agent'] || '';
    json(res, 200, new UAParser(ua).getResult());
  },

  // ms: ?d= or the POST body, e.g. "2h", "1.5d", "300ms".
  '/duration': (req, res, q) => input(req, q, 'd', (d) => {
    if (d === null) return send(res, 413, 'text/plain', 'too large\n');
    const v = ms(d.trim());
    json(res, v === undefined ? 400 : 200, { input: d.slice(0, 64), ms: v === undefined ? null : v });
  }),

  // validator: a sign-up form (urlencoded or JSON) with name and email.
  '/signup': (req, res) => {
    if (req.method !== 'POST') return send(res, 405, 'text/plain', 'POST only\n');
    readBody(req, (body) => {
      if (body === null) return send(res, 413, 'text/plain', 'too large\n');
      let f;
      try {
        f = (req.headers['content-type'] || '').startsWith('application/json')
          ? JSON.parse(body) : Object.fromEntries(new URLSearchParams(body));
      } catch (e) {
        return json(res, 400, { error: 'bad form' });
      }
      const name = validator.trim(String(f.name || ''));
      const email = validator.trim(String(f.email || ''));
      const errors = [];
      if (!validator.isLength(name, { min: 1, max: 100 })) errors.push('name');
      if (!validator.isEmail(email)) errors.push('email');
      json(res, errors.length ? 400 : 200, { ok: !errors.length, errors, name: name.slice(0, 100) });
    });
  },

  // marked: markdown in the POST body, HTML out.
  '/render': (req, res) => {
    if (req.method !== 'POST') return send(res, 405, 'text/plain', 'POST only\n');
    readBody(req, (body) => {
      if (body === null) return send(res, 413, 'text/plain', 'too large\n');
      send(res, 200, 'text/html; charset=utf-8', marked.parse(body));
    });
  },

  // moment: ?d= or the POST body, ISO 8601 or RFC 2822.
  '/date': (req, res, q) => input(req, q, 'd', (d) => {
    if (d === null) return send(res, 413, 'text/plain', 'too large\n');
    const m = moment(d);
    if (!m.isValid()) return json(res, 400, { error: 'invalid date' });
    json(res, 200, { iso: m.toISOString(), unix: m.unix(), weekday: m.format('dddd') });
  }),

  // fast-xml-parser: an XML document in the POST body, JSON out.
  '/xml': (req, res) => {
    if (req.method !== 'POST') return send(res, 405, 'text/plain', 'POST only\n');
    readBody(req, (body) => {
      if (body === null) return send(res, 413, 'text/plain', 'too large\n');
      let doc;
      try {
        doc = new XMLParser({ ignoreAttributes: false }).parse(body);
      } catch (e) {
        return json(res, 400, { error: String(e.message || e).slice(0, 200) });
      }
      json(res, 200, doc);
    });
  },
};

const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://lab');
  const route = routes[u.pathname];
  if (!route) return send(res, 404, 'text/plain', 'not found\n');
  try {
    route(req, res, u.searchParams);
  } catch (e) {
    if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
  }
});
server.keepAliveTimeout = 30000;

const [host = '127.0.0.1', port = '8080'] = process.argv.slice(2);
server.listen(Number(port), host, () => {
  console.log(`listening ${host}:${server.address().port}`);
});
// No SIGTERM handler: a handler would run on the event loop, which a
// crafted request may keep busy; the default action ends the process now.

// The PouchDB side of scripts/bench-sync: a local PouchDB (LevelDB on disk) syncing with
// pouchdb-server (LevelDB on disk) through a counting loopback TCP proxy, over the same
// documents as the Cahier run. Prints a Markdown table like `cahier bench-sync`.
//
// node scripts/bench-sync-pouchdb.mjs MODULES_DIR DOCS_JSON WORK_DIR EDITS NOOP_RUNS

import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import os from 'node:os';

const [modules, docsFile, work, editsArg, noopArg] = process.argv.slice(2);
if (!modules || !docsFile || !work) {
  console.error('usage: bench-sync-pouchdb.mjs MODULES_DIR DOCS_JSON WORK_DIR [EDITS] [NOOP_RUNS]');
  process.exit(2);
}
const edits = Number(editsArg ?? 500);
const noopRuns = Number(noopArg ?? 20);
const require = createRequire(path.join(modules, 'package.json'));
const PouchDB = require('pouchdb');

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const log = (...a) => console.error('bench-sync (pouchdb):', ...a);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// Counts bytes both ways and HTTP/1.1 request lines, as the Cahier side's proxy does.
const counters = { up: 0, down: 0, requests: 0 };
const LINE_END = Buffer.from(' HTTP/1.1\r\n');
function countRequests(tail, chunk) {
  const window = Buffer.concat([tail, chunk]);
  let n = 0;
  let i = window.indexOf(LINE_END);
  while (i !== -1) {
    n += 1;
    i = window.indexOf(LINE_END, i + 1);
  }
  return [n, window.subarray(Math.max(0, window.length - (LINE_END.length - 1)))];
}
function proxy(upstreamPort) {
  return new Promise((resolve) => {
    const server = net.createServer((client) => {
      client.setNoDelay(true);
      const upstream = net.connect(upstreamPort, '127.0.0.1');
      upstream.setNoDelay(true);
      let tail = Buffer.alloc(0);
      client.on('data', (chunk) => {
        counters.up += chunk.length;
        const [n, t] = countRequests(tail, chunk);
        counters.requests += n;
        tail = t;
        upstream.write(chunk);
      });
      upstream.on('data', (chunk) => {
        counters.down += chunk.length;
        client.write(chunk);
      });
      client.on('end', () => upstream.end());
      upstream.on('end', () => client.end());
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

async function waitFor(url) {
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not yet up
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

function sync(local, remote) {
  return new Promise((resolve, reject) => {
    local.sync(remote).on('complete', resolve).on('error', reject);
  });
}

const edited = (body, marker) => {
  const i = body.indexOf('\n');
  return i === -1 ? `${body} ${marker}` : `${body.slice(0, i)} ${marker}${body.slice(i)}`;
};

const steps = [];
async function timed(name, local, remote) {
  log(name);
  const before = { ...counters };
  const started = process.hrtime.bigint();
  const info = await sync(local, remote);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const step = {
    name,
    ms,
    up: counters.up - before.up,
    down: counters.down - before.down,
    requests: counters.requests - before.requests,
    pushed: info.push?.docs_written ?? 0,
    pulled: info.pull?.docs_written ?? 0,
  };
  return step;
}

const loadBefore = loadavg();
const serverPort = await freePort();
const serverBin = path.join(modules, '.bin', 'pouchdb-server');
mkdirSync(path.join(work, 'server'), { recursive: true });
// pouchdb-server keeps config.json and log.txt in its working directory: the temp dir.
const child = spawn(serverBin, ['--port', String(serverPort), '--dir', path.join(work, 'server'), '--no-stdout-logs'], {
  cwd: work,
  stdio: ['ignore', 'ignore', 'inherit'],
});
const stop = () => {
  if (child.exitCode === null) child.kill('SIGTERM');
};
process.on('exit', stop);
try {
  await waitFor(`http://127.0.0.1:${serverPort}/`);
  const direct = new PouchDB(`http://127.0.0.1:${serverPort}/lab`);
  const docs = JSON.parse(readFileSync(docsFile, 'utf8'));
  // sqlite3 -json gives the tag list as JSON text.
  for (const d of docs) if (typeof d.tags === 'string') d.tags = JSON.parse(d.tags);
  log(`loading ${docs.length} documents into pouchdb-server`);
  for (let i = 0; i < docs.length; i += 500) {
    const result = await direct.bulkDocs(docs.slice(i, i + 500));
    const failed = result.filter((r) => r.error);
    if (failed.length) throw new Error(`loading: ${JSON.stringify(failed[0])}`);
  }
  const proxyPort = await proxy(serverPort);
  const remote = new PouchDB(`http://127.0.0.1:${proxyPort}/lab`);
  const local = new PouchDB(path.join(work, 'local'));

  const first = await timed('initial copy', local, remote);
  if (first.pulled !== docs.length) throw new Error(`initial copy pulled ${first.pulled}`);
  steps.push(first);

  const ids = docs.map((d) => d._id);
  for (const [i, id] of ids.slice(0, edits).entries()) {
    const doc = await local.get(id);
    doc.body = edited(doc.body, `field edit ${i}`);
    await local.put(doc);
  }
  const pushed = await timed(`${edits} edits made on the replica`, local, remote);
  if (pushed.pushed !== edits) throw new Error(`pushed ${pushed.pushed}`);
  steps.push(pushed);

  log(`editing ${edits} documents on the server`);
  for (const [i, id] of ids.slice(edits, 2 * edits).entries()) {
    const doc = await direct.get(id);
    doc.body = edited(doc.body, `lab edit ${i}`);
    await direct.put(doc);
  }
  const pulled = await timed(`${edits} edits made at the lab`, local, remote);
  if (pulled.pulled !== edits) throw new Error(`pulled ${pulled.pulled}`);
  steps.push(pulled);

  const noop = [];
  for (let i = 0; i < Math.max(1, noopRuns); i++) {
    const step = await timed('nothing to do', local, remote);
    if (step.pushed + step.pulled > 0) throw new Error('a sync with nothing to do moved documents');
    noop.push(step);
  }
  noop.sort((a, b) => a.ms - b.ms);
  steps.push({ ...noop[Math.floor(noop.length / 2)], name: `nothing to do (median of ${noop.length})` });

  const fmt = (ms) => (ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`);
  console.log(
    `PouchDB ${require('pouchdb/package.json').version} ↔ pouchdb-server ${require('pouchdb-server/package.json').version} ` +
      `(LevelDB both sides, default batch_size), ${docs.length} documents, ${edits} edits each way; ` +
      `load average ${loadBefore} before, ${loadavg()} after\n`,
  );
  console.log('| step | time | bytes up | bytes down | requests |');
  console.log('|---|---:|---:|---:|---:|');
  for (const s of steps) console.log(`| ${s.name} | ${fmt(s.ms)} | ${s.up} | ${s.down} | ${s.requests} |`);
  await local.close();
} finally {
  stop();
}
process.exit(0);

// provault explorer: search, a graph laid out by ELK (layered), node details with signers and
// inclusion proofs checked in the browser, impact lists.  Every string that came from an event is
// written with textContent (never as markup); the server's Content-Security-Policy allows only
// these scripts.
"use strict";

const $ = (id) => document.getElementById(id);
const NODE_TYPES = ["entity", "activity", "agent"];
const HOUSE = "-1 -0.1 0 -1 1 -0.1 1 1 -1 1";

const state = {
  cy: null,
  graph: null, // the last /api/graph answer, merged with expansions
  expanded: new Set(),
  params: null,
  busy: 0,
};
window.provaultExplorer = state; // for the console

// Tests and scripts wait on DOM attributes rather than evaluated code (the CSP forbids eval):
// <body data-ready="1" data-busy="N">, <div id="graph" data-nodes="N" data-edges="N">.
function busy(delta) {
  state.busy += delta;
  document.body.dataset.busy = String(state.busy);
}

// How long the last answer took in this browser (bench/explorer.py reads these): data-fetch-ms (the API),
// data-layout-ms (ELK and drawing), data-open-ms (both), data-expand-ms, data-details-ms.
function timed(ms) {
  for (const [k, v] of Object.entries(ms)) $("graph").dataset[k] = v.toFixed(1);
}

function drawn() {
  moved();
  const g = $("graph");
  g.dataset.nodes = String(state.cy.nodes().length);
  g.dataset.edges = String(state.cy.edges().length);
}

// --- small DOM helpers -------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// Messages above the graph move it down the page: Cytoscape caches where its container is, so tell it.
function moved() {
  if (state.cy) state.cy.resize();
}

function message(kind, text) {
  $("messages").append(el("p", { class: kind }, text));
  moved();
}

function short(text) {
  return String(text ?? "").replace(/([0-9a-f]{12})[0-9a-f]{28,}/g, "$1…");
}

// --- the API ---------------------------------------------------------------------------------

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) query.set(k, v);
  const response = await fetch(`/api/${path}?${query}`, { credentials: "same-origin" });
  if (response.status === 401) {
    location.assign("/login?error=expired");
    throw new Error("signed out");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    const err = new Error(body.message || `the server answered ${response.status}`);
    err.status = response.status;
    err.hint = body.hint || "";
    throw err;
  }
  return body;
}

function failed(e) {
  if (e.message === "signed out") return;
  message("error", e.message);
  if (e.hint) message("hint", e.hint);
}

// --- the page's state in its URL ----------------------------------------------------------

function readControls() {
  return {
    id: $("start").value.trim(),
    direction: $("direction").value,
    depth: $("depth").value,
    as_of: $("as-of").value.trim(),
    max_nodes: $("max-nodes").value.trim(),
  };
}

function writeControls(p) {
  $("start").value = p.id || "";
  $("direction").value = p.direction || "upstream";
  $("depth").value = p.depth || "3";
  $("as-of").value = p.as_of || "";
  $("max-nodes").value = p.max_nodes || "";
}

function fromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  return {
    id: h.get("id") || "",
    direction: h.get("direction") || "upstream",
    depth: h.get("depth") || "3",
    as_of: h.get("as_of") || "",
    max_nodes: h.get("max_nodes") || "",
  };
}

function toHash(p) {
  const h = new URLSearchParams();
  for (const [k, v] of Object.entries(p)) if (v) h.set(k, v);
  history.replaceState(null, "", `#${h}`);
}

// --- the graph -------------------------------------------------------------------------------

function nodeClass(n) {
  return NODE_TYPES.includes(n.type) ? n.type : "other";
}

function displayLabel(n) {
  const base = n.label || n.id;
  return short(base).slice(0, 48) + (n.kind ? `\n${short(n.kind)}` : "");
}

function nodeElement(n, start) {
  return { group: "nodes", data: { id: n.id, label: displayLabel(n) }, classes: nodeClass(n) + (n.id === start ? " start" : "") };
}

function edgeKey(e) {
  return `${e.from}|${e.relation}|${e.to}|${e.seq}`;
}

function edgeElements(edges, ids) {
  return edges
    .filter((e) => ids.has(e.from) && ids.has(e.to))
    .map((e) => ({ group: "edges", data: { id: edgeKey(e), source: e.from, target: e.to, label: short(e.relation.replace(/^prov:/, "")) } }));
}

function elementsOf(graph) {
  const ids = new Set(graph.nodes.map((n) => n.id));
  return [...graph.nodes.map((n) => nodeElement(n, graph.start)), ...edgeElements(graph.edges, ids)];
}

function style() {
  return [
    { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "text-valign": "center", "text-halign": "center", "font-size": 9, "min-zoomed-font-size": 3, width: 150, height: 44, "border-width": 1, "border-color": "#808080", "text-max-width": 140 } },
    { selector: "node.entity", style: { shape: "ellipse", "background-color": "#fffc87" } },
    { selector: "node.activity", style: { shape: "rectangle", "background-color": "#9fb1fc", "border-color": "#0000ff" } },
    { selector: "node.agent", style: { shape: "polygon", "shape-polygon-points": HOUSE, "background-color": "#fed37f" } },
    { selector: "node.other", style: { shape: "octagon", "background-color": "#e8e8e8", "border-style": "dashed" } },
    { selector: "node.start", style: { "border-width": 4, "border-color": "#1d2330" } },
    { selector: "node.expanded", style: { "border-style": "double", "border-width": 4 } },
    { selector: "node:selected", style: { "overlay-color": "#1d2330", "overlay-opacity": 0.15 } },
    { selector: "edge", style: { width: 1.2, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#7a8190", "target-arrow-color": "#7a8190", label: "data(label)", "font-size": 8, "min-zoomed-font-size": 4, "text-rotation": "autorotate", "text-background-color": "#fff", "text-background-opacity": 0.8 } },
  ];
}

// ELK (the Eclipse Layout Kernel, elkjs) lays the graph out, layered, in a Web Worker: the page keeps
// panning, zooming and answering clicks while a large graph is being placed.  This only hands ELK the
// nodes' sizes and the edges, and puts each node where ELK says (ELK gives top-left corners).
const ELK_OPTIONS = {
  "elk.algorithm": "layered",
  "elk.direction": "LEFT",
  "elk.layered.spacing.nodeNodeBetweenLayers": "60",
  "elk.spacing.nodeNode": "20",
  "elk.layered.thoroughness": "4",
  "elk.layered.nodePlacement.strategy": "SIMPLE",
};
let elk = null;
let layoutTurn = 0;

async function runLayout() {
  elk = elk || new ELK({ workerUrl: "/static/vendor/elk-worker.min.js" });
  const turn = ++layoutTurn;
  const nodes = state.cy.nodes();
  const graph = {
    id: "root",
    layoutOptions: { ...ELK_OPTIONS, "elk.aspectRatio": String(state.cy.width() / Math.max(state.cy.height(), 1)) },
    children: nodes.map((n) => ({ id: n.id(), width: n.outerWidth(), height: n.outerHeight() })),
    edges: state.cy.edges().map((e) => ({ id: e.id(), sources: [e.source().id()], targets: [e.target().id()] })),
  };
  const placed = await elk.layout(graph);
  if (turn !== layoutTurn) return; // a newer graph replaced this one while it was being laid out
  const at = new Map(placed.children.map((c) => [c.id, { x: c.x + c.width / 2, y: c.y + c.height / 2 }]));
  state.cy.batch(() => nodes.forEach((n) => n.position(at.get(n.id()))));
  state.cy.fit(undefined, 20);
}

function summary() {
  const g = state.graph;
  const types = {};
  for (const n of g.nodes) types[nodeClass(n)] = (types[nodeClass(n)] || 0) + 1;
  const parts = Object.entries(types).map(([t, c]) => `${c} ${t}`);
  $("graph-summary").textContent = `${g.nodes.length} nodes (${parts.join(", ")}), ${g.edges.length} edges, as of seq ${g.as_of_seq}`;
}

async function openGraph(p) {
  clear($("messages"));
  $("impact").hidden = true;
  if (!p.id) {
    message("error", "Enter a node id, or pick one from a search.");
    return;
  }
  toHash(p);
  state.params = p;
  busy(1);
  const t0 = performance.now();
  try {
    const g = await api("graph", p);
    const t1 = performance.now();
    state.graph = g;
    state.expanded = new Set([g.start]);
    for (const text of g.limits || []) message("limit", text);
    state.cy.elements().remove();
    state.cy.add(elementsOf(g));
    await runLayout();
    drawn();
    timed({ fetchMs: t1 - t0, layoutMs: performance.now() - t1, openMs: performance.now() - t0 });
    summary();
    const bundle = $("bundle-link");
    bundle.href = `/api/bundle?${new URLSearchParams({ id: p.id, direction: p.direction, depth: p.depth, ...(p.as_of ? { as_of: p.as_of } : {}) })}`;
    bundle.hidden = false;
    const start = state.cy.getElementById(g.start);
    if (start.nonempty()) showDetails(g.start);
  } catch (e) {
    state.cy.elements().remove();
    drawn();
    $("graph-summary").textContent = "";
    failed(e);
  } finally {
    busy(-1);
  }
}

async function expand(id) {
  if (state.expanded.has(id) || !state.params) return;
  state.expanded.add(id);
  busy(1);
  const t0 = performance.now();
  try {
    const g = await api("graph", { ...state.params, id, depth: 1 });
    const known = new Set(state.graph.nodes.map((n) => n.id));
    const seen = new Set(state.graph.edges.map(edgeKey));
    const newNodes = g.nodes.filter((n) => !known.has(n.id));
    const newEdges = g.edges.filter((e) => !seen.has(edgeKey(e)));
    state.graph.nodes.push(...newNodes);
    state.graph.edges.push(...newEdges);
    Object.assign(state.graph.signers, g.signers);
    Object.assign(state.graph.keys, g.keys);
    state.cy.getElementById(id).addClass("expanded");
    if (newNodes.length || newEdges.length) {
      const ids = new Set(state.graph.nodes.map((n) => n.id));
      state.cy.add([...newNodes.map((n) => nodeElement(n, state.graph.start)), ...edgeElements(newEdges, ids)]);
      await runLayout();
    }
    drawn();
    timed({ expandMs: performance.now() - t0 });
    summary();
    for (const text of g.limits || []) message("limit", text);
  } catch (e) {
    failed(e);
  } finally {
    busy(-1);
  }
}

// --- details, signers and proofs ---------------------------------------------------------------

function signerOf(seq) {
  const keyid = state.graph.signers[String(seq)];
  if (!keyid) return null;
  const key = state.graph.keys[keyid] || {};
  return { keyid, name: key.name, role: key.role, root: key.root_key };
}

function value(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function showDetails(id) {
  const n = state.graph.nodes.find((x) => x.id === id);
  const box = clear($("details"));
  if (!n) return;
  box.append(el("h2", {}, n.label || n.id));
  const facts = el("table", { id: "node-facts" });
  for (const [k, v] of [["id", n.id], ["type", n.type || "untyped"], ["kind", n.kind || ""], ["introduced at seq", n.first_seq]]) {
    facts.append(el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, String(v))));
  }
  box.append(facts);
  const attrs = Object.entries(n.attributes || {});
  if (attrs.length) {
    box.append(el("h2", {}, "Attributes"));
    const t = el("table", { id: "node-attributes" });
    for (const [k, v] of attrs) t.append(el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, value(v))));
    box.append(t);
  }
  const seqs = n.seqs && n.seqs.length ? n.seqs : [n.first_seq];
  box.append(el("h2", {}, "Ledger entries behind it"));
  const list = el("ol", { id: "node-entries" });
  for (const seq of seqs) {
    const s = signerOf(seq);
    const who = s ? `${s.name || "unnamed key"} (${s.role}${s.root ? ", admin root" : ""}) ${s.keyid.slice(0, 12)}…` : "signer not in this answer";
    const out = el("div", { class: "proof" });
    list.append(
      el("li", {}, el("span", { class: "mono" }, `seq ${seq}`), " signed by ", el("span", {}, who), " ",
        el("button", { type: "button", class: "check", "data-seq": String(seq), onclick: () => checkProof(seq, out) }, "Check inclusion proof"),
        out),
    );
  }
  box.append(list);
}

const enc = new TextEncoder();

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function unb64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// RFC 9162 section 2.1.3.2: the root an inclusion proof leads to.
async function rootFromProof(leaf, index, size, path) {
  if (index >= size) throw new Error(`leaf index ${index} is not below tree size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) throw new Error("the proof is longer than the tree allows");
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat([1], p, r));
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await sha256(concat([1], r, p));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("the proof is shorter than the tree needs");
  return r;
}

// C2SP signed note: the text, then a blank line, then lines "— <name> <base64(key hash[4] || signature)>".
async function checkNote(note, key) {
  const cut = note.lastIndexOf("\n\n");
  if (cut < 0) throw new Error("the checkpoint note has no signature block");
  const text = note.slice(0, cut + 1);
  const pub = unb64(key.public_key_b64);
  const keyHash = (await sha256(concat(enc.encode(key.name), [0x0a, 0x01], pub))).slice(0, 4);
  const lines = note.slice(cut + 2).split("\n").filter((l) => l);
  for (const line of lines) {
    const m = line.match(/^\u2014 (\S+) (\S+)$/);
    if (!m || m[1] !== key.name) continue;
    const raw = unb64(m[2]);
    if (hex(raw.slice(0, 4)) !== hex(keyHash)) continue;
    const k = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, k, raw.slice(4), enc.encode(text));
    return { ok, body: text.split("\n") };
  }
  throw new Error(`no signature by ${key.name} on the checkpoint`);
}

async function checkProof(seq, out) {
  clear(out).append(el("span", { class: "hint" }, "checking…"));
  try {
    const e = await api("entry", { seq });
    const steps = el("ol", { class: "steps" });
    const step = (ok, text) => steps.append(el("li", {}, el("span", { class: `verdict ${ok ? "ok" : "bad"}` }, ok ? "✓ " : "✗ "), text));
    const leaf = await sha256(concat([0], unb64(e.envelope_b64)));
    const leafOk = hex(leaf) === e.leaf_hash;
    step(leafOk, `leaf hash SHA-256(0x00 ‖ envelope) = ${hex(leaf).slice(0, 16)}… ${leafOk ? "matches" : "does NOT match"} the log's`);
    let verdict = leafOk;
    if (e.unproven) {
      step(false, `no signed checkpoint covers seq ${seq} yet (latest tree size ${e.checkpoint.tree_size}): retry shortly`);
      verdict = false;
    } else {
      const root = await rootFromProof(leaf, e.proof.leaf_index, e.proof.tree_size, e.proof.hashes.map(unhex));
      const rootOk = hex(root) === e.checkpoint.root_hash;
      step(rootOk, `inclusion proof (${e.proof.hashes.length} hashes) leads to root ${hex(root).slice(0, 16)}… at tree size ${e.proof.tree_size}`);
      const note = await checkNote(e.checkpoint.note, e.verifier_key);
      const bodyOk = note.body[1] === String(e.checkpoint.tree_size) && hex(unb64(note.body[2])) === hex(root);
      step(note.ok, `checkpoint signature by ${e.verifier_key.name} ${note.ok ? "verifies" : "does NOT verify"} (Ed25519)`);
      step(bodyOk, `the signed checkpoint states tree size ${note.body[1]} and that root`);
      verdict = verdict && rootOk && note.ok && bodyOk;
    }
    const result = el("div", { class: "proof-result", "data-verdict": verdict ? "verified" : "failed" });
    result.append(
      el("p", { class: `verdict ${verdict ? "ok" : "bad"}` }, verdict ? `seq ${seq} is in the signed log` : `seq ${seq} could not be verified`),
      steps,
      el("p", { class: "hint" }, `event ${e.event_id}, ${e.kind} from ${e.producer_id} #${e.producer_seq}, signed by key ${e.keyid.slice(0, 12)}…; `
        + `checkpoint key ${e.verifier_key.name}: compare it with the one you pinned (provault checkpoint --vkey).`),
    );
    clear(out).append(result);
  } catch (err) {
    clear(out).append(el("p", { class: "error" }, err.message));
  }
}

// --- search and impact -----------------------------------------------------------------------

async function runSearch(ev) {
  ev.preventDefault();
  const list = clear($("results"));
  busy(1);
  try {
    const r = await api("search", { q: $("search").value.trim(), type: $("search-type").value, as_of: $("as-of").value.trim() });
    if (!r.nodes.length) list.append(el("li", { class: "hint" }, "no match"));
    for (const n of r.nodes) {
      list.append(
        el("li", { "data-id": n.id, onclick: () => { $("start").value = n.id; openGraph(readControls()); } },
          el("span", { class: "label" }, n.label || short(n.id)), el("br"),
          el("span", { class: "kind" }, `${n.type || "untyped"} · ${n.kind || ""}`)),
      );
    }
    for (const text of r.limits) list.append(el("li", { class: "hint" }, text));
  } catch (e) {
    list.append(el("li", { class: "error" }, e.message));
  } finally {
    busy(-1);
  }
}

async function runImpact() {
  clear($("messages"));
  const p = readControls();
  const box = $("impact");
  busy(1);
  try {
    const r = await api("impact", { id: p.id, as_of: p.as_of });
    const body = clear($("impact-counts").tBodies[0]);
    for (const row of r.counts.by_kind) body.append(el("tr", {}, el("td", {}, row.type), el("td", {}, row.kind), el("td", {}, String(row.count))));
    body.append(el("tr", {}, el("td", {}, "prediction"), el("td", {}, "served predictions"), el("td", {}, String(r.counts.predictions))));
    const list = clear($("impact-nodes"));
    for (const n of r.nodes) {
      list.append(el("li", { "data-id": n.id }, el("span", {}, n.label || short(n.id)), " ", el("span", { class: "kind" }, `${n.kind || n.type || ""} · depth ${n.depth}`)));
    }
    for (const text of r.limits) message("limit", text);
    box.hidden = false;
    box.querySelector("h2").textContent = `Impact of ${short(r.start)}: ${r.counts.nodes} nodes, ${r.counts.predictions} predictions`;
  } catch (e) {
    failed(e);
  } finally {
    busy(-1);
  }
}

// --- start -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  // Labels too small to read are not drawn, and edges hide while panning or zooming: a 1,000-node graph
  // stays smooth (bench/explorer.py).
  state.cy = cytoscape({
    container: $("graph"),
    style: style(),
    wheelSensitivity: 0.3,
    minZoom: 0.05,
    maxZoom: 3,
    hideEdgesOnViewport: true,
  });
  state.cy.on("tap", "node", (ev) => {
    const id = ev.target.id();
    const t0 = performance.now();
    showDetails(id);
    timed({ detailsMs: performance.now() - t0 });
    expand(id);
  });
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); openGraph(readControls()); });
  $("impact-go").addEventListener("click", runImpact);
  $("search-form").addEventListener("submit", runSearch);
  try {
    const me = await api("whoami");
    $("whoami").textContent = `signed in as ${me.subject}`;
    $("max-nodes").max = String(me.max_nodes);
    $("max-nodes").placeholder = `≤ ${me.max_nodes}`;
  } catch (e) {
    failed(e);
  }
  const next = sessionStorage.getItem("provault.explorer.next");
  sessionStorage.removeItem("provault.explorer.next");
  if (next && location.hash.length <= 1) history.replaceState(null, "", next);
  const p = fromHash();
  writeControls(p);
  window.addEventListener("hashchange", () => {
    const q = fromHash();
    writeControls(q);
    if (q.id) openGraph(q);
  });
  document.body.dataset.ready = "1";
  if (p.id) await openGraph(p);
});

/*
 * twirt call board: live calls, transcripts, history, campaigns, charts.
 *
 * Everything the API or the event stream sends is untrusted: it reaches
 * the page through textContent, createTextNode and setAttribute only.
 * One EventSource lives as long as the page; the browser reconnects it by
 * itself and sends Last-Event-ID, so the server can replay what we missed.
 */

'use strict';

(() => {

const board = window.twirtBoard = {
    events: 0, lastEventId: null, opens: 0, resets: 0, errors: []
};

function caught(where, e) {
    board.errors.push(where + ': ' + (e && e.message ? e.message : String(e)));
    console.error('twirt board:', where, e);
}

window.addEventListener('error', (e) => caught('error', e.error || e.message));
window.addEventListener('unhandledrejection', (e) => caught('promise', e.reason));

function guard(where, fn) {
    return function (...args) {
        try {
            const r = fn.apply(this, args);
            if (r && typeof r.catch === 'function') {
                r.catch((e) => caught(where, e));
            }
            return r;
        } catch (e) {
            caught(where, e);
        }
    };
}


/* DOM helpers: text only */

const $ = (sel, root = document) => root.querySelector(sel);
const SVGNS = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const k of kids) {
        if (k == null || k === false) continue;
        e.append(typeof k === 'string' || typeof k === 'number'
                 ? document.createTextNode(String(k)) : k);
    }
    return e;
}

function sv(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    if (text != null) e.textContent = String(text);
    return e;
}

function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v == null || v === false) continue;
        if (k === 'text') e.textContent = String(v);
        else e.setAttribute(k, String(v));
    }
}

function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
}

function num(v) {
    if (v == null || v === '') return null;
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
}

function str(v) {
    return v == null ? '' : String(v);
}

function has(v) {
    return v != null && v !== '';
}


/* formatting */

const pad2 = (n) => String(n).padStart(2, '0');

function fmtDuration(ms) {
    const n = num(ms);
    if (n == null) return '—';
    const t = Math.max(0, Math.floor(n / 1000));
    const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t % 60;
    return h ? h + ':' + pad2(m) + ':' + pad2(s) : m + ':' + pad2(s);
}

function fmtCost(v) {
    const n = num(v);
    return n == null ? '—' : '$' + n.toFixed(4);
}

function parseTime(v) {
    if (!has(v)) return null;
    const n = num(v);
    const t = n != null ? (n < 1e11 ? n * 1000 : n) : Date.parse(String(v));
    return Number.isFinite(t) ? t : null;
}

function fmtTime(v) {
    const t = parseTime(v);
    if (t == null) return str(v) || '—';
    const d = new Date(t);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate())
           + ' ' + pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':'
           + pad2(d.getSeconds());
}

function fmtOffset(ms) {
    const n = num(ms);
    return n == null ? '' : fmtDuration(n);
}

const END_REASONS = {
    stop: 'the caller hung up',
    end_call: 'the agent ended the call',
    transfer: 'transferred',
    twilio_closed: 'Twilio closed the stream',
    twilio_lost: 'the stream was lost',
    idle_timeout: 'idle timeout',
    max_duration: 'maximum duration',
    hangup: 'hung up from the board or the API',
    machine: 'answering machine',
    idle: 'the caller stayed silent',
    response_failed: 'the model could not answer',
    session_expired: 'the Realtime session expired',
    upstream_connect: 'cannot reach the Realtime API',
    upstream_closed: 'the Realtime API closed the session',
    invalid_api_key: 'the API key was refused'
};


/* phone numbers: masked for display only; the raw value stays in JS */

const MASK_KEY = 'twirt.board.mask';
let masking = true;
try {
    masking = localStorage.getItem(MASK_KEY) !== '0';
} catch (e) { /* storage unavailable: keep the default */ }

const CC2 = new Set(('20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 '
    + '51 52 53 54 55 56 57 58 60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 '
    + '94 95 98').split(' '));

function maskNumber(s) {
    const m = /^\s*(\+?)([\d\s\-().]+)$/.exec(s);
    const d = m ? m[2].replace(/\D/g, '') : '';
    if (m && d.length >= 7) {
        const last = d.slice(-4);
        let cc = '', nat = d, want;
        if (m[1]) {
            const n = d[0] === '1' || d[0] === '7' ? 1
                      : CC2.has(d.slice(0, 2)) ? 2 : 3;
            cc = d.slice(0, n);
            nat = d.slice(n);
            want = cc === '81' && /^[36]/.test(nat) ? 1 : 2;
        } else {
            want = /^0[36]/.test(nat) ? 2 : nat[0] === '0' ? 3 : 2;
        }
        const middle = nat.length - 4;
        const head = nat.slice(0, Math.min(want, Math.max(0, middle - 3)));
        return (cc ? '+' + cc + ' ' : '') + (head ? head + '-' : '') + '****-' + last;
    }
    return s.replace(/\d{5,}/g, (r) => '*'.repeat(r.length - 4) + r.slice(-4));
}

function fmtNumber(raw) {
    const s = str(raw);
    return masking && s ? maskNumber(s) : s;
}

function phone(raw) {
    const s = el('span', { class: 'phone' });
    s.twirtRaw = str(raw);
    s.textContent = fmtNumber(s.twirtRaw) || '—';
    return s;
}

function remask() {
    for (const s of document.querySelectorAll('.phone')) {
        s.textContent = fmtNumber(s.twirtRaw) || '—';
    }
}

function isOutbound(call) {
    return str(call.direction).startsWith('outbound') || has(call.campaign);
}

function customer(call) {
    return isOutbound(call) ? call.to : call.from;
}


/* requests */

const API = new URL('board/', location.href);
let config = null;

async function request(url, opts) {
    const r = await fetch(url, Object.assign({ cache: 'no-store' }, opts));
    const text = await r.text();
    let body = null;
    try {
        body = text ? JSON.parse(text) : null;
    } catch (e) {
        if (r.ok) throw new Error('not JSON: ' + url);
    }
    if (!r.ok) {
        const err = body && body.error;
        const e = new Error(err && (err.message || err.kind)
                            ? str(err.message || err.kind) : 'HTTP ' + r.status);
        e.status = r.status;
        e.kind = err ? str(err.kind) : '';
        e.body = body;
        throw e;
    }
    return body || {};
}

function api(path, opts) {
    return request(new URL(path, API), opts);
}

function post(url, json) {
    const opts = { method: 'POST' };
    if (json !== undefined) {
        opts.headers = { 'Content-Type': 'application/json' };
        opts.body = JSON.stringify(json);
    }
    return request(url, opts);
}

const banner = $('#banner');
const failures = new Map();

function apiFailed(what, e) {
    failures.set(what, e);
    const why = e.status === 503 ? 'Redis is not reachable (503)'
                : e.status ? str(e.message) + ' (' + e.status + ')'
                : 'no answer: ' + str(e.message);
    banner.textContent = 'Cannot reach the board API (' + what + '): ' + why
                         + '. ボードAPIに接続できません。';
    banner.hidden = false;
}

function apiOk(what) {
    failures.delete(what);
    if (failures.size === 0) banner.hidden = true;
}

function showError(node, e) {
    node.textContent = e ? str(e.message || e) : '';
    node.hidden = !e;
}


/* live calls */

const live = new Map();       /* CallSid -> {call, row, firstSeen, seen} */
const ended = new Set();      /* CallSids whose end we saw */
const liveBody = $('#live-calls tbody');

function merge(into, from) {
    for (const [k, v] of Object.entries(from || {})) {
        if (v != null && v !== '') into[k] = v;
    }
    return into;
}

function startMs(entry) {
    return parseTime(entry.call.started_at) || entry.firstSeen;
}

function addLive(call) {
    const sid = call.call_sid;
    const entry = { call: merge({}, call), firstSeen: Date.now(), seen: new Set() };
    const tr = el('tr', { class: 'call new', 'data-call-sid': sid });
    for (const c of ['caller', 'agent', 'campaign', 'state', 'duration',
                     'barge-ins', 'tools', 'cost']) {
        tr.append(el('td', { class: c }));
    }
    tr.addEventListener('click', guard('row', () => openCallHash(sid)));
    entry.row = tr;
    live.set(sid, entry);
    liveBody.prepend(tr);
    renderLive(entry);
    liveCount();
    return entry;
}

function removeLive(sid) {
    const entry = live.get(sid);
    if (!entry) return;
    entry.row.remove();
    live.delete(sid);
    liveCount();
}

function liveCount() {
    $('#live-count').textContent = String(live.size);
    $('#live-empty').hidden = live.size > 0;
    document.title = (live.size ? '(' + live.size + ') ' : '') + 'twirt call board';
}

function renderLive(entry) {
    const c = entry.call, td = (k) => entry.row.querySelector('td.' + k);
    const caller = td('caller');
    caller.className = 'caller ' + (isOutbound(c) ? 'out' : 'in');
    caller.title = isOutbound(c) ? 'outbound: the customer is "to"' : 'inbound';
    clear(caller);
    caller.append(phone(customer(c)));
    td('agent').textContent = str(c.agent) || '—';
    const camp = td('campaign');
    clear(camp);
    if (has(c.campaign)) {
        camp.append(str(c.campaign));
        if (has(c.row)) camp.append(el('span', { class: 'row', text: '#' + str(c.row) }));
    } else {
        camp.textContent = '—';
    }
    const state = td('state');
    clear(state);
    state.append(badge(c.status || 'connecting'));
    const b = num(c.barge_ins) || 0, t = num(c.tools_running) || 0;
    td('barge-ins').textContent = String(b);
    td('barge-ins').classList.toggle('some', b > 0);
    td('tools').textContent = String(t);
    td('tools').classList.toggle('busy', t > 0);
    td('cost').textContent = fmtCost(c.cost_usd);
    td('duration').textContent = fmtDuration(Date.now() - startMs(entry));
}

function badge(status) {
    const s = str(status);
    return el('span', { class: 'badge ' + s.replace(/[^a-z_]/gi, ''), text: s });
}

function countEvent(call, ev, type) {
    if (type === 'barge_in') {
        call.barge_ins = (num(call.barge_ins) || 0) + 1;
    } else if (type === 'tool' && ev.name !== 'end_call' && ev.name !== 'transfer_call') {
        /* (those two end the call: no result comes) */
        call.tools_running = (num(call.tools_running) || 0) + 1;
    } else if (type === 'tool_result') {
        call.tools_running = Math.max(0, (num(call.tools_running) || 0) - 1);
    } else if ((type === 'cost' || type === 'response') && has(ev.cost_usd)) {
        call.cost_usd = ev.cost_usd;
        if (has(ev.tokens)) call.tokens = ev.tokens;
    }
}

async function loadActive() {
    const started = Date.now();
    let d;
    try {
        d = await api('calls/active');
        apiOk('calls/active');
    } catch (e) {
        apiFailed('calls/active', e);
        return;
    }
    const list = Array.isArray(d.calls) ? d.calls : [];
    list.sort((a, b) => (parseTime(a.started_at) || 0) - (parseTime(b.started_at) || 0));
    const now = new Set();
    for (const c of list) {
        if (!c || typeof c.call_sid !== 'string' || ended.has(c.call_sid)) continue;
        if (c.status === 'ended' || c.status === 'failed') continue;
        now.add(c.call_sid);
        const entry = live.get(c.call_sid);
        if (entry) {
            merge(entry.call, c);
            renderLive(entry);
        } else {
            addLive(c);
        }
    }
    for (const [sid, entry] of live) {
        if (!now.has(sid) && entry.firstSeen < started) removeLive(sid);
    }
}


/* the event stream */

const conn = $('#conn');

function setConn(state, label) {
    conn.setAttribute('data-state', state);
    $('.label', conn).textContent = label || state;
}

let reviveDelay = 5000;

function startStream(url) {
    let es;
    try {
        es = new EventSource(url);
    } catch (e) {
        caught('EventSource', e);
        setConn('closed', 'offline');
        return;
    }
    const track = (m) => {
        if (m.lastEventId) board.lastEventId = m.lastEventId;
    };
    es.addEventListener('open', guard('open', () => {
        board.opens++;
        reviveDelay = 5000;
        setConn('open', 'live');
    }));
    es.addEventListener('error', guard('stream', () => {
        if (es.readyState === EventSource.CLOSED) {
            /*
             * The browser gave up for good (an HTTP error such as 503, not
             * a lost connection): it will not reconnect, so a new stream
             * picks up where this one stopped.
             */
            setConn('closed', 'offline');
            setTimeout(() => startStream('board/events' + (board.lastEventId
                ? '?last=' + encodeURIComponent(board.lastEventId) : '')),
                reviveDelay);
            reviveDelay = Math.min(reviveDelay * 2, 60000);
        } else {
            setConn('reconnecting', 'reconnecting');
        }
    }));
    es.addEventListener('message', (m) => {
        board.events++;
        track(m);
        let ev;
        try {
            ev = JSON.parse(m.data);
        } catch (e) {
            caught('event JSON', e);
            return;
        }
        try {
            if (ev && typeof ev === 'object') onEvent(ev);
        } catch (e) {
            caught('event ' + str(ev.type), e);
        }
    });
    es.addEventListener('hello', guard('hello', (m) => {
        track(m);
        const d = JSON.parse(m.data || '{}');
        if (!board.lastEventId && d && has(d.last)) board.lastEventId = str(d.last);
    }));
    es.addEventListener('reset', guard('reset', (m) => {
        track(m);
        board.resets++;
        reloadAll();
    }));
}

function onEvent(ev) {
    const sid = ev.call_sid;
    if (typeof sid !== 'string' || sid === '') return;
    const type = str(ev.type);
    let entry = live.get(sid);

    if (type === 'state') {
        const st = str(ev.status);
        if (st === 'connecting') {
            /* a new stream: also the caller back from a transfer nobody
               answered, on the same CallSid */
            ended.delete(sid);
        }
        if (st === 'ended' || st === 'failed') {
            ended.add(sid);
            removeLive(sid);
            entry = null;
            historyChanged();
        } else if (!ended.has(sid)) {
            const fields = {
                status: st || undefined, agent: ev.agent, from: ev.from, to: ev.to,
                direction: ev.direction, campaign: ev.campaign, row: ev.row
            };
            if (entry) {
                merge(entry.call, fields);
            } else {
                entry = addLive(Object.assign({ call_sid: sid }, fields));
            }
        }
    }

    if (entry) {
        const id = str(ev.event_id);
        if (!id || !entry.seen.has(id)) {
            if (id) entry.seen.add(id);
            countEvent(entry.call, ev, type);
        }
        renderLive(entry);
    }

    if (view && view.sid === sid) callEvent(ev);
}

function reloadAll() {
    loadActive();
    if (view) loadCall(view);
    historyChanged();
}


/* one call: header, transcript, hang-up */

let view = null;   /* the call shown: {sid, call, seen, cuts, barge, tools, loaded} */
const callBox = $('#call');
const transcript = $('#transcript');

function openCallHash(sid) {
    location.hash = '#/call/' + encodeURIComponent(sid);
}

function showCall(sid) {
    const nav = $('#nav-call');
    nav.hidden = false;
    nav.setAttribute('href', '#/call/' + encodeURIComponent(sid));
    nav.textContent = 'Call …' + sid.slice(-6);
    if (view && view.sid === sid) {
        renderCall();
        return;
    }
    const entry = live.get(sid);
    view = {
        sid, call: merge({ call_sid: sid }, entry ? entry.call : {}),
        seen: new Set(), cuts: new Map(), barge: 0, tools: 0, loaded: false
    };
    callBox.setAttribute('data-call-sid', sid);
    callBox.removeAttribute('data-status');
    clear(transcript);
    $('#transcript-empty').hidden = false;
    $('#hangup-result').textContent = '';
    $('#hangup-result').className = 'result';
    showError($('#call-error'), null);
    renderCall();
    loadCall(view);
}

async function loadCall(v) {
    let d;
    try {
        d = await api('calls/' + encodeURIComponent(v.sid));
    } catch (e) {
        if (view !== v) return;
        showError($('#call-error'), e.status === 404
            ? 'No record of this call (it may have expired). 通話記録が見つかりません。'
            : 'Cannot load the call: ' + str(e.message));
        return;
    }
    if (view !== v) return;
    showError($('#call-error'), null);
    const over = isOver(v.call) ? v.call.status : null;
    merge(v.call, d.call);
    if (over && !isOver(v.call)) v.call.status = over;
    v.loaded = true;
    for (const ev of Array.isArray(d.events) ? d.events : []) {
        if (ev && typeof ev === 'object') {
            try {
                callEvent(Object.assign({ call_sid: v.sid }, ev), true);
            } catch (e) {
                caught('timeline', e);
            }
        }
    }
    renderCall();
}

function isOver(call) {
    return call.status === 'ended' || call.status === 'failed';
}

function field(dl, label, value) {
    const dd = el('dd');
    if (value instanceof Node) dd.append(value);
    else dd.textContent = has(value) ? String(value) : '—';
    if (!(value instanceof Node)) dd.title = dd.textContent;
    dl.append(el('div', null, el('dt', { text: label }), dd));
}

function renderCall() {
    if (!view) return;
    const c = view.call, entry = live.get(view.sid);
    const over = isOver(c);
    $('#call-title').textContent = view.sid;
    const st = $('#call-status');
    st.className = 'badge ' + str(c.status).replace(/[^a-z_]/gi, '');
    st.textContent = str(c.status) || '…';

    const dl = $('#call-fields');
    clear(dl);
    const outbound = isOutbound(c);
    field(dl, 'Direction', str(c.direction) || (outbound ? 'outbound' : ''));
    field(dl, 'From', phone(c.from));
    field(dl, 'To', phone(c.to));
    field(dl, 'Agent', c.agent);
    field(dl, 'Campaign', has(c.campaign)
          ? str(c.campaign) + (has(c.row) ? ' #' + str(c.row) : '') : '');
    field(dl, 'Started', has(c.started_at) ? fmtTime(c.started_at) : '');
    field(dl, 'Answered', has(c.answered_at) ? fmtTime(c.answered_at) : '');
    if (over) field(dl, 'Ended', has(c.ended_at) ? fmtTime(c.ended_at) : '');
    const dur = over ? c.duration_ms
                : Date.now() - (parseTime(c.started_at) || (entry ? entry.firstSeen : Date.now()));
    field(dl, 'Duration', fmtDuration(dur));
    field(dl, 'Cost', fmtCost(c.cost_usd));
    field(dl, 'Tokens', c.tokens);
    field(dl, 'Barge-ins', String(entry ? num(entry.call.barge_ins) || 0
                                  : view.loaded ? view.barge : num(c.barge_ins) || 0));
    if (!over) {
        field(dl, 'Tools running', String(entry ? num(entry.call.tools_running) || 0
                                          : view.loaded ? view.tools : num(c.tools_running) || 0));
    }
    field(dl, 'Node', c.node);
    if (over) field(dl, 'End reason', c.end_reason);

    const sum = $('#call-summary');
    $('#hangup').disabled = over;
    if (over) {
        callBox.setAttribute('data-status', str(c.status));
        clear(sum);
        const why = str(c.end_reason);
        sum.append(c.status === 'failed' ? 'Call failed' : 'Call ended',
                   ' · reason: ' + (why || '—')
                   + (END_REASONS[why] ? ' (' + END_REASONS[why] + ')' : '')
                   + (has(c.end_detail) ? ' — ' + str(c.end_detail) : '')
                   + ' · duration ' + fmtDuration(c.duration_ms)
                   + ' · cost ' + fmtCost(num(c.cost_usd) == null ? 0 : c.cost_usd)
                   + (has(c.tokens) ? ' · ' + str(c.tokens) + ' tokens' : ''));
        sum.hidden = false;
    } else {
        callBox.removeAttribute('data-status');
        sum.hidden = true;
    }
}

/* event ids are Redis stream ids, "ms-seq": order lines by them */
function idKey(id) {
    const m = /^(\d+)-(\d+)$/.exec(str(id));
    return m ? [Number(m[1]), Number(m[2])] : null;
}

function placeLine(line, id) {
    const key = idKey(id);
    line.twirtKey = key;
    if (key) {
        for (let n = transcript.lastElementChild; n; n = n.previousElementSibling) {
            const k = n.twirtKey;
            if (!k || k[0] < key[0] || (k[0] === key[0] && k[1] <= key[1])) {
                n.after(line);
                return;
            }
        }
        transcript.prepend(line);
        return;
    }
    transcript.append(line);
}

function callEvent(ev, fromDetail) {
    const v = view;
    const id = str(ev.event_id);
    if (id) {
        if (v.seen.has(id)) return;
        v.seen.add(id);
    }
    const type = str(ev.type);
    const atEnd = current === 'call' && !fromDetail
                  && window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
    $('#transcript-empty').hidden = true;

    if (type === 'barge_in') v.barge++;
    if (type === 'tool') v.tools++;
    if (type === 'tool_result') v.tools = Math.max(0, v.tools - 1);

    if (type === 'transcript' && (ev.role === 'caller' || ev.role === 'agent')) {
        const line = el('div', { class: 'line ' + ev.role, 'data-event-id': id || null,
                                 'data-item-id': has(ev.item_id) ? str(ev.item_id) : null });
        line.twirtText = str(ev.text);
        line.append(el('span', { class: 'ms', text: fmtOffset(ev.ms) }),
                    el('div', { class: 'text', text: line.twirtText }));
        placeLine(line, id);
        if (ev.role === 'agent' && has(ev.item_id) && v.cuts.has(str(ev.item_id))) {
            markCut(line, v.cuts.get(str(ev.item_id)));
        }
    } else if (type === 'barge_in') {
        const cut = { heard: num(ev.heard_ms), audio: num(ev.audio_ms) };
        const item = str(ev.item_id);
        if (item) {
            v.cuts.set(item, cut);
            for (const line of transcript.querySelectorAll('.line.agent')) {
                if (line.getAttribute('data-item-id') === item) markCut(line, cut);
            }
        }
        systemLine(ev, id, 'barge-in', 'the caller cut the agent off after '
                   + secs(cut.heard) + ' of ' + secs(cut.audio));
    } else if (type === 'state') {
        const st = str(ev.status);
        if (!fromDetail || !isOver(v.call)) v.call.status = st || v.call.status;
        if (st === 'ended' || st === 'failed') {
            if (!fromDetail && !has(v.call.ended_at)) {
                v.call.ended_at = new Date().toISOString();
            }
            merge(v.call, { status: st, end_reason: ev.reason, end_detail: ev.detail,
                            tokens: ev.tokens, cost_usd: ev.cost_usd,
                            duration_ms: ev.duration_ms });
        } else {
            merge(v.call, { agent: ev.agent, from: ev.from, to: ev.to,
                            direction: ev.direction, campaign: ev.campaign, row: ev.row });
        }
        systemLine(ev, id, 'state', [st, ev.reason, ev.detail].filter(has).map(str).join(' · '));
    } else if (type === 'cost') {
        /* the cost so far: the header shows it, no line */
        if (has(ev.cost_usd) && !isOver(v.call)) {
            v.call.cost_usd = ev.cost_usd;
            v.call.tokens = ev.tokens;
        }
    } else if (type === 'response') {
        if (has(ev.cost_usd) && !isOver(v.call)) v.call.cost_usd = ev.cost_usd;
        const st = str(ev.status);
        if (st && st !== 'completed' && st !== 'cancelled' && st !== 'in_progress') {
            systemLine(ev, id, 'response', [st, ev.reason].filter(has).map(str).join(': '));
        }
    } else {
        describe(ev, id, type);
    }
    if (!fromDetail) renderCall();
    if (atEnd) window.scrollTo(0, document.body.scrollHeight);
}

function secs(ms) {
    return ms == null ? '?' : (ms / 1000).toFixed(1) + ' s';
}

function markCut(line, cut) {
    const chars = Array.from(line.twirtText || '');
    const ratio = cut.audio > 0 && cut.heard != null
                  ? Math.min(1, Math.max(0, cut.heard / cut.audio)) : 0;
    const n = Math.round(chars.length * ratio);
    const text = $('.text', line);
    clear(text);
    text.append(el('span', { class: 'heard', text: chars.slice(0, n).join('') }),
                el('span', { class: 'unheard', text: chars.slice(n).join('') }));
    line.classList.add('cut');
    if (!$('.cut-badge', line)) {
        line.append(el('span', { class: 'cut-badge' }, 'barge-in'));
    }
    $('.cut-badge', line).title = 'heard ' + secs(cut.heard) + ' of ' + secs(cut.audio);
}

function systemLine(ev, id, kind, ...parts) {
    const text = el('span', { class: 'text' }, el('span', { class: 'kind', text: kind }), ' ');
    for (const p of parts) {
        if (p != null && p !== '') text.append(p);
    }
    const line = el('div', { class: 'line system', 'data-type': str(ev.type) || 'event',
                             'data-event-id': id || null },
                    el('span', { class: 'ms', text: fmtOffset(ev.ms) }), text);
    placeLine(line, id);
    return line;
}

const SKIP = new Set(['type', 'call_sid', 'ms', 'event_id']);
const NUMBER_FIELDS = new Set(['number', 'from', 'to', 'caller']);

function clip(s, n) {
    s = str(s);
    return s.length > n ? s.slice(0, n) + '…' : s;
}

function describe(ev, id, type) {
    const name = str(ev.name);
    if (type === 'tool') {
        const args = typeof ev.arguments === 'string' ? ev.arguments
                     : ev.arguments == null ? '' : JSON.stringify(ev.arguments);
        systemLine(ev, id, 'tool call', name + '(' + clip(args, 300) + ')');
        return;
    }
    if (type === 'tool_result') {
        systemLine(ev, id, 'tool result', name + ': ' + (str(ev.status) || '?')
                   + (has(ev.http_status) ? ' · HTTP ' + str(ev.http_status) : '')
                   + (has(ev.duration_ms) ? ' · ' + str(ev.duration_ms) + ' ms' : ''));
        return;
    }
    const labels = { dtmf: 'keypad', keypad: 'keys', control: 'control', error: 'error',
                     transfer: 'transfer', stream: 'stream' };
    const parts = [];
    for (const [k, val] of Object.entries(ev)) {
        if (SKIP.has(k) || val == null || val === '') continue;
        if (parts.length) parts.push(' · ');
        const shown = typeof val === 'object' ? clip(JSON.stringify(val), 200) : clip(val, 300);
        if (k === 'message' || k === 'digits' || k === 'digit' || k === 'status') {
            parts.push(shown);
        } else if (NUMBER_FIELDS.has(k)) {
            parts.push(k + ' ', phone(val));
        } else {
            parts.push(k + ' ' + shown);
        }
    }
    systemLine(ev, id, labels[type] || type || 'event', ...parts);
}

async function hangup() {
    if (!view) return;
    const v = view, btn = $('#hangup'), out = $('#hangup-result');
    btn.disabled = true;
    out.className = 'result';
    out.textContent = 'Hanging up… 切断中…';
    try {
        const d = await post(new URL('calls/' + encodeURIComponent(v.sid) + '/hangup', API));
        if (view !== v) return;
        out.className = 'result ok';
        out.textContent = 'Hang-up ' + (str(d.result) || 'queued') + '.';
    } catch (e) {
        if (view !== v) return;
        out.className = 'result bad';
        out.textContent = e.status === 409 ? 'The call has already ended. 通話は終了しています。'
                          : e.status === 404 ? 'No such call. 通話が見つかりません。'
                          : 'Hang-up failed: ' + str(e.message);
        if (e.status === 409) return;
    }
    btn.disabled = isOver(v.call);
}


/* history */

const hist = { q: '', from: null, to: null, next: null, stale: true, timer: null, seq: 0 };
const histBody = $('#history-calls tbody');

async function loadHistory(more) {
    const seq = ++hist.seq;
    const p = new URLSearchParams();
    if (hist.q) p.set('q', hist.q);
    if (hist.from != null) p.set('from', String(hist.from));
    if (hist.to != null) p.set('to', String(hist.to));
    if (more && hist.next != null) p.set('before', str(hist.next));
    p.set('limit', '50');
    let d;
    try {
        d = await api('calls?' + p.toString());
        apiOk('calls');
    } catch (e) {
        if (seq !== hist.seq) return;
        showError($('#history-error'), 'Cannot load the calls: ' + str(e.message));
        if (!e.status || e.status >= 500) apiFailed('calls', e);
        return;
    }
    if (seq !== hist.seq) return;
    showError($('#history-error'), null);
    hist.stale = false;
    if (!more) clear(histBody);
    for (const c of Array.isArray(d.calls) ? d.calls : []) {
        if (!c || typeof c.call_sid !== 'string') continue;
        if (more && [...histBody.rows].some((r) => r.getAttribute('data-call-sid') === c.call_sid)) {
            continue;
        }
        histBody.append(historyRow(c));
    }
    hist.next = d.next == null ? null : d.next;
    $('#history-more').hidden = hist.next == null;
    $('#history-empty').hidden = histBody.rows.length > 0;
}

function historyRow(c) {
    const tr = el('tr', { class: 'call', 'data-call-sid': c.call_sid });
    const outcome = str(c.end_reason) || str(c.status) || '—';
    const ob = badge(c.status || '');
    ob.textContent = outcome;
    if (has(c.end_detail)) ob.title = str(c.end_detail);
    const caller = el('td', { class: 'caller ' + (isOutbound(c) ? 'out' : 'in') },
                      phone(customer(c)));
    tr.append(el('td', { class: 'time', text: fmtTime(c.started_at) }), caller,
              el('td', { class: 'agent', text: str(c.agent) || '—' }),
              el('td', { class: 'outcome' }, ob),
              el('td', { class: 'duration', text: fmtDuration(c.duration_ms) }),
              el('td', { class: 'cost', text: fmtCost(c.cost_usd) }));
    tr.addEventListener('click', guard('row', () => openCallHash(c.call_sid)));
    return tr;
}

function historyChanged() {
    hist.stale = true;
    if (current !== 'history') return;
    clearTimeout(hist.timer);
    hist.timer = setTimeout(guard('history', () => loadHistory(false)), 700);
}

$('#search').addEventListener('submit', guard('search', (e) => {
    e.preventDefault();
    hist.q = $('#search-q').value.trim();
    const day = $('#search-date').value;
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
    if (m) {
        const y = +m[1], mo = +m[2] - 1, dd = +m[3];
        hist.from = Math.floor(new Date(y, mo, dd).getTime() / 1000);
        hist.to = Math.floor(new Date(y, mo, dd + 1).getTime() / 1000);
    } else {
        hist.from = hist.to = null;
    }
    hist.next = null;
    loadHistory(false);
}));

$('#search-clear').addEventListener('click', guard('search', () => {
    $('#search-q').value = '';
    $('#search-date').value = '';
    hist.q = '';
    hist.from = hist.to = hist.next = null;
    loadHistory(false);
}));

$('#history-more').addEventListener('click', guard('more', () => loadHistory(true)));


/* campaigns */

const camp = { base: null, timer: null, cards: new Map(), status: new Map() };
const OVER = new Set(['finished', 'cancelled']);
const OUTCOMES = [
    ['completed', '#22c55e'], ['voicemail', '#8b5cf6'], ['busy', '#f59e0b'],
    ['no_answer', '#94a3b8'], ['failed', '#ef4444'], ['invalid', '#f97316'],
    ['dnc', '#475569'], ['cancelled', '#cbd5e1'],
    ['in_progress', '#60a5fa'], ['queued', '#e5e7eb']
];

function campUrl(path) {
    return new URL(path, camp.base);
}

async function campaignList() {
    const d = await request(campUrl(''));
    const list = (Array.isArray(d.campaigns) ? d.campaigns : [])
        .filter((c) => c && has(c.id));
    list.sort((a, b) => (parseTime(b.created_at) || 0) - (parseTime(a.created_at) || 0));
    await Promise.all(list.map(async (c) => {
        const id = str(c.id), old = camp.status.get(id);
        if (old && OVER.has(str(old.status)) && old.status === c.status) return;
        try {
            const s = await request(campUrl(encodeURIComponent(id)));
            camp.status.set(id, Object.assign({ id, name: c.name }, s));
        } catch (e) {
            camp.status.set(id, Object.assign({}, old || c, { fetchError: str(e.message) }));
        }
    }));
    return list;
}

async function pollCampaigns() {
    clearTimeout(camp.timer);
    let list;
    try {
        list = await campaignList();
        showError($('#campaigns-error'), null);
    } catch (e) {
        showError($('#campaigns-error'), 'Cannot load the campaigns: ' + str(e.message));
        list = null;
    }
    if (list) {
        const box = $('#campaign-list'), keep = new Set();
        for (const c of list) {
            const id = str(c.id);
            keep.add(id);
            let card = camp.cards.get(id);
            if (!card) {
                card = campaignCard(id);
                camp.cards.set(id, card);
            }
            box.append(card);
            renderCampaign(card, camp.status.get(id) || c);
        }
        for (const [id, card] of camp.cards) {
            if (!keep.has(id)) {
                card.remove();
                camp.cards.delete(id);
            }
        }
        $('#campaigns-empty').hidden = list.length > 0;
    }
    if (current === 'campaigns') {
        camp.timer = setTimeout(guard('campaigns', pollCampaigns), 2000);
    }
}

function campaignCard(id) {
    const card = $('#tpl-campaign').content.firstElementChild.cloneNode(true);
    card.setAttribute('data-campaign-id', id);
    for (const action of ['pause', 'resume', 'cancel']) {
        $('button.' + action, card).addEventListener('click', guard(action, async () => {
            const msg = $('.msg', card);
            msg.textContent = '';
            try {
                const s = await post(campUrl(encodeURIComponent(id) + '/' + action));
                const merged = Object.assign({}, camp.status.get(id), s);
                camp.status.set(id, merged);
                renderCampaign(card, merged);
            } catch (e) {
                msg.textContent = action + ': ' + str(e.message);
            }
        }));
    }
    $('a.results', card).setAttribute('href', campUrl(encodeURIComponent(id) + '/results.csv').href);
    return card;
}

function campaignPercent(s) {
    const rows = num(s.rows) || 0;
    if (s.status === 'finished') return 100;
    if (rows <= 0) return 0;
    const done = rows - (num(s.queued) || 0) - (num(s.in_progress) || 0);
    return Math.max(0, Math.min(100, Math.round(done * 100 / rows)));
}

function renderCampaign(card, s) {
    const status = str(s.status);
    card.setAttribute('data-status', status);
    $('.name', card).textContent = str(s.name) || str(s.id);
    $('.id', card).textContent = str(s.id);
    const b = $('.status', card);
    b.className = 'badge status ' + status.replace(/[^a-z_]/gi, '');
    b.textContent = status || '?';
    $('button.pause', card).disabled = status !== 'running';
    $('button.resume', card).disabled = status !== 'paused';
    $('button.cancel', card).disabled = OVER.has(status);

    const p = campaignPercent(s);
    const prog = $('.progress', card);
    prog.setAttribute('data-percent', String(p));
    prog.title = p + '%';
    $('.bar', prog).setAttribute('style', 'width:' + p + '%');

    const stats = $('.campaign-stats', card);
    clear(stats);
    const stat = (k, v) => stats.append(el('span', null, el('span', { class: 'k', text: k }),
                                           el('span', { class: 'v', text: v })));
    const rows = num(s.rows) || 0;
    stat('progress', p + '% of ' + rows + ' rows');
    stat('in progress', String(num(s.in_progress) || 0));
    stat('queued', String(num(s.queued) || 0));
    const o = s.outcomes && typeof s.outcomes === 'object' ? s.outcomes : {};
    for (const [k] of OUTCOMES.slice(0, 8)) {
        if (num(o[k])) stat(k.replace('_', ' '), String(num(o[k])));
    }
    stat('cost', fmtCost(num(s.cost_usd) == null ? 0 : s.cost_usd));
    if (has(s.eta) && !OVER.has(status)) {
        const t = parseTime(s.eta);
        stat('ETA', t == null ? str(s.eta)
             : fmtTime(t).slice(11, 16) + ' (in ' + fmtDuration(Math.max(0, t - Date.now())) + ')');
    }
    if (s.window_open === false) stats.append(el('span', { class: 'k', text: 'outside the calling window' }));
    if (has(s.error)) stats.append(el('span', { class: 'warn', text: '⚠ ' + str(s.error) }));
    if (has(s.fetchError)) stats.append(el('span', { class: 'warn', text: 'status: ' + str(s.fetchError) }));
    drawOutcomes($('svg.chart-outcomes', card), s);
}

$('#campaign-form').addEventListener('submit', guard('campaign form', async (e) => {
    e.preventDefault();
    const out = $('#cf-result'), btn = $('#cf-submit');
    const say = (cls, ...kids) => {
        clear(out);
        out.append(el('p', { class: cls }, ...kids));
    };
    if (!camp.base) return say('bad', 'Campaigns are not enabled on this server.');
    const file = $('#cf-file').files[0];
    const body = { name: $('#cf-name').value.trim(), from: $('#cf-from').value.trim(), paused: true };
    if (!body.name || !body.from) return say('bad', 'Name and From are required. 名前と発信者番号は必須です。');
    if (!file) return say('bad', 'Choose a CSV file. CSVファイルを選んでください。');
    const agent = $('#cf-agent').value.trim();
    if (agent) body.agent = agent;
    const cps = num($('#cf-cps').value), conc = num($('#cf-concurrency').value);
    if (cps != null) body.cps = cps;
    if (conc != null) body.concurrency = conc;

    btn.disabled = true;
    let id = null;
    try {
        say('', 'Creating the campaign… 作成中…');
        const created = await post(campUrl(''), body);
        id = str(created.id);
        if (!id) throw new Error('the server returned no campaign id');
        say('', 'Uploading ' + file.name + '… アップロード中…');
        let report;
        try {
            report = await request(campUrl(encodeURIComponent(id) + '/rows'), {
                method: 'POST', headers: { 'Content-Type': 'text/csv' }, body: file
            });
        } catch (err) {
            say('bad', 'The rows were refused: ' + str(err.message)
                + ' (campaign ' + id + ' stays paused). 行が受け付けられませんでした。');
            return;
        }
        clear(out);
        uploadReport(out, report);
        try {
            await post(campUrl(encodeURIComponent(id) + '/resume'));
            out.prepend(el('p', { class: 'ok' }, 'Campaign ' + id + ' started. 開始しました。'));
            $('#campaign-form').reset();
        } catch (err) {
            out.prepend(el('p', { class: 'bad' }, 'Uploaded, but resume failed: '
                                 + str(err.message) + ' (campaign ' + id + ' is paused).'));
        }
    } catch (err) {
        say('bad', (id ? 'Campaign ' + id + ': ' : 'Cannot create the campaign: ')
            + str(err.message));
    } finally {
        btn.disabled = false;
        if (current === 'campaigns') pollCampaigns();
    }
}));

function uploadReport(out, r) {
    const list = (k) => (Array.isArray(r[k]) ? r[k] : []);
    const invalid = list('invalid'), dups = list('duplicates'), dnc = list('dnc');
    out.append(el('p', null, 'Accepted ', el('strong', { text: String(num(r.accepted) || 0) }),
                  ' of ' + String(num(r.rows) ?? '?') + ' rows · '
                  + invalid.length + ' invalid · ' + dups.length + ' duplicates · '
                  + dnc.length + ' on the do-not-call list.'));
    const table = (title, rows, cols) => {
        if (!rows.length) return;
        const t = el('table', null,
                     el('tr', null, ...cols.map(([, label]) => el('th', { text: label }))));
        for (const row of rows.slice(0, 200)) {
            t.append(el('tr', null, ...cols.map(([k]) => el('td', null,
                k === 'to' ? phone(row && row[k]) : str(row && row[k])))));
        }
        out.append(el('p', { class: 'bad', text: title }), t);
        if (rows.length > 200) out.append(el('p', { text: '… and ' + (rows.length - 200) + ' more' }));
    };
    table('Invalid rows 無効な行', invalid, [['line', 'line'], ['row', 'row'], ['to', 'to'], ['error', 'error']]);
    table('Duplicates 重複', dups, [['line', 'line'], ['row', 'row'], ['to', 'to'], ['same_as', 'same as row']]);
    table('Do not call 発信拒否', dnc, [['line', 'line'], ['row', 'row'], ['to', 'to']]);
}


/* charts: SVG by hand */

/* the axis top: four ticks of 1, 2, 2.5 or 5 times a power of ten */
function niceMax(v, integer) {
    const want = v > 0 ? v / 4 : 0.25;
    const e = Math.pow(10, Math.floor(Math.log10(want))), f = want / e;
    let step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * e;
    if (integer) step = Math.max(1, Math.ceil(step));
    return step * 4;
}

function tickFormat(max, prefix) {
    const step = max / 4;
    let d = prefix === '$' ? 2 : 0;
    while (d < 4 && Math.abs(Math.round(step * Math.pow(10, d)) - step * Math.pow(10, d)) > 1e-9) d++;
    return (v) => prefix + v.toFixed(d);
}

function frame(svg, W, H, yMax, yFmt, yTitle, xTitle) {
    clear(svg);
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    const box = { l: 52, r: 12, t: 12, b: 40 };
    box.w = W - box.l - box.r;
    box.h = H - box.t - box.b;
    box.y = (v) => box.t + box.h - (v / yMax) * box.h;
    for (let i = 0; i <= 4; i++) {
        const v = yMax * i / 4, y = box.y(v);
        svg.append(sv('line', { class: i ? 'grid' : 'axis', x1: box.l, x2: W - box.r, y1: y, y2: y }),
                   sv('text', { x: box.l - 6, y: y + 4, 'text-anchor': 'end' }, yFmt(v)));
    }
    svg.append(sv('line', { class: 'axis', x1: box.l, x2: box.l, y1: box.t, y2: box.t + box.h }),
               sv('text', { x: 12, y: box.t + box.h / 2, 'text-anchor': 'middle',
                            transform: 'rotate(-90 12 ' + (box.t + box.h / 2) + ')' }, yTitle),
               sv('text', { x: box.l + box.w / 2, y: H - 4, 'text-anchor': 'middle' }, xTitle));
    return box;
}

function noData(svg, box, text) {
    svg.append(sv('text', { class: 'none', x: box.l + box.w / 2, y: box.t + box.h / 2,
                            'text-anchor': 'middle' }, text));
}

function bars(svg, box, values, color, label) {
    const n = values.length, slot = box.w / n, w = Math.max(1, slot * 0.72);
    values.forEach((v, i) => {
        const y = box.y(v), x = box.l + i * slot + (slot - w) / 2;
        const r = sv('rect', { x, y, width: w, height: Math.max(0, box.t + box.h - y),
                               fill: color, rx: 2 });
        r.append(sv('title', null, label(i, v)));
        svg.append(r);
    });
}

function drawCalls(svg, stats, now) {
    const t0 = Math.floor((now - 86400) / 60) * 60, counts = new Map();
    for (const p of Array.isArray(stats.calls_per_minute) ? stats.calls_per_minute : []) {
        if (Array.isArray(p)) counts.set(Math.floor(num(p[0]) / 60) * 60, num(p[1]) || 0);
    }
    const vals = [];
    for (let t = t0; t <= now; t += 60) vals.push(counts.get(t) || 0);
    const max = niceMax(Math.max(0, ...vals), true);
    const W = 960, H = 230;
    const box = frame(svg, W, H, max, (v) => String(Math.round(v)), 'calls / min', 'time (local)');
    const x = (t) => box.l + (t - t0) / (now - t0) * box.w;
    const tick = new Date(t0 * 1000);
    tick.setMinutes(0, 0, 0);
    do tick.setHours(tick.getHours() + 1); while (tick.getHours() % 3);
    for (; tick.getTime() / 1000 <= now; tick.setHours(tick.getHours() + 3)) {
        const xx = x(tick.getTime() / 1000);
        const text = tick.getHours() === 0 ? pad2(tick.getMonth() + 1) + '/' + pad2(tick.getDate())
                     : pad2(tick.getHours()) + ':00';
        svg.append(sv('line', { class: 'axis', x1: xx, x2: xx, y1: box.t + box.h, y2: box.t + box.h + 4 }),
                   sv('text', { x: xx, y: box.t + box.h + 16, 'text-anchor': 'middle' }, text));
    }
    if (!vals.some((v) => v > 0)) return noData(svg, box, 'No calls in the last 24 h');
    let d = '';
    vals.forEach((v, i) => {
        d += (i ? 'L' : 'M') + x(t0 + i * 60).toFixed(1) + ' ' + box.y(v).toFixed(1);
    });
    const base = (box.t + box.h).toFixed(1);
    svg.append(sv('path', { d: d + 'L' + x(t0 + (vals.length - 1) * 60).toFixed(1) + ' ' + base
                                + 'L' + x(t0).toFixed(1) + ' ' + base + 'Z', fill: '#dbe7ff' }),
               sv('path', { d, fill: 'none', stroke: '#2563eb', 'stroke-width': 1.2 }));
}

function drawCost(svg, stats, now) {
    const h0 = Math.floor(now / 3600) * 3600 - 23 * 3600, cost = new Array(24).fill(0);
    for (const p of Array.isArray(stats.cost_per_hour) ? stats.cost_per_hour : []) {
        if (!Array.isArray(p)) continue;
        const i = Math.floor((num(p[0]) - h0) / 3600);
        if (i >= 0 && i < 24) cost[i] += num(p[1]) || 0;
    }
    const max = niceMax(Math.max(0, ...cost));
    const box = frame(svg, 460, 230, max, tickFormat(max, '$'),
                      'USD / hour', 'hour (local)');
    bars(svg, box, cost, '#6366f1', (i, v) => fmtTime((h0 + i * 3600) * 1000).slice(5, 16)
                                           + '  ' + fmtCost(v));
    for (let i = 0; i < 24; i += 3) {
        const d = new Date((h0 + i * 3600) * 1000);
        svg.append(sv('text', { x: box.l + (i + 0.5) * box.w / 24, y: box.t + box.h + 16,
                                'text-anchor': 'middle' }, pad2(d.getHours())));
    }
    if (!cost.some((v) => v > 0)) noData(svg, box, 'No cost in the last 24 h');
}

function binLabel(prev, le) {
    const f = (s) => (s >= 60 && s % 60 === 0 ? s / 60 + 'm' : s + 's');
    if (le == null) return '>' + f(prev);
    return prev ? f(prev) + '–' + f(le) : '≤' + f(le);
}

function drawDurations(svg, stats) {
    const bins = (Array.isArray(stats.durations) ? stats.durations : []).filter((b) => b);
    const counts = bins.map((b) => num(b.count) || 0);
    let prev = 0;
    const labels = bins.map((b) => {
        const le = num(b.le), l = binLabel(prev, le);
        if (le != null) prev = le;
        return l;
    });
    const max = niceMax(Math.max(0, ...counts), true);
    const box = frame(svg, 460, 230, max, (v) => String(Math.round(v)), 'calls', 'duration');
    if (!bins.length) return noData(svg, box, 'No data');
    bars(svg, box, counts, '#0ea5e9', (i, v) => labels[i] + ': ' + v + ' calls');
    labels.forEach((l, i) => {
        const cx = box.l + (i + 0.5) * box.w / bins.length;
        svg.append(sv('text', { x: cx, y: box.t + box.h + 16, 'text-anchor': 'middle' }, l));
        if (counts[i]) {
            svg.append(sv('text', { x: cx, y: box.y(counts[i]) - 4, 'text-anchor': 'middle' },
                          String(counts[i])));
        }
    });
    if (!counts.some((v) => v > 0)) noData(svg, box, 'No calls in the last 24 h');
}

function drawOutcomes(svg, s) {
    clear(svg);
    const W = Math.round(Math.max(300, svg.getBoundingClientRect().width || 900)), H = 46;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('preserveAspectRatio', 'xMinYMid meet');
    const o = s.outcomes && typeof s.outcomes === 'object' ? s.outcomes : {};
    const parts = OUTCOMES.map(([k, color]) => [k, color,
        num(k === 'queued' || k === 'in_progress' ? s[k] : o[k]) || 0]).filter((p) => p[2] > 0);
    const total = parts.reduce((a, p) => a + p[2], 0);
    svg.append(sv('title', null, 'outcomes of ' + (str(s.name) || str(s.id))));
    svg.append(sv('rect', { x: 0, y: 2, width: W, height: 14, rx: 4, fill: '#f1f4f8' }));
    let x = 0, lx = 0;
    for (const [k, color, n] of parts) {
        const w = n / total * W;
        const r = sv('rect', { x, y: 2, width: w, height: 14, fill: color });
        r.append(sv('title', null, k + ': ' + n));
        svg.append(r);
        x += w;
        const label = k.replace('_', ' ') + ' ' + n;
        svg.append(sv('rect', { x: lx, y: 28, width: 10, height: 10, rx: 2, fill: color }),
                   sv('text', { x: lx + 14, y: 37 }, label));
        lx += 26 + label.length * 6.4;
    }
    if (!total) svg.append(sv('text', { x: 0, y: 37 }, 'no rows yet'));
}

const charts = { timer: null };

async function refreshCharts() {
    clearTimeout(charts.timer);
    try {
        const stats = await api('stats');
        apiOk('stats');
        showError($('#charts-error'), null);
        const now = num(stats.now) || Math.floor(Date.now() / 1000);
        drawCalls($('#chart-calls'), stats, now);
        drawCost($('#chart-cost'), stats, now);
        drawDurations($('#chart-durations'), stats);
        $('#charts-updated').textContent = 'updated ' + fmtTime(Date.now()).slice(11);
    } catch (e) {
        showError($('#charts-error'), 'Cannot load the statistics: ' + str(e.message));
    }
    if (camp.base) {
        try {
            const list = await campaignList();
            const box = $('#chart-campaigns');
            clear(box);
            for (const c of list) {
                const s = camp.status.get(str(c.id)) || c;
                const svg = sv('svg', { class: 'chart-outcomes', role: 'img' });
                box.append(el('div', { class: 'row-title' }, str(s.name) || str(c.id), ' ',
                              badge(s.status)), svg);
                drawOutcomes(svg, s);
            }
            $('#chart-campaigns-wrap').hidden = list.length === 0;
        } catch (e) {
            showError($('#charts-error'), 'Cannot load the campaigns: ' + str(e.message));
        }
    }
    if (current === 'charts') {
        charts.timer = setTimeout(guard('charts', refreshCharts), 30000);
    }
}


/* routing */

let current = null;
const VIEWS = ['live', 'call', 'history', 'campaigns', 'charts'];

function route() {
    const h = location.hash || '#/live';
    let name = 'live', sid = null;
    const m = /^#\/call\/(.+)$/.exec(h);
    if (m) {
        try {
            sid = decodeURIComponent(m[1]);
        } catch (e) {
            sid = null;
        }
        name = sid ? 'call' : 'live';
    } else if (VIEWS.includes(h.slice(2)) && h.slice(2) !== 'call') {
        name = h.slice(2);
    }
    if (name === 'campaigns' && config && !camp.base) name = 'live';

    const was = current;
    current = name;
    for (const v of VIEWS) $('#view-' + v).hidden = v !== name;
    for (const a of document.querySelectorAll('#nav a')) {
        a.classList.toggle('current', a.getAttribute('data-view') === name);
    }
    if (name === 'call') showCall(sid);
    if (name === 'history' && (hist.stale || was !== 'history')) loadHistory(false);
    if (name === 'campaigns' && camp.base && was !== 'campaigns') pollCampaigns();
    if (name === 'charts' && was !== 'charts') refreshCharts();
    if (name !== 'campaigns') clearTimeout(camp.timer);
    if (name !== 'charts') clearTimeout(charts.timer);
}

async function loadConfig() {
    try {
        config = await api('config');
        apiOk('config');
    } catch (e) {
        apiFailed('config', e);
        setTimeout(guard('config', loadConfig), 10000);
        return;
    }
    camp.base = has(config.campaigns) ? new URL(str(config.campaigns), location.href) : null;
    board.config = config;
    $('#nav-campaigns').hidden = !camp.base;
    /* the form can start a campaign once it knows where the campaigns are */
    $('#cf-submit').disabled = !camp.base;
    $('#live-node').textContent = has(config.node) ? 'node ' + str(config.node) : '';
    if (failures.has('calls/active')) loadActive();
    if (current === 'campaigns' || current === 'charts') current = null;
    route();
}


/* start */

const maskBox = $('#mask-numbers');
maskBox.checked = masking;
maskBox.addEventListener('change', guard('mask', () => {
    masking = maskBox.checked;
    try {
        localStorage.setItem(MASK_KEY, masking ? '1' : '0');
    } catch (e) { /* display only */ }
    remask();
}));

$('#hangup').addEventListener('click', guard('hangup', hangup));
window.addEventListener('hashchange', guard('route', route));

setInterval(guard('tick', () => {
    const now = Date.now();
    for (const entry of live.values()) {
        entry.row.querySelector('td.duration').textContent = fmtDuration(now - startMs(entry));
        entry.row.classList.remove('new');
    }
    if (current === 'call' && view && !isOver(view.call)) renderCall();
}), 1000);

liveCount();
guard('route', route)();
startStream('board/events');
loadConfig();
loadActive();

})();

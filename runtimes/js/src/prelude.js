// The Web and Workers APIs of Nimbus's JavaScript engine, built on the natives in
// `globalThis.__nimbus` (src/natives.rs). Evaluated once at deploy, before the worker's own
// modules, and part of the snapshot every request starts from.
//
// What is here: Headers, Request, Response, fetch, URL, URLSearchParams, TextEncoder,
// TextDecoder, atob, btoa, crypto.getRandomValues / randomUUID, console, timers,
// AbortController, a minimal ReadableStream (host streams for request and R2 bodies, which
// the host can take back untouched); env bindings shaped as Cloudflare documents them
// (KVNamespace, D1Database, DurableObjectNamespace and stubs, R2Bucket); Durable Object state and
// storage; and the dispatch functions the engine calls for each event.
(function () {
  "use strict";
  const native = globalThis.__nimbus;
  const G = globalThis;

  // ---------------------------------------------------------------- helpers

  const isView = (v) => ArrayBuffer.isView(v);

  /** Any body-like value as a Uint8Array (strings as UTF-8). */
  function toBytes(data) {
    if (data === null || data === undefined) return null;
    if (typeof data === "string") return native.utf8Encode(data);
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (data instanceof URLSearchParams) return native.utf8Encode(data.toString());
    return native.utf8Encode(String(data));
  }

  function inspect(value, depth = 0) {
    if (typeof value === "string") return depth === 0 ? value : JSON.stringify(value);
    if (value instanceof Error) return value.stack ? `${value.name}: ${value.message}\n${value.stack}`.trimEnd() : `${value.name}: ${value.message}`;
    if (value === undefined || typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
      return typeof value === "function" ? `[Function ${value.name || "anonymous"}]` : String(value);
    }
    if (value instanceof Map) return `Map(${value.size}) ${inspect(Object.fromEntries(value), depth + 1)}`;
    if (value instanceof Set) return `Set(${value.size}) ${inspect([...value], depth + 1)}`;
    try {
      const seen = new WeakSet();
      return JSON.stringify(value, (k, v) => {
        if (typeof v === "bigint") return `${v}n`;
        if (v && typeof v === "object") {
          if (seen.has(v)) return "[Circular]";
          seen.add(v);
        }
        return v;
      });
    } catch (_) {
      return String(value);
    }
  }

  class DOMException extends Error {
    constructor(message = "", name = "Error") {
      super(message);
      this.name = name;
    }
  }

  // ---------------------------------------------------------------- console

  function logger(level) {
    return (...args) => native.log(level, args.map((a) => inspect(a)).join(" "));
  }
  const console = {
    log: logger("info"),
    info: logger("info"),
    debug: logger("debug"),
    warn: logger("warn"),
    error: logger("error"),
    trace: logger("debug"),
    assert: (condition, ...args) => {
      if (!condition) logger("error")("Assertion failed:", ...args);
    },
  };

  // ---------------------------------------------------------------- timers

  const timers = new Map();
  let nextTimerId = 1;

  function addTimer(fn, ms, args, repeat) {
    if (typeof fn !== "function") throw new TypeError("the callback must be a function");
    const delay = Math.max(0, Number(ms) || 0);
    const id = nextTimerId++;
    timers.set(id, { fn, args, due: Date.now() + delay, repeat: repeat ? Math.max(1, delay) : 0 });
    return id;
  }

  native.nextTimer = function () {
    if (timers.size === 0) return -1;
    let due = Infinity;
    for (const timer of timers.values()) due = Math.min(due, timer.due);
    return Math.max(0, due - Date.now());
  };

  native.runTimers = function () {
    native.sleep(native.nextTimer());
    const now = Date.now();
    const ready = [...timers.entries()].filter(([, t]) => t.due <= now).sort((a, b) => a[1].due - b[1].due);
    for (const [id, timer] of ready) {
      if (!timers.has(id)) continue;
      if (timer.repeat) timer.due = now + timer.repeat;
      else timers.delete(id);
      try {
        timer.fn(...timer.args);
      } catch (e) {
        console.error("Uncaught", e);
      }
    }
  };

  // ---------------------------------------------------------------- randomness

  // Math.random is reseeded in every instance (the snapshot must not hand every instance the
  // same sequence): xoshiro128** seeded from the host's random source on first use.
  let seeded = false;
  const state = new Uint32Array(4);
  function seed() {
    state.set(new Uint32Array(native.randomBytes(16).buffer));
    if ((state[0] | state[1] | state[2] | state[3]) === 0) state[0] = 1;
    seeded = true;
  }
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  Math.random = function random() {
    if (!seeded) seed();
    const result = Math.imul(rotl(Math.imul(state[1], 5), 7), 9) >>> 0;
    const t = state[1] << 9;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 11);
    return result / 4294967296;
  };

  const crypto = {
    getRandomValues(array) {
      if (!isView(array) || array instanceof Float32Array || array instanceof Float64Array || array instanceof DataView) {
        throw new DOMException("getRandomValues needs an integer TypedArray", "TypeMismatchError");
      }
      const bytes = native.randomBytes(array.byteLength);
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(bytes);
      return array;
    },
    randomUUID() {
      const b = native.randomBytes(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    },
  };

  // ---------------------------------------------------------------- text and base64

  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return native.utf8Encode(String(input));
    }
    encodeInto(input, dest) {
      const bytes = native.utf8Encode(String(input));
      const n = Math.min(bytes.length, dest.length);
      dest.set(bytes.subarray(0, n));
      return { read: n === bytes.length ? input.length : native.utf8Decode(bytes.subarray(0, n)).length, written: n };
    }
  }

  class TextDecoder {
    #fatal;
    constructor(label = "utf-8", options = {}) {
      const l = String(label).toLowerCase();
      if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
        throw new RangeError(`TextDecoder: encoding \`${label}\` is not supported (only utf-8)`);
      }
      this.#fatal = Boolean(options.fatal);
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    decode(input) {
      if (input === undefined) return "";
      return native.utf8Decode(toBytes(input), this.#fatal);
    }
  }

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const B64_INDEX = new Map([...B64].map((c, i) => [c, i]));

  function btoa(input) {
    const s = String(input);
    let out = "";
    for (let i = 0; i < s.length; i += 3) {
      const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) throw new DOMException("btoa: the string has characters outside Latin1", "InvalidCharacterError");
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < s.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < s.length ? B64[n & 63] : "=");
    }
    return out;
  }

  function atob(input) {
    let s = String(input).replace(/[\t\n\f\r ]/g, "");
    if (s.length % 4 === 0) s = s.replace(/==?$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) throw new DOMException("atob: the string is not valid base64", "InvalidCharacterError");
    let out = "";
    let bits = 0, value = 0;
    for (const c of s) {
      value = (value << 6) | B64_INDEX.get(c);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += String.fromCharCode((value >> bits) & 255);
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- URL

  const SPECIAL = { "http:": "80", "https:": "443", "ws:": "80", "wss:": "443", "ftp:": "21", "file:": "" };
  const percentEncode = (s, extra) =>
    s.replace(extra ? /[^\x21-\x7E]|["<>`{}#?^|\\ ]/gu : /[^\x21-\x7E]|["<>`{} ]/gu, (c) => (c === "%" ? c : encodeURIComponent(c)));

  function splitTail(s) {
    let hash = "", search = "";
    let i = s.indexOf("#");
    if (i >= 0) {
      hash = s.slice(i);
      s = s.slice(0, i);
    }
    i = s.indexOf("?");
    if (i >= 0) {
      search = s.slice(i);
      s = s.slice(0, i);
    }
    return [s, search, hash];
  }

  function removeDots(path) {
    const out = [];
    const segments = path.split("/");
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      const last = i === segments.length - 1;
      if (seg === "." || seg.toLowerCase() === "%2e") {
        if (last) out.push("");
      } else if (seg === ".." || /^(\.|%2e)(\.|%2e)$/i.test(seg)) {
        if (out.length > 1) out.pop();
        if (last) out.push("");
      } else {
        out.push(seg);
      }
    }
    const joined = out.join("/");
    return joined.startsWith("/") ? joined : "/" + joined;
  }

  class URL {
    #protocol = "";
    #username = "";
    #password = "";
    #hostname = "";
    #port = "";
    #pathname = "";
    #search = "";
    #hash = "";
    #opaque = false;
    #params = null;

    constructor(input, base) {
      const text = String(input).replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, "").replace(/[\t\n\r]/g, "");
      const m = /^([a-zA-Z][a-zA-Z0-9+.\-]*):(.*)$/s.exec(text);
      if (m) {
        this.#parseAbsolute(m[1].toLowerCase() + ":", m[2]);
      } else {
        if (base === undefined) throw new TypeError(`Invalid URL: ${text}`);
        const b = base instanceof URL ? base : new URL(base);
        this.#resolve(b, text);
      }
    }

    static canParse(input, base) {
      try {
        new URL(input, base);
        return true;
      } catch (_) {
        return false;
      }
    }

    #parseAuthority(rest) {
      rest = rest.replace(/\\/g, "/");
      let end = rest.search(/[/?#]/);
      if (end < 0) end = rest.length;
      let authority = rest.slice(0, end);
      const at = authority.lastIndexOf("@");
      if (at >= 0) {
        const userinfo = authority.slice(0, at);
        authority = authority.slice(at + 1);
        const colon = userinfo.indexOf(":");
        this.#username = percentEncode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, true);
        this.#password = colon >= 0 ? percentEncode(userinfo.slice(colon + 1), true) : "";
      }
      const hostPort = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
      if (!hostPort) throw new TypeError(`Invalid URL: bad host \`${authority}\``);
      const host = hostPort[1].toLowerCase();
      if (/[\x00-\x20#%/:<>?@[\\\]^|]/.test(host.replace(/^\[.*\]$/, "")) || (host === "" && this.#protocol !== "file:")) {
        throw new TypeError(`Invalid URL: bad host \`${authority}\``);
      }
      this.#hostname = host;
      const port = hostPort[2] || "";
      if (port !== "" && Number(port) > 65535) throw new TypeError(`Invalid URL: port ${port} is out of range`);
      this.#port = port === "" || String(Number(port)) === SPECIAL[this.#protocol] ? "" : String(Number(port));
      return rest.slice(end);
    }

    #setTail(rest) {
      const [path, search, hash] = splitTail(rest);
      this.#pathname = this.#opaque ? path : removeDots(percentEncode(path || "/", false));
      this.#search = search.length > 1 ? percentEncode(search, false) : "";
      this.#hash = hash.length > 1 ? percentEncode(hash, false) : "";
    }

    #parseAbsolute(protocol, rest) {
      this.#protocol = protocol;
      if (protocol in SPECIAL) {
        rest = rest.replace(/^[/\\]*/, "");
        this.#setTail(this.#parseAuthority(rest));
      } else if (rest.startsWith("//")) {
        this.#setTail(this.#parseAuthority(rest.slice(2)));
      } else {
        this.#opaque = true;
        this.#setTail(rest);
      }
    }

    #resolve(base, text) {
      if (base.#opaque) throw new TypeError(`Invalid URL: \`${text}\` relative to ${base.href}`);
      this.#protocol = base.#protocol;
      if (/^[/\\]{2}/.test(text)) {
        this.#setTail(this.#parseAuthority(text.replace(/^[/\\]*/, "")));
        return;
      }
      this.#username = base.#username;
      this.#password = base.#password;
      this.#hostname = base.#hostname;
      this.#port = base.#port;
      const [path, search, hash] = splitTail(text);
      if (path === "") {
        this.#pathname = base.#pathname;
        this.#search = search ? (search.length > 1 ? percentEncode(search, false) : "") : base.#search;
        this.#hash = hash.length > 1 ? percentEncode(hash, false) : "";
        return;
      }
      const merged = /^[/\\]/.test(path) ? path : base.#pathname.slice(0, base.#pathname.lastIndexOf("/") + 1) + path;
      this.#setTail(merged.replace(/\\/g, "/") + search + hash);
    }

    get protocol() {
      return this.#protocol;
    }
    set protocol(v) {
      const p = String(v).replace(/:.*$/, "").toLowerCase() + ":";
      if (/^[a-z][a-z0-9+.\-]*:$/.test(p) && (p in SPECIAL) === (this.#protocol in SPECIAL)) {
        this.#protocol = p;
        if (this.#port === SPECIAL[p]) this.#port = "";
      }
    }
    get username() {
      return this.#username;
    }
    set username(v) {
      this.#username = percentEncode(String(v), true);
    }
    get password() {
      return this.#password;
    }
    set password(v) {
      this.#password = percentEncode(String(v), true);
    }
    get host() {
      return this.#port ? `${this.#hostname}:${this.#port}` : this.#hostname;
    }
    set host(v) {
      const saved = [this.#hostname, this.#port];
      try {
        this.#parseAuthority(String(v));
      } catch (_) {
        [this.#hostname, this.#port] = saved;
      }
    }
    get hostname() {
      return this.#hostname;
    }
    set hostname(v) {
      const h = String(v).toLowerCase();
      if (h && !/[\x00-\x20#%/:<>?@\\^|]/.test(h)) this.#hostname = h;
    }
    get port() {
      return this.#port;
    }
    set port(v) {
      const p = String(v);
      if (p === "") this.#port = "";
      else if (/^\d+$/.test(p) && Number(p) <= 65535) this.#port = String(Number(p)) === SPECIAL[this.#protocol] ? "" : String(Number(p));
    }
    get pathname() {
      return this.#pathname;
    }
    set pathname(v) {
      if (!this.#opaque) this.#pathname = removeDots(percentEncode(String(v).startsWith("/") ? String(v) : "/" + v, false));
    }
    get search() {
      return this.#search;
    }
    set search(v) {
      const s = String(v).replace(/^\?/, "");
      this.#search = s ? "?" + percentEncode(s, false) : "";
      if (this.#params) this.#params._reset(this.#search);
    }
    get hash() {
      return this.#hash;
    }
    set hash(v) {
      const h = String(v).replace(/^#/, "");
      this.#hash = h ? "#" + percentEncode(h, false) : "";
    }
    get origin() {
      return this.#protocol in SPECIAL && this.#protocol !== "file:" ? `${this.#protocol}//${this.host}` : "null";
    }
    get searchParams() {
      if (!this.#params) {
        this.#params = new URLSearchParams(this.#search);
        this.#params._attach((s) => {
          this.#search = s ? "?" + s : "";
        });
      }
      return this.#params;
    }
    get href() {
      const auth = this.#opaque ? "" : "//" + (this.#username || this.#password ? this.#username + (this.#password ? ":" + this.#password : "") + "@" : "") + this.host;
      return this.#protocol + auth + this.#pathname + this.#search + this.#hash;
    }
    set href(v) {
      const u = new URL(v);
      this.#protocol = u.#protocol;
      this.#username = u.#username;
      this.#password = u.#password;
      this.#hostname = u.#hostname;
      this.#port = u.#port;
      this.#pathname = u.#pathname;
      this.#search = u.#search;
      this.#hash = u.#hash;
      this.#opaque = u.#opaque;
      if (this.#params) this.#params._reset(this.#search);
    }
    toString() {
      return this.href;
    }
    toJSON() {
      return this.href;
    }
  }

  const formDecode = (s) => {
    const t = s.replace(/\+/g, " ");
    try {
      return decodeURIComponent(t);
    } catch (_) {
      return t;
    }
  };
  const formEncode = (s) => encodeURIComponent(s).replace(/%20/g, "+").replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());

  class URLSearchParams {
    #list = [];
    #update = null;

    constructor(init = "") {
      if (init instanceof URLSearchParams) {
        this.#list = init.#list.map(([k, v]) => [k, v]);
      } else if (typeof init === "object" && init !== null) {
        if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const [k, v, ...extra] = [...pair];
            if (extra.length || v === undefined) throw new TypeError("URLSearchParams: each pair must have exactly two items");
            this.#list.push([String(k), String(v)]);
          }
        } else {
          for (const k of Object.keys(init)) this.#list.push([k, String(init[k])]);
        }
      } else {
        this._reset(String(init));
      }
    }

    _attach(update) {
      this.#update = update;
    }
    _reset(query) {
      this.#list = [];
      for (const part of String(query).replace(/^\?/, "").split("&")) {
        if (!part) continue;
        const eq = part.indexOf("=");
        this.#list.push(eq >= 0 ? [formDecode(part.slice(0, eq)), formDecode(part.slice(eq + 1))] : [formDecode(part), ""]);
      }
    }
    #changed() {
      if (this.#update) this.#update(this.toString());
    }

    get size() {
      return this.#list.length;
    }
    append(name, value) {
      this.#list.push([String(name), String(value)]);
      this.#changed();
    }
    delete(name, value) {
      const n = String(name);
      this.#list = this.#list.filter(([k, v]) => k !== n || (value !== undefined && v !== String(value)));
      this.#changed();
    }
    get(name) {
      const found = this.#list.find(([k]) => k === String(name));
      return found ? found[1] : null;
    }
    getAll(name) {
      return this.#list.filter(([k]) => k === String(name)).map(([, v]) => v);
    }
    has(name, value) {
      return this.#list.some(([k, v]) => k === String(name) && (value === undefined || v === String(value)));
    }
    set(name, value) {
      const n = String(name);
      const i = this.#list.findIndex(([k]) => k === n);
      if (i < 0) this.#list.push([n, String(value)]);
      else {
        this.#list[i] = [n, String(value)];
        this.#list = this.#list.filter(([k], j) => k !== n || j === i);
      }
      this.#changed();
    }
    sort() {
      this.#list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      this.#changed();
    }
    forEach(fn, thisArg) {
      for (const [k, v] of this.#list) fn.call(thisArg, v, k, this);
    }
    *entries() {
      for (const [k, v] of this.#list) yield [k, v];
    }
    *keys() {
      for (const [k] of this.#list) yield k;
    }
    *values() {
      for (const [, v] of this.#list) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return this.#list.map(([k, v]) => formEncode(k) + "=" + formEncode(v)).join("&");
    }
  }

  // ---------------------------------------------------------------- Headers

  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

  class Headers {
    #map = new Map(); // lower-case name -> [values]

    constructor(init) {
      if (init === undefined || init === null) return;
      if (init instanceof Headers) {
        for (const [k, v] of init.#map) this.#map.set(k, v.slice());
      } else if (Array.isArray(init) || typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const [k, v, ...extra] = [...pair];
          if (extra.length || v === undefined) throw new TypeError("Headers: each header must be a [name, value] pair");
          this.append(k, v);
        }
      } else {
        for (const k of Object.keys(init)) this.append(k, init[k]);
      }
    }

    /** Trusted pairs from the host: no validation. */
    static _fromPairs(pairs) {
      const h = new Headers();
      const map = h.#map;
      for (let i = 0; i < pairs.length; i++) {
        const name = pairs[i][0].toLowerCase();
        const values = map.get(name);
        if (values) values.push(pairs[i][1]);
        else map.set(name, [pairs[i][1]]);
      }
      return h;
    }

    _pairs() {
      const out = [];
      for (const [k, values] of this.#map) for (const v of values) out.push([k, v]);
      return out;
    }

    static #name(name) {
      const n = String(name);
      if (!TOKEN.test(n)) throw new TypeError(`Headers: invalid header name \`${n}\``);
      return n.toLowerCase();
    }
    static #value(value) {
      const v = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
      if (/[\0\r\n]/.test(v)) throw new TypeError("Headers: invalid header value");
      return v;
    }

    append(name, value) {
      const n = Headers.#name(name);
      const v = Headers.#value(value);
      const values = this.#map.get(n);
      if (values) values.push(v);
      else this.#map.set(n, [v]);
    }
    set(name, value) {
      this.#map.set(Headers.#name(name), [Headers.#value(value)]);
    }
    get(name) {
      const values = this.#map.get(String(name).toLowerCase());
      return values ? values.join(", ") : null;
    }
    getAll(name) {
      return (this.#map.get(String(name).toLowerCase()) || []).slice();
    }
    getSetCookie() {
      return this.getAll("set-cookie");
    }
    has(name) {
      return this.#map.has(String(name).toLowerCase());
    }
    delete(name) {
      this.#map.delete(String(name).toLowerCase());
    }
    forEach(fn, thisArg) {
      for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
    }
    *entries() {
      for (const k of [...this.#map.keys()].sort()) {
        if (k === "set-cookie") for (const v of this.#map.get(k)) yield [k, v];
        else yield [k, this.#map.get(k).join(", ")];
      }
    }
    *keys() {
      for (const [k] of this.entries()) yield k;
    }
    *values() {
      for (const [, v] of this.entries()) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
  }

  // ---------------------------------------------------------------- streams (minimal)

  /** Enough of ReadableStream for bodies: chunks enqueued, read in order. */
  class ReadableStream {
    #chunks = [];
    #closed = false;
    #waiting = [];
    #error = null;
    locked = false;

    constructor(source = {}) {
      const controller = {
        enqueue: (chunk) => {
          this.#chunks.push(chunk);
          this.#wake();
        },
        close: () => {
          this.#closed = true;
          this.#wake();
        },
        error: (e) => {
          this.#error = e;
          this.#wake();
        },
      };
      this._controller = controller;
      if (source.start) source.start(controller);
      this._pull = source.pull ? () => source.pull(controller) : null;
    }

    #wake() {
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const resolve of waiting) resolve();
    }

    async _read() {
      this._disturbed = true;
      for (;;) {
        if (this.#error) throw this.#error;
        if (this.#chunks.length) return { value: this.#chunks.shift(), done: false };
        if (this.#closed) return { value: undefined, done: true };
        if (this._pull) await this._pull();
        else await new Promise((resolve) => this.#waiting.push(resolve));
      }
    }

    getReader() {
      if (this.locked) throw new TypeError("ReadableStream is locked");
      this.locked = true;
      return {
        read: () => this._read(),
        releaseLock: () => {
          this.locked = false;
        },
        cancel: async () => {
          this.#closed = true;
          this.#chunks = [];
          if (this._host !== undefined) native.streamClose(this._host);
        },
        closed: Promise.resolve(),
      };
    }

    async *[Symbol.asyncIterator]() {
      const reader = this.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        yield value;
      }
    }

    /** The handle of a host stream nobody has read from: the host can take it as it is. */
    _untouchedHost() {
      return this._host !== undefined && !this._disturbed && !this.locked ? this._host : undefined;
    }

    /** Two streams with this one's chunks (each chunk read once from here). */
    tee() {
      const reader = this.getReader();
      const queues = [[], []];
      let done = false;
      let failure = null;
      let reading = null;
      const fill = () =>
        (reading ||= reader.read().then(
          ({ value, done: end }) => {
            reading = null;
            if (end) done = true;
            else for (const q of queues) q.push(value);
          },
          (e) => {
            reading = null;
            failure = e;
          },
        ));
      const branch = (i) =>
        new ReadableStream({
          async pull(c) {
            if (!queues[i].length && !done && !failure) await fill();
            if (queues[i].length) c.enqueue(queues[i].shift());
            else if (failure) c.error(failure);
            else if (done) c.close();
          },
        });
      return [branch(0), branch(1)];
    }

    /** A stream the host fills (a request's body, an R2 object's): read in slices on demand. */
    static _host(handle, length) {
      const stream = new ReadableStream({
        pull(c) {
          const chunk = native.streamRead(handle, 256 * 1024);
          if (chunk === null) c.close();
          else c.enqueue(chunk);
        },
      });
      stream._host = handle;
      stream._length = length === null || length === undefined ? undefined : length;
      return stream;
    }

    static _of(bytes) {
      return new ReadableStream({
        start(c) {
          c.enqueue(bytes);
          c.close();
        },
      });
    }
  }

  async function drain(stream) {
    const parts = [];
    let total = 0;
    const reader = stream.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const bytes = toBytes(value);
      parts.push(bytes);
      total += bytes.length;
    }
    const out = new Uint8Array(total);
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
  }

  // ---------------------------------------------------------------- Body, Request, Response

  /** The body of a Request or Response: a string, bytes, a stream, or nothing. */
  class Body {
    #source;
    #used = false;

    _initBody(body, headers) {
      if (body === undefined || body === null) {
        this.#source = null;
        return;
      }
      if (typeof body === "string") {
        if (!headers.has("content-type")) headers.set("content-type", "text/plain;charset=UTF-8");
        this.#source = body;
      } else if (body instanceof URLSearchParams) {
        if (!headers.has("content-type")) headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
        this.#source = body.toString();
      } else if (body instanceof ReadableStream) {
        this.#source = body;
      } else if (body instanceof ArrayBuffer || isView(body)) {
        this.#source = toBytes(body).slice();
      } else {
        this.#source = String(body);
        if (!headers.has("content-type")) headers.set("content-type", "text/plain;charset=UTF-8");
      }
    }

    get bodyUsed() {
      return this.#used;
    }
    get body() {
      const s = this.#source;
      if (s === null) return null;
      if (s instanceof ReadableStream) return s;
      this.#source = ReadableStream._of(typeof s === "string" ? native.utf8Encode(s) : s);
      return this.#source;
    }

    #take() {
      if (this.#used) throw new TypeError("Body has already been used");
      this.#used = true;
      return this.#source;
    }

    /** The body as bytes (or null), for the host. */
    async _bytes() {
      const s = this.#take();
      if (s === null) return null;
      if (typeof s === "string") return native.utf8Encode(s);
      if (s instanceof ReadableStream) return drain(s);
      return s;
    }
    /** Sync fast path for the host when the body is not a stream. */
    _bytesNow() {
      const s = this.#source;
      if (s instanceof ReadableStream) return undefined;
      this.#used = true;
      if (s === null) return null;
      return typeof s === "string" ? native.utf8Encode(s) : s;
    }
    _peek() {
      return this.#source;
    }
    /** For clone(): the source itself, or, for a stream, one of two tees (the other stays). */
    _cloneSource() {
      if (!(this.#source instanceof ReadableStream)) return this.#source;
      const [mine, theirs] = this.#source.tee();
      this.#source = mine;
      return theirs;
    }
    /** `{stream, length}` when the body is an untouched host stream (marked used), else undefined. */
    _takeHost() {
      const s = this.#source;
      if (this.#used || !(s instanceof ReadableStream)) return undefined;
      const handle = s._untouchedHost();
      if (handle === undefined) return undefined;
      this.#used = true;
      return { stream: handle, length: s._length === undefined ? null : s._length };
    }

    async text() {
      const s = this.#take();
      if (s === null) return "";
      if (typeof s === "string") return s;
      return native.utf8Decode(s instanceof ReadableStream ? await drain(s) : s);
    }
    async json() {
      return JSON.parse(await this.text());
    }
    async arrayBuffer() {
      const bytes = await this._bytes();
      if (bytes === null) return new ArrayBuffer(0);
      return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    }
    async bytes() {
      return new Uint8Array(await this.arrayBuffer());
    }
    async formData() {
      throw new TypeError("formData() is not supported by Nimbus yet; parse the body with text() and URLSearchParams");
    }
    async blob() {
      throw new TypeError("blob() is not supported by Nimbus yet; use arrayBuffer()");
    }
  }

  const INCOMING = Symbol("incoming");
  const METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"];

  class Request extends Body {
    #url;
    #method;
    #headers;
    #cf;
    #signal;
    #redirect;

    constructor(input, init = {}) {
      super();
      if (input === INCOMING) {
        this.#initIncoming(...init);
        return;
      }
      let source = null;
      if (input instanceof Request) {
        source = input;
        this.#url = input.url;
      } else {
        this.#url = String(input instanceof URL ? input.href : new URL(String(input)).href);
      }
      const method = init.method !== undefined ? String(init.method) : source ? source.method : "GET";
      this.#method = METHODS.includes(method.toUpperCase()) ? method.toUpperCase() : method;
      this.#headers = new Headers(init.headers !== undefined ? init.headers : source ? source.headers : undefined);
      this.#cf = init.cf !== undefined ? init.cf : source ? source.cf : undefined;
      this.#signal = init.signal || (source ? source.signal : new AbortSignal());
      this.#redirect = init.redirect || (source ? source.redirect : "follow");
      // A body taken from another Request moves with it (clone() is what tees).
      let body = init.body !== undefined ? init.body : source ? source._peek() : null;
      if (body !== null && body !== undefined && (this.#method === "GET" || this.#method === "HEAD")) {
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      }
      this._initBody(body, this.#headers);
    }

    /** A request from the host: trusted parts, no parsing. */
    static _incoming(method, url, pairs, body) {
      return new Request(INCOMING, [method, url, pairs, body]);
    }
    #initIncoming(method, url, pairs, body) {
      this.#url = url;
      this.#method = method;
      this.#headers = Headers._fromPairs(pairs);
      const colo = this.#headers.get("x-nimbus-colo");
      this.#cf = colo ? { colo } : {};
      this.#signal = null;
      this.#redirect = "manual";
      if (body !== null && !(body instanceof Uint8Array) && typeof body === "object") body = ReadableStream._host(body.stream, body.length);
      this._initBody(body, this.#headers);
    }

    get url() {
      return this.#url;
    }
    get method() {
      return this.#method;
    }
    get headers() {
      return this.#headers;
    }
    get cf() {
      return this.#cf;
    }
    get signal() {
      return this.#signal || (this.#signal = new AbortSignal());
    }
    get redirect() {
      return this.#redirect;
    }
    clone() {
      if (this.bodyUsed) throw new TypeError("Cannot clone a Request whose body was used");
      return new Request(this, { body: this._cloneSource() });
    }
  }
  const STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
  };

  class Response extends Body {
    #status;
    #statusText;
    #headers;
    #webSocket;
    #url = "";

    constructor(body = null, init = {}) {
      super();
      const status = init.status === undefined ? 200 : Number(init.status);
      if (!(status === 101 && init.webSocket) && !(Number.isInteger(status) && status >= 200 && status <= 599)) {
        throw new RangeError(`Response: status ${init.status} is not in the range 200 to 599`);
      }
      if (body !== null && (status === 204 || status === 205 || status === 304)) {
        throw new TypeError(`Response with null body status ${status} cannot have body`);
      }
      this.#status = status;
      this.#statusText = init.statusText !== undefined ? String(init.statusText) : STATUS_TEXT[status] || "";
      this.#headers = init.headers instanceof Headers ? new Headers(init.headers) : new Headers(init.headers);
      this.#webSocket = init.webSocket || null;
      this._initBody(body, this.#headers);
    }

    static json(data, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(JSON.stringify(data), { ...init, headers });
    }
    static redirect(url, status = 302) {
      if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError(`Response.redirect: invalid status ${status}`);
      return new Response(null, { status, headers: { location: new URL(String(url)).href } });
    }
    static error() {
      const r = new Response(null, { status: 500 });
      r.#statusText = "";
      return r;
    }

    get status() {
      return this.#status;
    }
    get statusText() {
      return this.#statusText;
    }
    get ok() {
      return this.#status >= 200 && this.#status < 300;
    }
    get headers() {
      return this.#headers;
    }
    get redirected() {
      return false;
    }
    get url() {
      return this.#url;
    }
    get type() {
      return "default";
    }
    get webSocket() {
      return this.#webSocket;
    }
    _setUrl(url) {
      this.#url = url;
      return this;
    }
    clone() {
      if (this.bodyUsed) throw new TypeError("Cannot clone a Response whose body was used");
      return new Response(this._cloneSource(), { status: this.#status, statusText: this.#statusText, headers: this.#headers });
    }
  }

  /**
   * What the host sends: status, header pairs, and bytes, or (`streaming`, the top-level
   * fetch) an untouched host stream for the host to splice into the response.
   */
  async function toReply(response, what, streaming = false) {
    if (!(response instanceof Response)) {
      throw new TypeError(`${what} returned ${response === undefined ? "undefined" : inspect(response)}, not a Response`);
    }
    const host = streaming ? response._takeHost() : undefined;
    if (host !== undefined) {
      const headers = response.headers._pairs();
      return { status: response.status, headers, body: null, stream: host.stream };
    }
    let body = response._bytesNow();
    if (body === undefined) body = await response._bytes();
    return { status: response.status, headers: response.headers._pairs(), body };
  }

  // ---------------------------------------------------------------- AbortController

  class AbortSignal {
    aborted = false;
    reason = undefined;
    #listeners = [];
    onabort = null;
    addEventListener(type, fn) {
      if (type === "abort") this.#listeners.push(fn);
    }
    removeEventListener(type, fn) {
      this.#listeners = this.#listeners.filter((f) => f !== fn);
    }
    throwIfAborted() {
      if (this.aborted) throw this.reason;
    }
    _abort(reason) {
      if (this.aborted) return;
      this.aborted = true;
      this.reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      const event = { type: "abort", target: this };
      if (this.onabort) this.onabort(event);
      for (const fn of this.#listeners) fn(event);
    }
    static abort(reason) {
      const s = new AbortSignal();
      s._abort(reason);
      return s;
    }
    static timeout(ms) {
      const s = new AbortSignal();
      setTimeout(() => s._abort(new DOMException("The operation timed out", "TimeoutError")), ms);
      return s;
    }
  }

  class AbortController {
    signal = new AbortSignal();
    abort(reason) {
      this.signal._abort(reason);
    }
  }

  // ---------------------------------------------------------------- fetch

  async function fetch(input, init = {}) {
    const request = new Request(input, init);
    if (request.signal && request.signal.aborted) throw request.signal.reason;
    const body = await request._bytes();
    const r = native.fetch(request.method, request.url, request.headers._pairs(), body);
    const response = new Response(r.body.length || ![204, 205, 304].includes(r.status) ? r.body : null, {
      status: r.status === 101 ? 200 : r.status,
      headers: Headers._fromPairs(r.headers),
    });
    return response._setUrl(request.url);
  }

  // ---------------------------------------------------------------- KV

  const kvValue = (bytes, type) => {
    switch (type) {
      case "text":
        return native.utf8Decode(bytes);
      case "json":
        return JSON.parse(native.utf8Decode(bytes));
      case "arrayBuffer":
        return bytes.buffer;
      case "stream":
        return ReadableStream._of(bytes);
      default:
        throw new TypeError(`KV: unknown type \`${type}\` (text, json, arrayBuffer or stream)`);
    }
  };
  const kvType = (options) => (typeof options === "string" ? options : (options && options.type) || "text");
  const parseMetadata = (m) => (m === null || m === undefined ? null : JSON.parse(m));

  class KVNamespace {
    #binding;
    constructor(binding) {
      this.#binding = binding;
    }
    async get(key, options) {
      const type = kvType(options);
      if (Array.isArray(key)) {
        const out = new Map();
        for (const k of key) out.set(k, await this.get(k, type));
        return out;
      }
      const entry = native.kvGet(this.#binding, String(key));
      return entry === null ? null : kvValue(entry.value, type);
    }
    async getWithMetadata(key, options) {
      const type = kvType(options);
      if (Array.isArray(key)) {
        const out = new Map();
        for (const k of key) out.set(k, await this.getWithMetadata(k, type));
        return out;
      }
      const entry = native.kvGet(this.#binding, String(key));
      if (entry === null) return { value: null, metadata: null, cacheStatus: null };
      return { value: kvValue(entry.value, type), metadata: parseMetadata(entry.metadata), cacheStatus: null };
    }
    async put(key, value, options = {}) {
      let bytes;
      if (value instanceof ReadableStream) bytes = await drain(value);
      else if (typeof value === "string" || value instanceof ArrayBuffer || isView(value)) bytes = toBytes(value);
      else throw new TypeError("KV put() accepts only strings, ArrayBuffers, ArrayBufferViews and ReadableStreams");
      const metadata = options.metadata === undefined ? null : JSON.stringify(options.metadata);
      native.kvPut(
        this.#binding,
        String(key),
        bytes,
        options.expiration === undefined ? null : Number(options.expiration),
        options.expirationTtl === undefined ? null : Number(options.expirationTtl),
        metadata,
      );
    }
    async delete(key) {
      native.kvDelete(this.#binding, String(key));
    }
    async list(options = {}) {
      const r = native.kvList(
        this.#binding,
        options.prefix === undefined || options.prefix === null ? null : String(options.prefix),
        options.limit === undefined ? null : Number(options.limit),
        options.cursor === undefined || options.cursor === null ? null : String(options.cursor),
      );
      const keys = r.keys.map((k) => {
        const key = { name: k.name };
        if (k.expiration !== undefined) key.expiration = k.expiration;
        if (k.metadata !== null && k.metadata !== undefined) key.metadata = JSON.parse(k.metadata);
        return key;
      });
      const result = { keys, list_complete: r.list_complete, cacheStatus: null };
      if (!r.list_complete && r.cursor) result.cursor = r.cursor;
      return result;
    }
  }

  // ---------------------------------------------------------------- R2

  const HTTP_FIELDS = [
    ["contentType", "content-type"],
    ["contentLanguage", "content-language"],
    ["contentDisposition", "content-disposition"],
    ["contentEncoding", "content-encoding"],
    ["cacheControl", "cache-control"],
    ["cacheExpiry", "expires"],
  ];
  const toHex = (bytes) => [...bytes].map((x) => x.toString(16).padStart(2, "0")).join("");
  const fromHex = (text, what) => {
    if (!/^([0-9a-fA-F]{2})*$/.test(text)) throw new TypeError(`R2: ${what} must be hex or an ArrayBuffer`);
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
    return out;
  };
  const digestOf = (value, what) =>
    value === undefined || value === null ? null : typeof value === "string" ? fromHex(value, what) : toBytes(value).slice();
  const seconds = (date) => (date === undefined || date === null ? null : Math.floor(new Date(date).getTime() / 1000));

  /** `httpMetadata` as given to put: an object of R2's field names, or Headers. */
  function httpMetadataOf(value) {
    const out = {};
    if (value === undefined || value === null) return out;
    for (const [field, header] of HTTP_FIELDS) {
      let v = value instanceof Headers ? value.get(header) : value[field];
      if (v === undefined || v === null) continue;
      if (field === "cacheExpiry" && v instanceof Date) v = v.toUTCString();
      out[field] = String(v);
    }
    return out;
  }

  /** `onlyIf`: an R2Conditional, or Headers with If-Match and its kin. */
  function conditionsOf(value) {
    if (value === undefined || value === null) return null;
    if (value instanceof Headers) {
      const date = (name) => {
        const v = value.get(name);
        return v === null ? null : seconds(v);
      };
      return {
        etagMatches: value.get("if-match"),
        etagDoesNotMatch: value.get("if-none-match"),
        uploadedBefore: date("if-unmodified-since"),
        uploadedAfter: date("if-modified-since"),
      };
    }
    return {
      etagMatches: value.etagMatches === undefined ? null : String(value.etagMatches),
      etagDoesNotMatch: value.etagDoesNotMatch === undefined ? null : String(value.etagDoesNotMatch),
      uploadedBefore: seconds(value.uploadedBefore),
      uploadedAfter: seconds(value.uploadedAfter),
    };
  }

  /** `range`: {offset, length}, {offset}, {length}, {suffix}, or Headers with Range. */
  function rangeOf(value) {
    if (value === undefined || value === null) return null;
    if (value instanceof Headers) return value.get("range");
    const n = (v, what) => {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 0) throw new RangeError(`R2 get: range.${what} must be a whole number ≥ 0`);
      return x;
    };
    if (value.suffix !== undefined) return `bytes=-${n(value.suffix, "suffix")}`;
    const offset = value.offset === undefined ? 0 : n(value.offset, "offset");
    if (value.length === undefined) return `bytes=${offset}-`;
    const length = n(value.length, "length");
    if (length === 0) throw new RangeError("R2 get: range.length must be at least 1");
    return `bytes=${offset}-${offset + length - 1}`;
  }

  /** A put's value: bytes, or `{stream}` when it is a host stream the host can read itself. */
  async function r2Body(value, what) {
    if (value === undefined || value === null) return new Uint8Array(0);
    if (typeof value === "string") return native.utf8Encode(value);
    if (value instanceof ArrayBuffer || isView(value)) return toBytes(value);
    if (value instanceof ReadableStream) {
      const handle = value._untouchedHost();
      if (handle !== undefined) {
        value.locked = true;
        return { stream: handle };
      }
      return drain(value);
    }
    if (value instanceof Body) return r2Body(value.body, what);
    throw new TypeError(`${what} takes a ReadableStream, ArrayBuffer, ArrayBufferView, string or null`);
  }

  class R2Checksums {
    constructor(md5, sha256) {
      if (md5) this.md5 = md5.slice().buffer;
      if (sha256) this.sha256 = sha256.slice().buffer;
    }
    toJSON() {
      const out = {};
      if (this.md5) out.md5 = toHex(new Uint8Array(this.md5));
      if (this.sha256) out.sha256 = toHex(new Uint8Array(this.sha256));
      return out;
    }
  }

  class R2Object {
    constructor(o, range, include = ["httpMetadata", "customMetadata"]) {
      this.key = o.key;
      this.version = o.version;
      this.size = o.size;
      this.etag = o.etag;
      this.httpEtag = `"${o.etag}"`;
      this.uploaded = new Date(o.uploaded);
      if (include.includes("httpMetadata")) {
        const http = { ...o.httpMetadata };
        if (http.cacheExpiry !== undefined) http.cacheExpiry = new Date(http.cacheExpiry);
        this.httpMetadata = http;
      }
      if (include.includes("customMetadata")) this.customMetadata = o.customMetadata;
      if (range) this.range = range;
      this.checksums = new R2Checksums(o.md5, o.sha256);
      this.storageClass = "Standard";
    }
    writeHttpMetadata(headers) {
      for (const [field, header] of HTTP_FIELDS) {
        const v = this.httpMetadata && this.httpMetadata[field];
        if (v === undefined || v === null) continue;
        headers.set(header, v instanceof Date ? v.toUTCString() : String(v));
      }
    }
  }

  class R2ObjectBody extends R2Object {
    #body;
    constructor(o, range, stream) {
      super(o, range);
      this.#body = new Response(stream);
    }
    get body() {
      return this.#body.body;
    }
    get bodyUsed() {
      return this.#body.bodyUsed;
    }
    arrayBuffer() {
      return this.#body.arrayBuffer();
    }
    bytes() {
      return this.#body.bytes();
    }
    text() {
      return this.#body.text();
    }
    json() {
      return this.#body.json();
    }
    blob() {
      return this.#body.blob();
    }
  }

  class R2MultipartUpload {
    #binding;
    constructor(binding, key, uploadId) {
      this.#binding = binding;
      this.key = key;
      this.uploadId = uploadId;
    }
    async uploadPart(partNumber, value) {
      const body = await r2Body(value, "R2MultipartUpload.uploadPart()");
      return native.r2UploadPart(this.#binding, this.key, this.uploadId, Number(partNumber), body);
    }
    async abort() {
      native.r2Abort(this.#binding, this.key, this.uploadId);
    }
    async complete(uploadedParts) {
      const parts = [...uploadedParts].map((p) => ({ partNumber: Number(p.partNumber), etag: String(p.etag) }));
      return new R2Object(native.r2Complete(this.#binding, this.key, this.uploadId, parts));
    }
  }

  class R2Bucket {
    #binding;
    constructor(binding) {
      this.#binding = binding;
    }
    async head(key) {
      const o = native.r2Head(this.#binding, String(key));
      return o === null ? null : new R2Object(o);
    }
    async get(key, options = {}) {
      const r = native.r2Get(this.#binding, String(key), conditionsOf(options.onlyIf), rangeOf(options.range));
      if (r === null) return null;
      if (r.unmet) return new R2Object(r.object);
      return new R2ObjectBody(r.object, r.range, ReadableStream._host(r.stream, r.range ? r.range.length : r.object.size));
    }
    async put(key, value, options = {}) {
      const body = await r2Body(value, "R2Bucket.put()");
      const custom = Object.entries(options.customMetadata || {}).map(([k, v]) => [String(k), String(v)]);
      const o = native.r2Put(this.#binding, String(key), body, {
        httpMetadata: httpMetadataOf(options.httpMetadata),
        customMetadata: custom,
        onlyIf: conditionsOf(options.onlyIf),
        md5: digestOf(options.md5, "md5"),
        sha256: digestOf(options.sha256, "sha256"),
        length: value instanceof ReadableStream && value._length !== undefined ? value._length : null,
      });
      return o === null ? null : new R2Object(o);
    }
    async delete(keys) {
      const list = Array.isArray(keys) ? keys.map(String) : [String(keys)];
      native.r2Delete(this.#binding, list);
    }
    async list(options = {}) {
      const opt = (v) => (v === undefined || v === null ? null : String(v));
      const r = native.r2List(this.#binding, {
        prefix: opt(options.prefix),
        cursor: opt(options.cursor),
        delimiter: opt(options.delimiter),
        startAfter: opt(options.startAfter),
        limit: options.limit === undefined ? null : Number(options.limit),
      });
      const include = options.include || [];
      const result = {
        objects: r.objects.map((o) => new R2Object(o, undefined, include)),
        truncated: r.truncated,
        delimitedPrefixes: r.delimitedPrefixes,
      };
      if (r.truncated && r.cursor) result.cursor = r.cursor;
      return result;
    }
    async createMultipartUpload(key, options = {}) {
      const custom = Object.entries(options.customMetadata || {}).map(([k, v]) => [String(k), String(v)]);
      const id = native.r2CreateMultipart(this.#binding, String(key), httpMetadataOf(options.httpMetadata), custom);
      return new R2MultipartUpload(this.#binding, String(key), id);
    }
    resumeMultipartUpload(key, uploadId) {
      return new R2MultipartUpload(this.#binding, String(key), String(uploadId));
    }
  }

  // ---------------------------------------------------------------- D1

  const d1Params = (values) => values.map((v) => (v instanceof ArrayBuffer || (isView(v) && !(v instanceof Uint8Array)) ? toBytes(v) : v));

  function d1Result(r) {
    const results = r.rows.map((row) => {
      const obj = {};
      for (let i = 0; i < r.columns.length; i++) obj[r.columns[i]] = row[i];
      return obj;
    });
    return {
      success: true,
      results,
      meta: {
        served_by: r.meta.served_by,
        served_by_region: r.meta.served_by_region,
        served_by_primary: r.meta.served_by_primary,
        duration: r.meta.duration,
        changes: r.meta.changes,
        last_row_id: r.meta.last_row_id,
        changed_db: r.meta.changes > 0,
        rows_read: r.rows.length,
        rows_written: r.meta.changes,
      },
    };
  }

  class D1PreparedStatement {
    #db;
    #sql;
    #params;
    constructor(db, sql, params = []) {
      this.#db = db;
      this.#sql = sql;
      this.#params = params;
    }
    bind(...values) {
      for (const v of values) {
        if (v === undefined) throw new TypeError("D1_TYPE_ERROR: Type 'undefined' not supported for value 'undefined'");
      }
      return new D1PreparedStatement(this.#db, this.#sql, d1Params(values));
    }
    _parts() {
      return [this.#sql, this.#params];
    }
    _run() {
      return this.#db._query(this.#sql, this.#params);
    }
    async first(column) {
      const r = this._run();
      if (r.rows.length === 0) return null;
      const row = d1Result(r).results[0];
      if (column === undefined) return row;
      if (!(column in row)) throw new Error(`D1_COLUMN_NOTFOUND: Column not found (${column})`);
      return row[column];
    }
    async all() {
      return d1Result(this._run());
    }
    async run() {
      return d1Result(this._run());
    }
    async raw(options = {}) {
      const r = this._run();
      return options.columnNames ? [r.columns, ...r.rows] : r.rows;
    }
  }

  /** The newer of two bookmarks (decimal commit indexes), either of which may be null. */
  function newerBookmark(a, b) {
    if (a == null) return b;
    if (b == null) return a;
    return BigInt(b) > BigInt(a) ? b : a;
  }

  /**
   * `env.DB`. Without a session every query has primary semantics, as on Cloudflare: the
   * leader runs it after confirming it leads, so it sees every write acknowledged before,
   * whichever node took it. `withSession` opens a session that may read nearby replicas.
   */
  class D1Database {
    #binding;
    constructor(binding) {
      this.#binding = binding;
    }
    /** How the next query reads: [consistency, bookmark]. */
    _level() {
      return ["primary", null];
    }
    /** Notes the bookmark of a result (a session advances to it). */
    _seen(_bookmark) {}
    _query(sql, params) {
      const [consistency, bookmark] = this._level();
      const r = native.d1Query(this.#binding, sql, params, consistency, bookmark);
      this._seen(r.bookmark);
      return r;
    }
    prepare(sql) {
      return new D1PreparedStatement(this, String(sql));
    }
    async batch(statements) {
      if (!Array.isArray(statements)) throw new TypeError("D1 batch() takes an array of prepared statements");
      const parts = statements.map((s) => {
        if (!(s instanceof D1PreparedStatement)) throw new TypeError("D1 batch() takes prepared statements only");
        return s._parts();
      });
      const [consistency, bookmark] = this._level();
      const results = native.d1Batch(this.#binding, parts, consistency, bookmark);
      for (const r of results) this._seen(r.bookmark);
      return results.map(d1Result);
    }
    async exec(sql) {
      const start = Date.now();
      const count = native.d1Exec(this.#binding, String(sql));
      return { count, duration: Date.now() - start };
    }
    /**
     * A session (Cloudflare's D1 Sessions API): `"first-unconstrained"` (the default) lets the
     * first query read this node's replica as it is, `"first-primary"` gives it primary
     * semantics, a bookmark makes it see at least that state. Every later query sees at least
     * what the previous ones saw.
     */
    withSession(constraint = "first-unconstrained") {
      return new D1DatabaseSession(this.#binding, constraint);
    }
    async dump() {
      throw new Error("D1 dump() is not supported; use `nimbus d1 export`");
    }
  }

  /** A session: sequentially consistent reads, from whichever replica can serve them. */
  class D1DatabaseSession extends D1Database {
    #consistency;
    #bookmark;
    constructor(binding, constraint) {
      super(binding);
      if (constraint === "first-unconstrained") {
        this.#consistency = "local";
        this.#bookmark = null;
      } else if (constraint === "first-primary") {
        this.#consistency = "primary";
        this.#bookmark = null;
      } else if (typeof constraint === "string" && /^[0-9]{1,20}$/.test(constraint)) {
        this.#consistency = "bookmark";
        this.#bookmark = constraint;
      } else {
        throw new TypeError(`D1 withSession(): \`${String(constraint)}\` is neither "first-unconstrained", "first-primary" nor a bookmark`);
      }
    }
    _level() {
      return [this.#consistency, this.#bookmark];
    }
    _seen(bookmark) {
      if (bookmark) {
        this.#bookmark = newerBookmark(this.#bookmark, bookmark);
        this.#consistency = "bookmark";
      }
    }
    /** The newest bookmark this session has seen (null before its first query). */
    getBookmark() {
      return this.#bookmark;
    }
  }

  // ---------------------------------------------------------------- Durable Objects: stubs

  class DurableObjectId {
    #hex;
    #name;
    constructor(hex, name) {
      this.#hex = hex;
      this.#name = name;
    }
    get name() {
      return this.#name;
    }
    toString() {
      return this.#hex;
    }
    equals(other) {
      return String(other) === this.#hex;
    }
  }

  class DurableObjectStub {
    #binding;
    #id;
    constructor(binding, id) {
      this.#binding = binding;
      this.#id = id;
    }
    get id() {
      return this.#id;
    }
    get name() {
      return this.#id.name;
    }
    async fetch(input, init) {
      const absolute = typeof input === "string" && !/^[a-zA-Z][a-zA-Z0-9+.\-]*:/.test(input) ? new URL(input, "https://durable-object/").href : input;
      const request = new Request(absolute, init);
      const body = await request._bytes();
      const r = native.doFetch(this.#binding, String(this.#id), request.method, request.url, request.headers._pairs(), body);
      if (r.status === 101) return new Response(null, { status: 101, webSocket: new WebSocket(), headers: Headers._fromPairs(r.headers) });
      const empty = r.body.length === 0 && [204, 205, 304].includes(r.status);
      return new Response(empty ? null : r.body, { status: r.status, headers: Headers._fromPairs(r.headers) });
    }
  }

  class DurableObjectNamespace {
    #binding;
    constructor(binding) {
      this.#binding = binding;
    }
    idFromName(name) {
      return new DurableObjectId(native.doIdFromName(this.#binding, String(name)), String(name));
    }
    newUniqueId() {
      return new DurableObjectId(native.doNewUniqueId(this.#binding));
    }
    idFromString(hex) {
      return new DurableObjectId(native.doIdFromString(this.#binding, String(hex)));
    }
    get(id) {
      if (!(id instanceof DurableObjectId)) throw new TypeError("get() takes a DurableObjectId (from idFromName, idFromString or newUniqueId)");
      return new DurableObjectStub(this.#binding, id);
    }
    getByName(name) {
      return this.get(this.idFromName(name));
    }
    jurisdiction() {
      return this;
    }
  }

  // ---------------------------------------------------------------- Durable Objects: storage

  // Values are stored as JSON, with Date, Map, Set, BigInt, undefined and byte arrays tagged so
  // they come back as they went in (Cloudflare uses V8 serialisation; this is its subset).
  const TAG = "\u0000nimbus";
  function encodeValue(value) {
    const json = JSON.stringify(value, function (key, v) {
      const raw = this[key];
      if (raw instanceof Date) return { [TAG]: "date", v: raw.getTime() };
      if (raw instanceof Map) return { [TAG]: "map", v: [...raw] };
      if (raw instanceof Set) return { [TAG]: "set", v: [...raw] };
      if (typeof raw === "bigint") return { [TAG]: "bigint", v: raw.toString() };
      if (raw === undefined && key === "") return { [TAG]: "undefined" };
      if (raw instanceof ArrayBuffer || isView(raw)) return { [TAG]: "bytes", v: btoa(String.fromCharCode(...toBytes(raw))) };
      return v;
    });
    if (json === undefined) throw new TypeError(`storage: ${typeof value} values cannot be stored`);
    return native.utf8Encode(json);
  }
  function decodeValue(bytes) {
    return JSON.parse(native.utf8Decode(bytes), (key, v) => {
      if (v && typeof v === "object" && TAG in v) {
        switch (v[TAG]) {
          case "date":
            return new Date(v.v);
          case "map":
            return new Map(v.v);
          case "set":
            return new Set(v.v);
          case "bigint":
            return BigInt(v.v);
          case "undefined":
            return undefined;
          case "bytes":
            return Uint8Array.from(atob(v.v), (c) => c.charCodeAt(0));
        }
      }
      return v;
    });
  }

  function listOptions(options = {}) {
    let start = options.start === undefined ? null : String(options.start);
    const startAfter = options.startAfter === undefined ? null : String(options.startAfter);
    if (startAfter !== null && (start === null || startAfter >= start)) start = startAfter;
    let limit = options.limit === undefined ? null : Number(options.limit);
    if (limit !== null && (!Number.isInteger(limit) || limit < 1)) throw new RangeError("storage.list: limit must be a positive integer");
    return {
      start,
      startAfter,
      end: options.end === undefined ? null : String(options.end),
      prefix: options.prefix === undefined ? null : String(options.prefix),
      reverse: Boolean(options.reverse),
      limit,
    };
  }

  class DurableObjectTransaction {
    #storage;
    #writes = new Map(); // key -> bytes | null (deleted)
    #rolledBack = false;
    constructor(storage) {
      this.#storage = storage;
    }
    async get(key) {
      if (Array.isArray(key)) {
        const out = new Map();
        for (const k of key) {
          const v = await this.get(k);
          if (v !== undefined) out.set(k, v);
        }
        return out;
      }
      const k = String(key);
      if (this.#writes.has(k)) {
        const bytes = this.#writes.get(k);
        return bytes === null ? undefined : decodeValue(bytes);
      }
      return this.#storage.get(k);
    }
    async put(key, value) {
      if (typeof key === "object" && key !== null) {
        for (const k of Object.keys(key)) this.#writes.set(k, encodeValue(key[k]));
        return;
      }
      this.#writes.set(String(key), encodeValue(value));
    }
    async delete(key) {
      if (Array.isArray(key)) {
        let n = 0;
        for (const k of key) if (await this.delete(k)) n++;
        return n;
      }
      const existed = (await this.get(key)) !== undefined;
      this.#writes.set(String(key), null);
      return existed;
    }
    async list(options) {
      const listed = await this.#storage.list(options);
      for (const [k, bytes] of this.#writes) {
        if (bytes === null) listed.delete(k);
      }
      const o = listOptions(options);
      for (const [k, bytes] of this.#writes) {
        if (bytes === null) continue;
        if (o.prefix !== null && !k.startsWith(o.prefix)) continue;
        if (o.start !== null && (k < o.start || (o.startAfter !== null && k === o.startAfter))) continue;
        if (o.end !== null && k >= o.end) continue;
        listed.set(k, decodeValue(bytes));
      }
      let keys = [...listed.keys()].sort();
      if (o.reverse) keys.reverse();
      if (o.limit !== null) keys = keys.slice(0, o.limit);
      return new Map(keys.map((k) => [k, listed.get(k)]));
    }
    rollback() {
      this.#rolledBack = true;
    }
    _commit() {
      if (this.#rolledBack || this.#writes.size === 0) return;
      native.storageWrite([...this.#writes].map(([k, bytes]) => (bytes === null ? ["delete", k] : ["put", k, bytes])));
    }
  }

  class DurableObjectStorage {
    async get(key) {
      if (Array.isArray(key)) {
        const values = native.storageGet(key.map(String));
        const out = new Map();
        key.forEach((k, i) => {
          if (values[i] !== null) out.set(String(k), decodeValue(values[i]));
        });
        return out;
      }
      const [bytes] = native.storageGet([String(key)]);
      return bytes === null ? undefined : decodeValue(bytes);
    }
    async put(key, value) {
      if (typeof key === "object" && key !== null) {
        native.storageWrite(Object.keys(key).map((k) => ["put", k, encodeValue(key[k])]));
        return;
      }
      if (value === undefined) throw new TypeError("storage.put: the value is undefined");
      native.storageWrite([["put", String(key), encodeValue(value)]]);
    }
    async delete(key) {
      const keys = Array.isArray(key) ? key.map(String) : [String(key)];
      const existing = native.storageGet(keys).filter((v) => v !== null).length;
      native.storageWrite(keys.map((k) => ["delete", k]));
      return Array.isArray(key) ? existing : existing > 0;
    }
    async list(options) {
      const o = listOptions(options);
      const limit = o.limit !== null && o.startAfter !== null ? o.limit + 1 : o.limit;
      const entries = native.storageList(o.start, o.end, o.prefix, o.reverse, limit);
      const out = new Map();
      for (const [k, bytes] of entries) {
        if (o.startAfter !== null && k === o.startAfter) continue;
        if (o.limit !== null && out.size >= o.limit) break;
        out.set(k, decodeValue(bytes));
      }
      return out;
    }
    async deleteAll() {
      native.storageDeleteAll();
    }
    async transaction(closure) {
      const txn = new DurableObjectTransaction(this);
      const result = await closure(txn);
      txn._commit();
      return result;
    }
    transactionSync(closure) {
      const txn = new DurableObjectTransaction(this);
      const result = closure(txn);
      txn._commit();
      return result;
    }
    async getAlarm() {
      return native.storageGetAlarm();
    }
    async setAlarm(time) {
      const ms = time instanceof Date ? time.getTime() : Number(time);
      if (!Number.isFinite(ms)) throw new TypeError("setAlarm: the time must be a Date or milliseconds since the epoch");
      native.storageSetAlarm(ms);
    }
    async deleteAlarm() {
      native.storageSetAlarm(null);
    }
    async sync() {}
  }

  // ---------------------------------------------------------------- Durable Objects: WebSockets

  const sockets = new Map(); // socket id -> WebSocket

  class WebSocket {
    static READY_STATE_OPEN = 1;
    _id = null;
    #attachment = undefined;
    readyState = 1;
    accept() {}
    addEventListener() {
      throw new Error("Nimbus Durable Objects use the hibernation API: define webSocketMessage / webSocketClose on the class");
    }
    send(message) {
      if (this._id === null) throw new Error("this WebSocket was not accepted with ctx.acceptWebSocket()");
      native.wsSend(this._id, typeof message === "string" ? message : toBytes(message));
    }
    close(code = 1000, reason = "") {
      if (this._id === null) return;
      native.wsClose(this._id, code, String(reason));
      this.readyState = 3;
    }
    serializeAttachment(value) {
      this.#attachment = value;
    }
    deserializeAttachment() {
      return this.#attachment;
    }
  }

  class WebSocketPair {
    constructor() {
      this[0] = new WebSocket();
      this[1] = new WebSocket();
    }
  }

  const socketFor = (id) => {
    let ws = sockets.get(id);
    if (!ws) {
      ws = new WebSocket();
      ws._id = id;
      sockets.set(id, ws);
    }
    return ws;
  };

  class DurableObjectState {
    #id;
    #storage = new DurableObjectStorage();
    _blocked = [];
    constructor(id) {
      this.#id = id;
    }
    get id() {
      return this.#id;
    }
    get storage() {
      return this.#storage;
    }
    waitUntil(promise) {
      pendingWork.push(Promise.resolve(promise));
    }
    blockConcurrencyWhile(fn) {
      const p = Promise.resolve().then(fn);
      this._blocked.push(p);
      return p;
    }
    acceptWebSocket(ws, tags = []) {
      if (!(ws instanceof WebSocket)) throw new TypeError("acceptWebSocket() takes the server end of a WebSocketPair");
      ws._id = native.wsAccept(tags.map(String));
      sockets.set(ws._id, ws);
    }
    getWebSockets(tag) {
      return native.wsSockets(tag === undefined ? null : String(tag)).map(socketFor);
    }
    getTags(ws) {
      return ws._id === null ? [] : native.wsTags(ws._id);
    }
  }


  // ---------------------------------------------------------------- queues

  /** Cloudflare's `Queue` binding: `send` and `sendBatch` resolve once the messages are durable. */
  class Queue {
    #binding;
    constructor(binding) {
      this.#binding = binding;
    }
    async send(body, options = {}) {
      return this.sendBatch([{ body, contentType: options?.contentType, delaySeconds: options?.delaySeconds }]);
    }
    async sendBatch(messages, options = {}) {
      const list = Array.from(messages ?? []);
      const bodies = [], types = [], delays = [];
      list.forEach((m, at) => {
        if (m === null || typeof m !== "object") throw new TypeError(`sendBatch: message ${at} is not { body, contentType?, delaySeconds? }`);
        const type = m.contentType === undefined ? "json" : String(m.contentType);
        bodies.push(encodeMessage(m.body, type, at));
        types.push(type);
        const delay = m.delaySeconds ?? options?.delaySeconds;
        delays.push(delay === undefined || delay === null ? -1 : Math.max(0, Math.floor(Number(delay))));
      });
      native.queueSend(this.#binding, bodies, types, delays);
    }
  }

  function encodeMessage(body, type, at) {
    switch (type) {
      case "json":
      case "v8": {
        const text = JSON.stringify(body);
        if (text === undefined) throw new TypeError(`message ${at}: its body cannot be serialised as JSON`);
        return native.utf8Encode(text);
      }
      case "text":
        if (typeof body !== "string") throw new TypeError(`message ${at}: a "text" message's body is a string`);
        return native.utf8Encode(body);
      case "bytes":
        if (body instanceof ArrayBuffer) return new Uint8Array(body);
        if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
        throw new TypeError(`message ${at}: a "bytes" message's body is an ArrayBuffer or a typed array`);
      default:
        throw new TypeError(`message ${at}: contentType ${JSON.stringify(type)} is not "json", "text", "bytes" or "v8"`);
    }
  }

  function decodeMessage(bytes, type) {
    if (type === "bytes") return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const text = native.utf8Decode(bytes);
    return type === "text" ? text : JSON.parse(text);
  }

  // A decision per message: undefined until the first explicit call; ACK, or a retry's
  // delay (RETRY_DEFAULT: the consumer's backoff).
  const ACK = -1;
  const RETRY_DEFAULT = -2;
  const retryDelay = (options) => {
    const delay = options?.delaySeconds;
    return delay === undefined || delay === null ? RETRY_DEFAULT : Math.max(0, Math.floor(Number(delay)));
  };

  class Message {
    #decisions;
    #at;
    constructor(raw, decisions, at) {
      this.id = raw.id;
      this.timestamp = new Date(raw.timestamp);
      this.body = decodeMessage(raw.body, raw.contentType);
      this.attempts = raw.attempts;
      this.#decisions = decisions;
      this.#at = at;
    }
    ack() {
      if (this.#decisions[this.#at] === undefined) this.#decisions[this.#at] = ACK;
    }
    retry(options) {
      if (this.#decisions[this.#at] === undefined) this.#decisions[this.#at] = retryDelay(options);
    }
  }

  class MessageBatch {
    #decisions;
    constructor(queue, messages, decisions) {
      this.queue = queue;
      this.messages = messages;
      this.#decisions = decisions;
    }
    ackAll() {
      for (let i = 0; i < this.#decisions.length; i++) if (this.#decisions[i] === undefined) this.#decisions[i] = ACK;
    }
    retryAll(options) {
      const delay = retryDelay(options);
      for (let i = 0; i < this.#decisions.length; i++) if (this.#decisions[i] === undefined) this.#decisions[i] = delay;
    }
  }

  // ---------------------------------------------------------------- events

  let env = {};
  let entry = null;
  let exportsNs = {};
  let pendingWork = [];
  const objects = new Map();
  const unhandled = new Map();

  const makeCtx = () => ({
    waitUntil(promise) {
      pendingWork.push(Promise.resolve(promise));
    },
    passThroughOnException() {},
    props: {},
  });

  let classBindings = [];
  let required = { queue: false, scheduled: false };
  native.boot = function (json) {
    const config = JSON.parse(json);
    classBindings = (config.bindings || []).filter((b) => b.type === "durable_object");
    const e = {};
    for (const b of config.bindings || []) {
      if (b.type === "kv") e[b.name] = new KVNamespace(b.name);
      else if (b.type === "d1") e[b.name] = new D1Database(b.name);
      else if (b.type === "durable_object") e[b.name] = new DurableObjectNamespace(b.name);
      else if (b.type === "r2") e[b.name] = new R2Bucket(b.name);
      else if (b.type === "queue") e[b.name] = new Queue(b.name);
    }
    required = { queue: (config.consumes || []).length > 0, scheduled: (config.crons || []).length > 0 };
    for (const [k, v] of Object.entries(config.vars || {})) e[k] = v;
    env = Object.freeze(e);
    native.env = env;
  };

  native.setExports = function (ns) {
    exportsNs = ns;
    entry = ns.default;
    const has = (name) =>
      typeof entry === "function" ? typeof entry.prototype[name] === "function" : !!entry && typeof entry[name] === "function";
    if (!has("fetch") && !has("queue") && !has("scheduled")) {
      throw new TypeError("the main module must `export default { async fetch(request, env, ctx) { … } }` (or queue / scheduled handlers, or a WorkerEntrypoint class with them)");
    }
    if (required.queue && !has("queue")) {
      throw new TypeError("the worker consumes a queue ([[queues.consumers]]) but its default export has no `queue(batch, env, ctx)` handler");
    }
    if (required.scheduled && !has("scheduled")) {
      throw new TypeError("the worker has cron triggers ([triggers] crons) but its default export has no `scheduled(controller, env, ctx)` handler");
    }
    for (const b of classBindings) {
      if (typeof ns[b.class_name] !== "function") {
        throw new TypeError(`the binding ${b.name} names Durable Object class \`${b.class_name}\`, which the main module does not export`);
      }
    }
    // Every instance reseeds Math.random on first use (see seed()).
    seeded = false;
    pendingWork = [];
    timers.clear();
  };

  /** Calls the default export's `name` handler (object or WorkerEntrypoint class). */
  function callHandler(name, ctx, ...args) {
    if (typeof entry === "function") {
      const instance = new entry(ctx, env);
      if (typeof instance[name] !== "function") throw new TypeError(`the worker has no ${name}() handler`);
      return instance[name](...args);
    }
    if (!entry || typeof entry[name] !== "function") throw new TypeError(`the worker's default export has no ${name}() handler`);
    return entry[name](...args, env, ctx);
  }

  /** A batch of `queue`: the decision per message, by Cloudflare's rules. */
  native.dispatchQueue = async function (queue, raw) {
    const decisions = raw.map(() => undefined);
    let error = null;
    try {
      const messages = raw.map((m, at) => new Message(m, decisions, at));
      await callHandler("queue", makeCtx(), new MessageBatch(queue, messages, decisions));
    } catch (e) {
      error = e;
      console.error(`Uncaught (in queue handler of ${queue})`, e);
    }
    // Returning acks what was not decided; throwing retries it.
    const decided = decisions.map((d) => (d === undefined ? (error === null ? ACK : RETRY_DEFAULT) : d));
    return { decisions: decided, error: error === null ? null : String(error && error.stack ? `${error}\n${error.stack}` : error) };
  };

  native.dispatchScheduled = async function (cron, scheduledTime) {
    const controller = { cron, scheduledTime, type: "scheduled", noRetry() {} };
    await callHandler("scheduled", makeCtx(), controller);
  };

  native.dispatchFetch = async function (method, url, headers, body) {
    if (!(typeof entry === "function" ? typeof entry.prototype.fetch === "function" : typeof entry?.fetch === "function")) {
      return toReply(new Response("this worker has no fetch handler\n", { status: 501 }), "the fetch handler", true);
    }
    const request = Request._incoming(method, url, headers, body);
    const ctx = makeCtx();
    const response = typeof entry === "function" ? await new entry(ctx, env).fetch(request) : await entry.fetch(request, env, ctx);
    return toReply(response, "the fetch handler", true);
  };

  function objectFor(className, id) {
    const key = className + "\u0000" + id;
    let object = objects.get(key);
    if (!object) {
      const cls = exportsNs[className];
      if (typeof cls !== "function") throw new TypeError(`the worker exports no Durable Object class \`${className}\``);
      const state = new DurableObjectState(new DurableObjectId(id));
      object = { state, instance: new cls(state, env) };
      objects.set(key, object);
    }
    return object;
  }

  async function ready(object) {
    while (object.state._blocked.length) {
      const blocked = object.state._blocked;
      object.state._blocked = [];
      await Promise.all(blocked);
    }
    return object.instance;
  }

  native.dispatchObjectFetch = async function (className, id, method, url, headers, body) {
    const instance = await ready(objectFor(className, id));
    if (typeof instance.fetch !== "function") throw new TypeError(`Durable Object class \`${className}\` has no fetch() method`);
    const response = await instance.fetch(Request._incoming(method, url, headers, body));
    return toReply(response, `${className}.fetch()`);
  };

  native.dispatchAlarm = async function (className, id, retryCount) {
    const instance = await ready(objectFor(className, id));
    if (typeof instance.alarm !== "function") throw new TypeError(`Durable Object class \`${className}\` has no alarm() method`);
    await instance.alarm({ retryCount, isRetry: retryCount > 0 });
  };

  native.dispatchWebSocketMessage = async function (className, id, socket, message) {
    const instance = await ready(objectFor(className, id));
    if (typeof instance.webSocketMessage === "function") await instance.webSocketMessage(socketFor(socket), message);
  };

  native.dispatchWebSocketClose = async function (className, id, socket, code, reason) {
    const instance = await ready(objectFor(className, id));
    const ws = socketFor(socket);
    ws.readyState = 3;
    sockets.delete(socket);
    if (typeof instance.webSocketClose === "function") await instance.webSocketClose(ws, code, reason, true);
  };

  native.trackRejection = function (promise, reason, handled) {
    if (handled) unhandled.delete(promise);
    else unhandled.set(promise, reason);
  };

  /** After the response: settle `waitUntil` work, drop the event's timers, report rejections. */
  native.finishEvent = async function () {
    while (pendingWork.length) {
      const work = pendingWork;
      pendingWork = [];
      for (const result of await Promise.allSettled(work)) {
        if (result.status === "rejected") console.error("Uncaught (in waitUntil promise)", result.reason);
      }
    }
    timers.clear();
    for (const reason of unhandled.values()) console.error("Uncaught (in promise)", reason);
    unhandled.clear();
  };

  // ---------------------------------------------------------------- globals

  const globals = {
    console, crypto, TextEncoder, TextDecoder, atob, btoa, URL, URLSearchParams, Headers, Request, Response,
    ReadableStream, fetch, AbortController, AbortSignal, DOMException, WebSocket, WebSocketPair,
    setTimeout: (fn, ms, ...args) => addTimer(fn, ms, args, false),
    setInterval: (fn, ms, ...args) => addTimer(fn, ms, args, true),
    clearTimeout: (id) => void timers.delete(id),
    clearInterval: (id) => void timers.delete(id),
    queueMicrotask: G.queueMicrotask || ((fn) => void Promise.resolve().then(fn)),
    structuredClone: G.structuredClone || ((v) => decodeValue(encodeValue(v))),
    navigator: { userAgent: "Nimbus" },
    self: G,
  };
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
  }
  if (!G.performance) {
    const origin = Date.now();
    G.performance = { now: () => Date.now() - origin, timeOrigin: origin };
  }
  native.classes = {
    DurableObjectState, DurableObjectStorage, KVNamespace, D1Database, D1DatabaseSession, DurableObjectNamespace,
    R2Bucket, R2Object, R2ObjectBody, R2MultipartUpload, Queue, Message, MessageBatch,
  };
})();

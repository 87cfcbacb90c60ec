// Model output as Markdown, safely: marked parses, DOMPurify sanitises every fragment,
// highlight.js colours code. Nothing the model writes can run script or load anything:
// raw HTML is shown as text, links keep only http(s) and mailto, images become links,
// and the page's Content-Security-Policy would refuse the rest anyway.
import { Marked } from "./vendor/marked.esm.js";
import "./vendor/purify.min.js"; // a UMD build: in a module it sets globalThis.DOMPurify
import hljs from "./vendor/hljs-core.min.js";
import bash from "./vendor/hljs-bash.min.js";
import c from "./vendor/hljs-c.min.js";
import cpp from "./vendor/hljs-cpp.min.js";
import css from "./vendor/hljs-css.min.js";
import diff from "./vendor/hljs-diff.min.js";
import go from "./vendor/hljs-go.min.js";
import java from "./vendor/hljs-java.min.js";
import javascript from "./vendor/hljs-javascript.min.js";
import json from "./vendor/hljs-json.min.js";
import python from "./vendor/hljs-python.min.js";
import rust from "./vendor/hljs-rust.min.js";
import sql from "./vendor/hljs-sql.min.js";
import typescript from "./vendor/hljs-typescript.min.js";
import xml from "./vendor/hljs-xml.min.js";
import yaml from "./vendor/hljs-yaml.min.js";

const LANGUAGES = { bash, c, cpp, css, diff, go, java, javascript, json, python, rust, sql, typescript, xml, yaml };
for (const [name, grammar] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, grammar);
hljs.registerAliases(["shell", "console", "sh"], { languageName: "bash" });

const SAFE_URL = /^(https?:\/\/|mailto:)/i;
const escapeHtml = (s) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

const marked = new Marked({
  gfm: true,
  renderer: {
    // Raw HTML in an answer is shown as the text it is, never parsed.
    html: ({ text, block }) => (block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text)),
    code({ text, lang }) {
      const name = ((lang || "").match(/^[\w+#-]*/) || [""])[0].toLowerCase();
      const body = name && hljs.getLanguage(name)
        ? hljs.highlight(text, { language: name, ignoreIllegals: true }).value
        : escapeHtml(text);
      return `<pre><code class="hljs${name ? " language-" + name : ""}">${body}</code></pre>\n`;
    },
    // A link to anything but the web or mail is shown as the Markdown it was written as.
    link: (token) => (SAFE_URL.test(token.href) ? false : escapeHtml(token.raw)),
    // Images never load (img-src 'none'): a link to a web image, else the text.
    image: ({ href, text, raw }) => SAFE_URL.test(href)
      ? `<a href="${escapeHtml(href)}">[image: ${escapeHtml(text || href)}]</a>`
      : escapeHtml(raw),
    checkbox: ({ checked }) => (checked ? "☑ " : "☐ "),
  },
});

const DOMPurify = globalThis.DOMPurify;
const PURIFY = {
  ALLOWED_TAGS: ["a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "li", "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul"],
  ALLOWED_ATTR: ["href", "title", "class", "align", "start"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};
// Classes only from the highlighter (hljs-*, language-*, and its "title class_" style),
// so an answer cannot dress itself up as the page's own elements.
const OWN_CLASS = /^(hljs[\w-]*|language-[\w+#-]+|[a-z]+_)$/;
DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "class") {
    data.attrValue = data.attrValue.split(/\s+/).filter((k) => OWN_CLASS.test(k)).join(" ");
  }
});
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName !== "A") return;
  if (!SAFE_URL.test(node.getAttribute("href") || "")) node.removeAttribute("href");
  node.setAttribute("target", "_blank");
  node.setAttribute("rel", "noopener noreferrer");
});

/** One piece of Markdown as a sanitised DocumentFragment. */
export function renderFragment(text) {
  const fragment = DOMPurify.sanitize(marked.parse(text), PURIFY);
  for (const pre of fragment.querySelectorAll("pre")) decorate(pre);
  return fragment;
}

// A bar over each code block: its language and a copy button (the page handles the click).
function decorate(pre) {
  const code = pre.querySelector("code");
  const lang = code && [...code.classList].find((k) => k.startsWith("language-"));
  const box = document.createElement("div");
  box.className = "code";
  const bar = document.createElement("div");
  bar.className = "code-bar";
  const label = document.createElement("span");
  label.textContent = lang ? lang.slice(9) : "text";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.textContent = "Copy";
  bar.append(label, copy);
  pre.replaceWith(box);
  box.append(bar, pre);
}

// Streaming without re-flowing the whole answer on every token: the answer is cut at the
// last blank line outside a code fence that is followed by an unindented line (a new
// block has begun, so what is above it is finished). Finished blocks are rendered once
// and stay in the DOM untouched; only the tail after the cut is rendered again, at most
// once per animation frame however many tokens arrived in it. A saved answer is shown
// through the same cuts, so it looks the same streamed and reloaded.
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/** Where the finished part of `text` ends: a block boundary at or after `from` (itself one). */
export function settledLength(text, from) {
  let cut = from, pos = from, fence = null, blank = false;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    const end = nl < 0 ? text.length : nl;
    const line = text.slice(pos, end);
    if (fence) {
      const m = line.match(FENCE);
      if (nl >= 0 && m && m[1][0] === fence[0] && m[1].length >= fence.length && !line.slice(m[0].length).trim()) fence = null;
    } else if (!line.trim()) {
      blank = nl >= 0;
    } else {
      if (blank && !/^\s/.test(line)) cut = pos;
      blank = false;
      const m = line.match(FENCE);
      if (m && nl >= 0) fence = m[1];
    }
    if (nl < 0) break;
    pos = nl + 1;
  }
  return cut;
}

/** An answer rendered into `root` as it grows; `set` the whole text so far, `end` once. */
export class MarkdownStream {
  constructor(root) {
    this.root = root;
    this.text = "";
    this.settled = 0;
    this.frame = 0;
    this.tail = document.createElement("div");
    this.tail.className = "tail";
    root.append(this.tail);
  }

  set(text) {
    this.text = text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const cut = settledLength(this.text, this.settled);
    if (cut > this.settled) {
      this.tail.before(renderFragment(this.text.slice(this.settled, cut)));
      this.settled = cut;
    }
    this.tail.replaceChildren(renderFragment(this.text.slice(this.settled)));
  }

  /** Render what is left now and drop the tail's wrapper. */
  end() {
    cancelAnimationFrame(this.frame);
    this.flush();
    this.tail.replaceWith(...this.tail.childNodes);
  }
}

/** A finished answer into `root`. */
export function renderMarkdown(root, text) {
  const stream = new MarkdownStream(root);
  stream.text = text;
  stream.end();
}

"""The report page's inline CSS and JS.

Kept as Python strings rather than package-data files so an installed wheel always has them
(no MANIFEST or package-data entry to forget). Neither may reference anything outside the page:
the Content-Security-Policy written by html.py forbids it, and a test checks the browser made
no request other than for the file itself.
"""

CSS = """
:root { --fg: #1d2327; --muted: #5f6b76; --line: #d5dbe1; --head: #eef2f6; --zebra: #f8fafc;
        --accent: #2457a7; --good: #1a7f37; --bad: #b42318; --mark: #fff4c2; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0 auto; padding: 0 1.5rem 3rem; max-width: 110rem; }
header { border-bottom: 1px solid var(--line); padding: 1rem 0 .5rem; margin-bottom: 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1.25rem 0 .4rem; }
nav a { margin-right: 1rem; color: var(--accent); }
.muted, .note { color: var(--muted); }
.note { margin: .3rem 0; }
.warn { color: var(--bad); }
table { border-collapse: collapse; margin: .25rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
thead th { background: var(--head); font-weight: 600; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: var(--muted); }
td.id { white-space: nowrap; }
table.kv th { background: var(--head); white-space: nowrap; }
tr.sig td { background: var(--mark); }
td.pos { color: var(--good); } td.neg { color: var(--bad); }
th button.sort { all: unset; cursor: pointer; display: block; width: 100%; }
th button.sort:focus-visible { outline: 2px solid var(--accent); }
th[aria-sort] button.sort::after { content: " \\25B2"; font-size: .75em; }
th[aria-sort=descending] button.sort::after { content: " \\25BC"; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--zebra); border: 1px solid var(--line);
      padding: .5rem; margin: .25rem 0; }
details { margin: .5rem 0; } summary { cursor: pointer; color: var(--accent); }
details.group { border-left: 3px solid var(--line); padding-left: .75rem; }
details.group > summary { font-weight: 600; }
h4 { font-size: .95rem; margin: 1rem 0 .3rem; }
figure { display: inline-block; margin: 0 1.5rem 1.5rem 0; vertical-align: top; }
figure img { max-width: min(100%, 56rem); height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); margin-top: .25rem; }
.controls { display: flex; gap: 1rem; align-items: center; margin: .5rem 0; flex-wrap: wrap; }
.pager button:disabled { opacity: .4; }
.controls input { font: inherit; padding: .3rem .5rem; min-width: 22rem; border: 1px solid var(--line); border-radius: 4px; }
.scroll { max-height: 85vh; overflow: auto; border: 1px solid var(--line); }
.scroll table { margin: 0; }
.scroll thead th { position: sticky; top: 0; z-index: 1; }
.rows-view td .cell { white-space: pre-wrap; overflow-wrap: anywhere; min-width: 14rem; max-width: 40rem;
                     max-height: 14rem; overflow: auto; }
.rows-view td details .cell { max-height: 28rem; margin-top: .25rem; }
.controls select { font: inherit; max-width: 28rem; }
th.role-sent { background: #eceff3; }
th.role-prompt { background: #e8eefc; } th.role-reference { background: #e6f4ea; }
th.role-answer { background: #fdf0e2; } th.role-score { background: #f1ebfa; }
.legend span { padding: 0 .4rem; margin-right: .4rem; border: 1px solid var(--line); }
.legend .role-prompt { background: #e8eefc; } .legend .role-reference { background: #e6f4ea; }
.legend .role-answer { background: #fdf0e2; } .legend .role-score { background: #f1ebfa; }
"""

# Score tables are server-rendered and sorted by re-appending rows. The examples (and every table of
# a data view) are data (a JSON block each) drawn one page at a time, so a 10k-row table opens and
# filters without laying out 10k rows.
JS = r"""
(function () {
  "use strict";
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});

  function value(cell, numeric) {
    if (!cell) return numeric ? NaN : "";
    if (numeric) {
      var v = cell.getAttribute("data-v");
      return v === null || v === "" ? NaN : parseFloat(v);
    }
    return cell.textContent;
  }

  function sortBy(table, th, col) {
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(table.tHead.querySelectorAll("th[aria-sort]"), function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var keyed = Array.prototype.map.call(body.rows, function (row, i) {
      return {row: row, i: i, v: value(row.cells[col], numeric)};
    });
    keyed.sort(function (a, b) {
      var c;
      if (numeric) {
        var an = isNaN(a.v), bn = isNaN(b.v);
        if (an || bn) return an === bn ? a.i - b.i : (an ? 1 : -1);  // missing values last either way
        c = a.v - b.v;
      } else {
        c = collator.compare(a.v, b.v);
      }
      return c ? sign * c : a.i - b.i;
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k.row); });
    body.appendChild(frag);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function (th, col) {
      var button = th.querySelector("button.sort");
      if (button) button.addEventListener("click", function () { sortBy(table, th, col); });
    });
  });

  // ---- row views: each keeps all its rows in `rows` (parsed from its JSON block); one page of them is in the DOM.
  var textsBlock = document.getElementById("texts-data");
  var texts = textsBlock ? JSON.parse(textsBlock.textContent) : {};  // folded texts shared by every view
  function known(key) { return Object.prototype.hasOwnProperty.call(texts, key); }

  function initView(view) {
    function part(role) { return view.querySelector('[data-role="' + role + '"]'); }
    var table = view.querySelector("table"), dataBlock = view.querySelector('script[type="application/json"]');
    if (!table || !dataBlock) return;
    var data = JSON.parse(dataBlock.textContent);
    var cols = data.columns, rows = data.rows, total = rows.length;
    var input = part("filter"), shown = part("shown"), pageInfo = part("page"), prev = part("prev");
    var next = part("next"), sizeSelect = part("page-size");
    var facets = Array.prototype.map.call(view.querySelectorAll("select[data-facet]"), function (select) {
      return {select: select, col: parseInt(select.getAttribute("data-facet"), 10)};
    });
    var tbody = table.tBodies[0];
    var order = rows.map(function (_, i) { return i; });  // every row, in the current sort order
    var matching = order, page = 0;

    function pageSize() { var n = parseInt(sizeSelect.value, 10); return n > 0 ? n : Infinity; }

    function full(c, text) { return cols[c].lookup && known(text) ? texts[text] : text; }

    function rowText(row) {
      // Cells joined so a query never spans two cells; a folded cell counts with its text. Cached on first use.
      if (row.s === undefined) row.s = row.t.map(function (t, c) { return full(c, t); }).join("\n").toLowerCase();
      return row.s;
    }

    function folded(key) {
      // A shared long text (the prompt a row came from), closed until asked for.
      if (!known(key)) {
        var span = document.createElement("span");
        span.className = "na";
        span.textContent = key.slice(0, 12) + "… (not recorded)";
        return span;
      }
      var details = document.createElement("details"), summary = document.createElement("summary");
      summary.textContent = "show · " + key.slice(0, 8);
      var div = document.createElement("div");
      div.className = "cell";
      div.textContent = texts[key];  // user text: never innerHTML
      details.appendChild(summary);
      details.appendChild(div);
      return details;
    }

    function draw() {
      var size = pageSize(), start = size === Infinity ? 0 : page * size;  // 0 * Infinity is NaN
      var end = Math.min(matching.length, start + size);
      var frag = document.createDocumentFragment();
      for (var k = start; k < end; k++) {
        var row = rows[matching[k]], tr = document.createElement("tr");
        for (var c = 0; c < cols.length; c++) {
          var td = document.createElement("td"), text = row.t[c];
          if (cols[c].num) {
            td.className = "num";
            if (row.v[c] !== null) td.setAttribute("data-v", row.v[c]);
            else if (text) td.className = "num na";
            td.textContent = text;
          } else if (cols[c].lookup) {
            if (text) td.appendChild(folded(text));
          } else if (cols[c].wrap && text) {
            var div = document.createElement("div");
            div.className = "cell";
            div.textContent = text;  // user text: never innerHTML
            td.appendChild(div);
          } else {
            if (cols[c].role === "id") td.className = "id";
            td.textContent = text;
          }
          tr.appendChild(td);
        }
        frag.appendChild(tr);
      }
      tbody.replaceChildren(frag);
      shown.textContent = matching.length + " of " + total + " match";
      pageInfo.textContent = matching.length ? "rows " + (start + 1) + "–" + end + " of " + matching.length : "no rows";
      prev.disabled = page === 0;
      next.disabled = end >= matching.length;
    }

    function applyFilter() {
      var q = input.value.trim().toLowerCase();
      var chosen = facets.filter(function (f) { return f.select.value !== ""; });
      matching = q || chosen.length ? order.filter(function (i) {
        var row = rows[i];
        for (var f = 0; f < chosen.length; f++) {
          if (row.t[chosen[f].col] !== chosen[f].select.value) return false;
        }
        return !q || rowText(row).indexOf(q) !== -1;
      }) : order;
      page = 0;
      draw();
    }

    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = th.querySelector("button.sort");
      if (!button) return;
      button.addEventListener("click", function () {
        var numeric = cols[col].num;
        var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir);
        var sign = dir === "ascending" ? 1 : -1;
        order = order.slice().sort(function (a, b) {
          var c;
          if (numeric) {
            var x = rows[a].v[col], y = rows[b].v[col];
            if (x === null || y === null) return x === y ? a - b : (x === null ? 1 : -1);  // missing last
            c = x - y;
          } else {
            c = collator.compare(rows[a].t[col], rows[b].t[col]);
          }
          return c ? sign * c : a - b;
        });
        applyFilter();
      });
    });

    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(applyFilter, 80);
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { input.value = ""; applyFilter(); }
    });
    facets.forEach(function (f) { f.select.addEventListener("change", applyFilter); });
    prev.addEventListener("click", function () { if (page > 0) { page--; draw(); } });
    next.addEventListener("click", function () { page++; draw(); });
    sizeSelect.addEventListener("change", function () { page = 0; draw(); });
    applyFilter();  // also honours a filter value or choice the browser restored on reload
  }

  Array.prototype.forEach.call(document.querySelectorAll("div.rows-view"), initView);
})();
"""

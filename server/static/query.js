// The query page: runs the editor's query against the SPARQL endpoint and shows the answer.
// Plain JavaScript, no libraries; every setting (endpoint, entity namespace, prefixes, examples) comes
// from the JSON blob in the page.
"use strict";

(() => {
  const settings = JSON.parse(document.getElementById("settings").textContent);
  const $ = (id) => document.getElementById(id);
  const editor = $("query"), runButton = $("run"), form = $("form");
  const results = $("results"), errorBox = $("error"), statusLine = $("status"), notice = $("notice");
  const links = {
    permalink: $("permalink"), csv: $("download-csv"), csvExcel: $("download-csv-excel"), json: $("download-json"),
    turtle: $("download-turtle"),
  };
  // Longest namespaces first, so that country: wins over id: for a country's IRI.
  const prefixes = Object.entries(settings.prefixes).sort((a, b) => b[1].length - a[1].length);
  let latest = 0; // the number of the latest run; answers to older runs are dropped
  const showTypes = $("show-types");
  const showOrHideTypes = () => results.classList.toggle("show-types", showTypes.checked);
  showTypes.addEventListener("change", showOrHideTypes);
  showOrHideTypes();

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function compact(iri) {
    for (const [prefix, namespace] of prefixes) {
      if (iri.startsWith(namespace) && iri.length > namespace.length) {
        const local = iri.slice(namespace.length);
        if (/^[^\s#?<>"{}|\\^`]+$/.test(local)) return `${prefix}:${local}`;
      }
    }
    return null;
  }

  // An entity of the graph links to its page on this server; any other IRI links to itself.
  function href(iri) {
    if (iri.startsWith(settings.entityBase) && iri.length > settings.entityBase.length) {
      const rest = iri.slice(settings.entityBase.length);
      return settings.entityPages + rest.split("/").map(encodeURIComponent).join("/");
    }
    return /^https?:/i.test(iri) ? iri : null;
  }

  function iriNode(iri) {
    const label = compact(iri) || iri;
    const target = href(iri);
    const node = target ? el("a", { href: target, title: iri }, label) : el("span", { title: iri }, label);
    node.className = "iri";
    return node;
  }

  function termNode(term) {
    if (!term) return document.createTextNode("");
    if (term.type === "uri") return iriNode(term.value);
    if (term.type === "bnode") return el("span", { class: "bnode" }, `_:${term.value}`);
    if (term.type === "triple") {
      const t = term.value;
      return el("span", { class: "triple" }, "<< ", termNode(t.subject), " ", termNode(t.predicate), " ",
                termNode(t.object), " >>");
    }
    // A literal (type "literal", or "typed-literal" in older answers): its plain value, with its language
    // tag or datatype on hover, and shown beside it only when "Show datatypes" is ticked.
    const node = el("span", { class: "literal" }, term.value);
    if (term["xml:lang"]) {
      node.title = `language tag: ${term["xml:lang"]}`;
      node.append(el("span", { class: "lang" }, `@${term["xml:lang"]}`));
    } else if (term.datatype) {
      const name = compact(term.datatype) || term.datatype;
      node.title = `datatype: ${name}`;
      node.append(el("span", { class: "datatype" }, `^^${name}`));
    }
    return node;
  }

  function clear() {
    results.replaceChildren();
    errorBox.hidden = true;
    errorBox.replaceChildren();
    notice.hidden = true;
    notice.textContent = "";
  }

  function showError(title, message) {
    errorBox.replaceChildren(el("strong", {}, title), el("pre", {}, message.trim()));
    errorBox.hidden = false;
  }

  function plural(n, word) {
    return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;
  }

  function renderTable(answer) {
    const vars = answer.head && answer.head.vars ? answer.head.vars : [];
    const rows = answer.results.bindings;
    const table = el("table");
    table.append(el("caption", { class: "visually-hidden" }, "Query results"));
    const headRow = el("tr");
    headRow.append(el("th", { scope: "col", class: "rownum" }, "#"));
    for (const v of vars) headRow.append(el("th", { scope: "col" }, `?${v}`));
    table.append(el("thead", {}, headRow));
    const body = el("tbody");
    rows.forEach((row, index) => {
      const tr = el("tr");
      tr.append(el("td", { class: "rownum" }, String(index + 1)));
      for (const v of vars) tr.append(el("td", {}, termNode(row[v])));
      body.append(tr);
    });
    table.append(body);
    results.replaceChildren(table);
    return plural(rows.length, "row");
  }

  function renderBoolean(value) {
    results.replaceChildren(el("p", { class: `boolean ${value}` }, value ? "true" : "false"));
    return "ASK answer";
  }

  function renderGraph(text) {
    results.replaceChildren(el("pre", { class: "turtle" }, text));
    return text.trim() ? "graph (Turtle)" : "empty graph";
  }

  function endpointUrl(query, format) {
    return `${settings.endpoint}?${new URLSearchParams({ query, format })}`;
  }

  function updateLinks(query, graph) {
    const permalink = `${settings.page}?${new URLSearchParams({ query })}`;
    links.permalink.href = permalink;
    links.csv.href = endpointUrl(query, "csv");
    links.csvExcel.href = endpointUrl(query, "csv-excel");
    links.json.href = endpointUrl(query, "json");
    links.turtle.href = endpointUrl(query, "turtle");
    if (graph !== undefined) {
      links.csv.hidden = links.csvExcel.hidden = links.json.hidden = graph;
      links.turtle.hidden = !graph;
    }
    return permalink;
  }

  async function run() {
    const query = editor.value;
    const number = ++latest;
    const permalink = updateLinks(query);
    history.replaceState(null, "", permalink);
    clear();
    results.setAttribute("aria-busy", "true");
    runButton.disabled = true;
    statusLine.textContent = "Running…";
    const started = performance.now();
    try {
      const response = await fetch(settings.endpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          // SELECT and ASK answer in SPARQL JSON, CONSTRUCT and DESCRIBE in Turtle.
          Accept: "application/sparql-results+json, text/turtle;q=0.9",
        },
        body: new URLSearchParams({ query }),
      });
      const type = (response.headers.get("Content-Type") || "").split(";")[0].trim();
      const body = await response.text();
      if (number !== latest) return;
      const ms = Math.round(performance.now() - started);
      if (!response.ok) {
        showError(`Error ${response.status} ${response.statusText}`.trim(), body || "(no message)");
        statusLine.textContent = `The query failed after ${ms} ms.`;
        return;
      }
      let summary;
      if (type === "application/sparql-results+json" || type === "application/json") {
        const answer = JSON.parse(body);
        summary = "boolean" in answer ? renderBoolean(answer.boolean) : renderTable(answer);
        updateLinks(query, false);
      } else {
        summary = renderGraph(body);
        updateLinks(query, true);
      }
      statusLine.textContent = `${summary} in ${ms} ms.`;
      const cap = response.headers.get("X-SPARQL-MaxRows");
      if (cap) {
        notice.textContent = `The answer was cut at ${Number(cap).toLocaleString("en")} results, the server's limit: ` +
          "add a LIMIT, or narrow the query. The downloads are cut the same way.";
        notice.hidden = false;
      }
    } catch (failure) {
      if (number !== latest) return;
      showError("The server could not be reached", String(failure && failure.message ? failure.message : failure));
      statusLine.textContent = "The query failed.";
    } finally {
      if (number === latest) {
        runButton.disabled = false;
        results.removeAttribute("aria-busy");
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });

  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });

  // The links follow the editor, so a download or permalink is always of the query shown.
  editor.addEventListener("input", () => updateLinks(editor.value));

  const buttons = document.querySelectorAll("#examples button.example");
  buttons.forEach((button) => {
    button.addEventListener("click", () => {
      const example = settings.examples[Number(button.dataset.index)];
      editor.value = example.text;
      buttons.forEach((b) => b.removeAttribute("aria-current"));
      button.setAttribute("aria-current", "true");
      run();
      editor.focus();
    });
  });

  updateLinks(editor.value);
  if (settings.autorun) run();
})();
